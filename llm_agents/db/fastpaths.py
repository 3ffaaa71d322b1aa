"""Every PostgreSQL-only statement of the product, each beside the portable ORM code that does the
same on any other supported database (SQLite), and which a parity test runs against it on
PostgreSQL: the same input gives the same rows and results either way.

A fast path exists where the ORM's statements cost more than the work (a tracking write of some 60
cast columns, a budget check under lock, a purge of thousands of ids); each says why.
"""

from __future__ import annotations

# -- tracking writes ------------------------------------------------------------------------------

# (section: tracking writes)


# -- budgets --------------------------------------------------------------------------------------

# (section: budgets)


# -- retention ------------------------------------------------------------------------------------

# (section: retention)


# -- analytics ------------------------------------------------------------------------------------

# (section: analytics)
