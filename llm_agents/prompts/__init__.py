"""Managed prompts: Mustache rendering (``rendering``), file sync and export (``sync``) and version
diffs (``diff``). The models live in ``llm_agents.models.prompts``; nothing here imports them at
import time."""
