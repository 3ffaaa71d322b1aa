from __future__ import annotations

from typing import Any

MISSING: Any = object()

JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean", list: "array", dict: "object"}


class Param:
    """A named input of an Agent or a Tool::

    query = Param(required=True, description="What to search for")
    limit = Param(default=10, type=int)
    """

    def __init__(
        self,
        default: Any = MISSING,
        *,
        required: bool = False,
        description: str = "",
        type: type | None = None,  # noqa: A002  (the JSON-schema word)
        enum: list[Any] | None = None,
    ) -> None:
        self.default = None if default is MISSING and not required else default
        self.required = required
        self.description = description
        self.type = type if type is not None else (builtin_type(default) if default is not MISSING else None)
        self.enum = enum
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, instance: Any, owner: type) -> Any:
        if instance is None:
            return self
        return instance.__dict__.get(self.name, self.default)

    def json_schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": JSON_TYPES.get(self.type, "string")} if self.type else {}
        if self.description:
            schema["description"] = self.description
        if self.enum is not None:
            schema["enum"] = list(self.enum)
        return schema


def builtin_type(value: Any) -> type | None:
    return type(value) if type(value) in JSON_TYPES else None


def collect_params(cls: type) -> dict[str, Param]:
    """Every Param of ``cls`` and its bases, the subclass's own winning."""
    params: dict[str, Param] = {}
    for klass in reversed(cls.__mro__):
        for name, value in vars(klass).items():
            if isinstance(value, Param):
                params[name] = value
    return params


def bind_params(owner: str, params: dict[str, Param], values: dict[str, Any]) -> dict[str, Any]:
    """The full set of values (defaults filled in); unknown or missing required names raise ValueError."""
    unknown = sorted(set(values) - set(params))
    if unknown:
        raise ValueError(f"{owner} got unknown parameter(s): {', '.join(unknown)}.")
    missing = sorted(name for name, param in params.items() if param.required and values.get(name) is None)
    if missing:
        raise ValueError(f"{owner} is missing required parameter(s): {', '.join(missing)}.")
    return {name: values.get(name, param.default) for name, param in params.items()}


def params_schema(params: dict[str, Param]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {name: param.json_schema() for name, param in params.items()},
        "required": [name for name, param in params.items() if param.required],
    }
