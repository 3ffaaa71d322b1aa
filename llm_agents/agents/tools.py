from __future__ import annotations

import inspect
from typing import Any, ClassVar

from .params import bind_params, collect_params, params_schema


class Tool:
    """A function the model may call. Declare ``name``, ``description`` and the arguments as Params
    (or a JSON schema in ``parameters``), and implement ``run(self, **arguments)``::

        class Lookup(Tool):
            name = "lookup"
            description = "Look a word up"
            word = Param(required=True)

            def run(self, word):
                return DICTIONARY.get(word, "unknown")
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    parameters: ClassVar[dict[str, Any] | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.name:
            cls.name = cls.__name__

    @classmethod
    def definition(cls) -> dict[str, Any]:
        """``{"name", "description", "parameters"}`` as sent to the provider."""
        schema = cls.parameters if cls.parameters is not None else params_schema(collect_params(cls))
        return {
            "name": cls.name,
            "description": cls.description or inspect.getdoc(cls) or "",
            "parameters": schema,
        }

    @classmethod
    def invoke(cls, arguments: dict[str, Any]) -> Any:
        params = collect_params(cls)
        if params:
            arguments = bind_params(f"Tool {cls.name!r}", params, arguments)
        return cls().run(**arguments)

    def run(self, **arguments: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__}.run() is not implemented")


class AgentTool:
    """An Agent offered to the model as a tool; it runs as a nested execution."""

    def __init__(self, agent_class: Any) -> None:
        self.agent_class = agent_class
        self.name = getattr(agent_class, "tool_name", None) or agent_class.agent_type

    def definition(self) -> dict[str, Any]:
        description = getattr(self.agent_class, "description", "") or inspect.getdoc(self.agent_class) or ""
        return {
            "name": self.name,
            "description": description,
            "parameters": params_schema(collect_params(self.agent_class)),
        }

    def invoke(self, arguments: dict[str, Any]) -> Any:
        return self.agent_class.call(**arguments).content
