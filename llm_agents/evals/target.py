"""The agent an evaluation run calls: found by its dotted path, run with the run's overrides (model,
prompt version), or turned into a batch request."""

from __future__ import annotations

from typing import Any

from django.utils.module_loading import import_string

from ..agents import Agent
from ..agents.base import Run
from ..conf import app_settings
from ..errors import PromptError
from ..models import Prompt, PromptVersion

__all__ = ["agent_call", "batch_request", "dotted_path", "load_agent", "resolve_prompt_version"]


def dotted_path(agent_class: type[Agent]) -> str:
    return f"{agent_class.__module__}.{agent_class.__qualname__}"


def load_agent(agent: Any) -> type[Agent]:
    """The Agent subclass ``agent`` names (a dotted path) or is. ``ValueError`` naming the path when it
    does not import or is not an Agent subclass; a class that cannot be imported again by its path (one
    defined inside a function) is refused too, since Celery workers and pollers import it by that path."""
    if isinstance(agent, str):
        try:
            found = import_string(agent)
        except ImportError as exc:
            raise ValueError(f"The agent {agent!r} cannot be imported: {exc}") from None
    else:
        found = agent
    if not (isinstance(found, type) and issubclass(found, Agent)):
        raise ValueError(f"{agent!r} is not an Agent subclass.")
    path = dotted_path(found)
    try:
        same = import_string(path) is found
    except ImportError:
        same = False
    if not same:
        raise ValueError(
            f"The agent {found.__qualname__} cannot be imported by its path {path!r}: define it at a module's "
            "top level so that workers can import it."
        )
    return found


def resolve_prompt_version(agent_class: type[Agent], prompt_version: Any) -> PromptVersion | None:
    """The PromptVersion that replaces the agent's current prompt version: given as one, or as a version
    number of the agent's prompt. ``ValueError`` when the agent has no managed prompt or the version
    belongs to another prompt, or when the prompt or the number does not exist."""
    if prompt_version is None:
        return None
    slug = agent_class.prompt
    if not slug:
        raise ValueError(
            f"The agent {agent_class.__qualname__} has no managed prompt (Agent.prompt), so its prompt version "
            "cannot be overridden."
        )
    if isinstance(prompt_version, PromptVersion):
        if prompt_version.prompt.slug != slug:
            raise ValueError(
                f"Prompt version {prompt_version.number} belongs to prompt {prompt_version.prompt.slug!r}, "
                f"not to the agent's prompt {slug!r}."
            )
        return prompt_version
    if isinstance(prompt_version, bool) or not isinstance(prompt_version, int):
        raise ValueError(
            f"prompt_version must be a PromptVersion or a version number, not {prompt_version!r}."
        )
    try:
        return Prompt.load(slug).version(prompt_version)
    except PromptError as exc:
        raise ValueError(str(exc)) from None


def agent_call(
    agent_class: type[Agent], params: Any, *, model: str | None, prompt_version: PromptVersion | None
) -> Run:
    """The call of the agent with ``params`` (an item's input) and the run's overrides, not yet made
    (``.call()``); ``TypeError`` / ``ValueError`` when the params do not fit the agent's."""
    if not isinstance(params, dict):
        raise TypeError(
            f"an item's input must be an object of the agent's params, not {type(params).__name__}"
        )
    return Run(agent_class(**params), streaming=False, model=model, prompt_version=prompt_version)


def batch_request(
    agent_class: type[Agent], params: Any, *, model: str | None, prompt_version: PromptVersion | None
) -> dict[str, Any]:
    """The keyword arguments of ``batches.enqueue`` (but purpose and routing) that ask what the agent's
    call with ``params`` would: its system messages as the instructions, the other messages as the input
    (a lone user message as text), its model, temperature, max tokens, prompt parameters and schema."""
    call = agent_call(agent_class, params, model=model, prompt_version=prompt_version)
    messages = call.build_messages()
    instructions = "\n\n".join(message["content"] for message in messages if message["role"] == "system")
    conversation = [message for message in messages if message["role"] != "system"]
    if len(conversation) == 1 and conversation[0]["role"] == "user":
        user_input: Any = conversation[0]["content"]
    else:
        user_input = conversation
    extra = dict(call.extra_params)
    if call.max_tokens:
        key = "max_output_tokens" if app_settings.BATCH_ENDPOINT == "/v1/responses" else "max_tokens"
        extra[key] = call.max_tokens
    return {
        "model": call.model,
        "instructions": instructions,
        "input": user_input,
        "schema": agent_class.schema,
        "temperature": call.temperature,
        **extra,
    }
