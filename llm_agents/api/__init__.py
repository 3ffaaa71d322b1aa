"""The HTTP API (SPEC §11): ``path("api/llm-agents/", include("llm_agents.api.urls"))``."""
