"""The one place the product talks to the database below the ORM.

- :mod:`~llm_agents.db.statements`: statements PostgreSQL prepares once per session, and
  server-side binding for large parameters.
- :mod:`~llm_agents.db.isolation`: writes outside the caller's transaction and off event loops,
  one worker pool, one SQLite writer lock.
- :mod:`~llm_agents.db.fastpaths`: every PostgreSQL-only statement, each beside the portable ORM
  code that does the same on other databases (and is tested to give the same result).
- :mod:`~llm_agents.db.routing`: the database the dashboard, the API's reads and the analytics run
  on (``ANALYTICS_DATABASE``, e.g. a read replica).

Only SQLite and PostgreSQL are supported (system check ``llm_agents.E025``).
"""

SUPPORTED_VENDORS = ("postgresql", "sqlite")
