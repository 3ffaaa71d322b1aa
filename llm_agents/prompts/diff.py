"""Line diffs between two prompt versions, message by message (for the admin)."""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from typing import Any

LINE_KINDS = {"+": "added", "-": "removed", " ": "context", "@": "hunk"}


@dataclass
class DiffLine:
    kind: str  # added | removed | context | hunk
    text: str


@dataclass
class MessageDiff:
    """The diff of the message at ``index`` (1-based) between two versions."""

    index: int
    old_role: str | None
    new_role: str | None
    lines: list[DiffLine] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.lines) or self.old_role != self.new_role

    @property
    def status(self) -> str:
        if self.old_role is None:
            return "added"
        if self.new_role is None:
            return "removed"
        return "changed" if self.changed else "unchanged"


@dataclass
class VersionDiff:
    """Everything that differs between an old and a new version."""

    messages: list[MessageDiff]
    model: tuple[str, str] | None
    model_params: list[DiffLine]

    @property
    def changed(self) -> bool:
        return any(message.changed for message in self.messages) or bool(self.model or self.model_params)


def diff_lines(old: str, new: str, context: int = 3) -> list[DiffLine]:
    """A unified diff of two texts as typed lines; empty when they are equal."""
    lines = difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=context)
    return [DiffLine(LINE_KINDS[line[0]], line) for line in lines if not line.startswith(("---", "+++"))]


def _params_text(params: dict[str, Any] | None) -> str:
    return json.dumps(params or {}, indent=2, sort_keys=True, ensure_ascii=False)


def diff_versions(old: Any, new: Any) -> VersionDiff:
    """Compare two ``PromptVersion``s: each message's role and content, the model, the model params."""
    old_messages, new_messages = list(old.messages or []), list(new.messages or [])
    messages = []
    for index in range(max(len(old_messages), len(new_messages))):
        before = old_messages[index] if index < len(old_messages) else None
        after = new_messages[index] if index < len(new_messages) else None
        messages.append(
            MessageDiff(
                index=index + 1,
                old_role=before["role"] if before else None,
                new_role=after["role"] if after else None,
                lines=diff_lines(before["content"] if before else "", after["content"] if after else ""),
            )
        )
    model = (old.model, new.model) if (old.model or "") != (new.model or "") else None
    return VersionDiff(
        messages=messages,
        model=model,
        model_params=diff_lines(_params_text(old.model_params), _params_text(new.model_params)),
    )
