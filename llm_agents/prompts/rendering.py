"""Mustache rendering for managed prompts, on top of chevron.

Two modes share one implementation:

* **prompt mode** (``render(template, variables)``, what ``Prompt.build()`` uses): no HTML escaping,
  and a variable the template interpolates but the caller did not supply raises ``PromptError``
  naming it. Sections and inverted sections may test absent keys freely; ``None`` counts as supplied.
* **spec mode** (``render(..., escape=True, strict=False)``): the behaviour of the official Mustache
  spec — HTML escaping on, missing names render as an empty string.

Templates are tokenized once (cached) with chevron's tokenizer and the tokens are handed to
``chevron.render``. Before that, every name is rewritten into a :class:`Name`, a ``str`` that chevron
looks up in one step, so that dotted names resolve as the spec says: the first part is searched up
the context stack, the rest only inside what the first part found. (Plain chevron falls back to outer
contexts when a later part is missing, the one core spec case it fails.) The variables are wrapped in
:class:`Context` objects that understand those names.
"""

from __future__ import annotations

import datetime as dt
import functools
import numbers
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import chevron
from chevron.tokenizer import ChevronError, tokenize

from ..errors import PromptError

Token = tuple[str, Any]
SCALARS = (str, bytes, numbers.Number, dt.date, dt.time, dt.timedelta)

INTERPOLATION_TAGS = ("variable", "no escape")
SECTION_TAGS = ("section", "inverted section")


class Name(str):
    """A tag's name, looked up by chevron in a single step (``split`` does not split it)."""

    parts: tuple[str, ...]
    required: bool

    def __new__(cls, name: str, *, required: bool) -> Name:
        value = super().__new__(cls, name)
        value.parts = tuple(name.split("."))
        value.required = required
        return value

    def split(self, sep: str | None = None, maxsplit: int = -1) -> list[str]:  # type: ignore[override]
        return [self]

    def __reduce__(self) -> Any:
        return (_make_name, (str(self), self.required))


def _make_name(name: str, required: bool) -> Name:
    return Name(name, required=required)


class _Missing:
    """The value of a dotted name whose first part resolved but a later part did not."""

    def __bool__(self) -> bool:
        return False

    def __str__(self) -> str:
        return ""


MISSING = _Missing()


def missing_variable(name: str) -> PromptError:
    error = PromptError(f"Missing variable '{name}': the template uses it but it was not supplied.")
    error.variable = name
    return error


def _child(value: Any, part: str) -> Any:
    """One step of a name's resolution inside ``value``; ``LookupError`` when there is nothing there."""
    if isinstance(value, Mapping):
        try:
            return value[part]
        except (KeyError, TypeError):
            raise KeyError(part) from None
    try:
        return getattr(value, part)
    except AttributeError:
        pass
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        try:
            return value[int(part)]
        except (ValueError, IndexError):
            pass
    raise KeyError(part)


def wrap(value: Any) -> Any:
    """``value`` as chevron should see it: mappings and objects become :class:`Context`, lists and
    other iterables (sets, querysets) :class:`ListContext`; scalars and callables stay as they are."""
    if isinstance(value, Context | ListContext):
        return value
    if value is None or isinstance(value, SCALARS) or callable(value):
        return value
    if isinstance(value, Mapping):
        return Context(value)
    if isinstance(value, Iterable):
        return ListContext(value)
    return Context(value)


class Context:
    """One level of the context stack: a mapping or an object whose names chevron may look up."""

    __slots__ = ("value", "strict", "truthy")

    def __init__(self, value: Any, *, strict: bool = False, truthy: bool = False) -> None:
        self.value = value
        self.strict = strict
        self.truthy = truthy

    def __getitem__(self, key: str) -> Any:
        if not isinstance(key, Name):
            return wrap(_child(self.value, key))
        head, *rest = key.parts
        try:
            value = _child(self.value, head)
        except KeyError:
            if self.strict and key.required:
                raise missing_variable(str(key)) from None
            raise
        for part in rest:
            try:
                value = _child(value, part)
            except KeyError:
                if self.strict and key.required:
                    raise missing_variable(str(key)) from None
                return MISSING
        return wrap(value)

    def __bool__(self) -> bool:
        return self.truthy or bool(self.value)

    def __str__(self) -> str:
        return str(self.value)

    def __eq__(self, other: object) -> bool:
        return self.value == (other.value if isinstance(other, Context) else other)

    def __hash__(self) -> int:
        return id(self)


class FalsyItem:
    """A falsy list item (``0``, ``""``, ``False``, ``None``) seen from inside the list's section.

    Chevron skips the body for a falsy item; the spec renders it with the item on top of the
    context stack, so ``{{#scores}}{{.}} {{/scores}}`` with ``[0, 1]`` gives ``0 1``."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __bool__(self) -> bool:
        return True

    def __str__(self) -> str:
        return "" if self.value is None else str(self.value)

    def __getitem__(self, key: str) -> Any:
        raise KeyError(key)


def _item(item: Any) -> Any:
    """A list item as the top of the context stack: never falsy, so its section body renders."""
    if isinstance(item, Mapping) and not item:
        return Context(item, truthy=True)
    if not item and not isinstance(item, list | tuple):
        return FalsyItem(item)
    return wrap(item)


class ListContext(list):
    """A list whose items are wrapped as they are iterated or indexed."""

    def __iter__(self) -> Iterator[Any]:
        return (_item(item) for item in super().__iter__())

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, Name):
            head, *rest = key.parts
            try:
                value = _child(list(super().__iter__()), head)
            except KeyError:
                raise KeyError(key) from None
            for part in rest:
                try:
                    value = _child(value, part)
                except KeyError:
                    return MISSING
            return wrap(value)
        return wrap(super().__getitem__(key))


def _rewrite(tokens: Iterable[Token], escape: bool) -> tuple[Token, ...]:
    rewritten = []
    for tag, key in tokens:
        if tag in INTERPOLATION_TAGS and key != ".":
            if tag == "variable" and not escape:
                tag = "no escape"
            key = Name(key, required=True)
        elif tag == "variable" and not escape:
            tag = "no escape"
        elif tag in (*SECTION_TAGS, "end") and key != ".":
            key = Name(key, required=False)
        elif tag in ("comment", "set delimiter"):
            continue
        rewritten.append((tag, key))
    return tuple(rewritten)


@functools.lru_cache(maxsize=2048)
def _raw_tokens(template: str) -> tuple[Token, ...]:
    try:
        return tuple(tokenize(template))
    except ChevronError as error:
        message = " ".join(str(error).split())
        raise PromptError(f"Invalid Mustache template: {message}") from None
    except IndexError:  # chevron's tokenizer on a tag with nothing inside the delimiters
        raise PromptError(
            "Invalid Mustache template: an empty tag (nothing between the delimiters)"
        ) from None


@functools.lru_cache(maxsize=2048)
def parse(template: str, escape: bool = False) -> tuple[Token, ...]:
    """The template's tokens, ready for chevron; ``PromptError`` when the template is malformed."""
    return _rewrite(_raw_tokens(template), escape)


def check_syntax(template: str) -> None:
    """Raise ``PromptError`` describing the first Mustache syntax error of ``template``."""
    parse(template)


def partial_names(template: str) -> list[str]:
    """The partials ``template`` includes, in order of appearance, without repeats."""
    names: dict[str, None] = {}
    for tag, key in _raw_tokens(template):
        if tag == "partial":
            names.setdefault(key, None)
    return list(names)


def variable_names(template: str) -> list[str]:
    """The top-level names ``template`` interpolates or tests in a section, in order, without repeats."""
    names: dict[str, None] = {}
    for tag, key in _raw_tokens(template):
        if tag in (*INTERPOLATION_TAGS, *SECTION_TAGS) and key != ".":
            names.setdefault(key.split(".")[0], None)
    return list(names)


class Partials(Mapping):
    """Partial templates by name, handed to chevron as parsed tokens.

    ``source`` maps a name to its template text (or is a callable returning the text or None).
    A missing partial renders empty in spec mode and raises ``PromptError`` naming it otherwise.
    """

    def __init__(
        self,
        source: Mapping[str, str] | Callable[[str], str | None] | None,
        *,
        escape: bool,
        strict: bool,
    ) -> None:
        self.source = source or {}
        self.escape = escape
        self.strict = strict

    def _text(self, name: str) -> str | None:
        if callable(self.source):
            return self.source(name)
        return self.source.get(name)

    def __getitem__(self, name: str) -> Any:
        text = self._text(name)
        if text is None:
            if self.strict:
                error = PromptError(f"Missing partial '{name}': no prompt has that slug.")
                error.partial = name
                raise error
            raise KeyError(name)
        return parse(text, self.escape)

    def __iter__(self) -> Iterator[str]:
        return iter(() if callable(self.source) else self.source)

    def __len__(self) -> int:
        return 0 if callable(self.source) else len(self.source)


def render(
    template: str,
    variables: Mapping[str, Any] | None = None,
    *,
    partials: Mapping[str, str] | Callable[[str], str | None] | None = None,
    escape: bool = False,
    strict: bool = True,
) -> str:
    """Render a Mustache ``template`` with ``variables``.

    By default (prompt mode) nothing is HTML-escaped and an interpolated name that was not supplied
    raises ``PromptError``. ``escape=True, strict=False`` is the Mustache spec's behaviour.
    """
    tokens = parse(template, escape)
    context = wrap(variables if variables is not None else {})
    if isinstance(context, Context):
        context = Context(context.value, strict=strict)
    return chevron.render(
        template=tokens,
        data=context,
        partials_dict=Partials(partials, escape=escape, strict=strict),
        partials_path=None,
    )
