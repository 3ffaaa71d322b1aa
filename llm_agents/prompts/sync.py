"""Reading prompts from Markdown files (``sync_prompts``) and writing them back (``export_prompts``).

A prompt file is ``*.md`` with YAML front matter::

    ---
    slug: strategy-analysis
    name: Strategy Analysis
    tags: [trading]
    model: claude-sonnet-4
    model_params: {temperature: 0.3}
    labels: [staging]
    ---
    You analyze {{app_name}}.

The body is the single system message; alternatively ``messages:`` lists ``{role, content}`` or
``{role, body_file}`` entries. ``labels`` (a list of label names, or one name) are moved to the
version the file describes. ``read_folder()`` validates every file and reports every problem;
``sync()`` then writes everything in one transaction.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from django.core.exceptions import ValidationError
from django.core.validators import validate_slug
from django.db import transaction
from django.db.models import OuterRef, Subquery
from django.utils import timezone

from ..events import emit
from ..signals import prompt_version_created

FRONT_MATTER_KEYS = (
    "slug", "name", "description", "tags", "model", "model_params", "messages", "changelog", "labels",
)  # fmt: skip
MESSAGE_KEYS = ("role", "content", "body_file")
FENCES = ("---", "...")
QUERY_CHUNK = 500
WRITE_CHUNK = 100

Progress = Callable[[str, int, int], None]
YamlLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class InvalidPromptFile(Exception):
    """A prompt file that cannot be synced; the message is the reason."""


@dataclass
class FileError:
    """One invalid file: its path (relative to the source folder) and why."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass
class PromptFile:
    """The validated content of one prompt file."""

    path: str
    slug: str
    name: str
    description: str
    tags: list[str]
    model: str
    model_params: dict[str, Any]
    messages: list[dict[str, str]]
    changelog: str = ""
    body_files: list[Path] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)


@dataclass
class SyncResult:
    """The slugs ``sync()`` created, updated and left unchanged (or would have, in a dry run)."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    dry_run: bool = False

    @property
    def summary(self) -> str:
        return f"created {len(self.created)}, updated {len(self.updated)}, unchanged {len(self.unchanged)}"


# -- reading ---------------------------------------------------------------------------------------


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def discover(root: Path, subfolders: Iterable[str] = ()) -> list[Path]:
    """The ``*.md`` files at the root of ``root`` and in its subfolders (only ``subfolders`` when
    given), sorted. Hidden files and folders are skipped; symbolic links to folders are not followed."""
    wanted = set(subfolders)
    found = []
    for entry in sorted(os.scandir(root), key=lambda entry: entry.name):
        if entry.name.startswith("."):
            continue
        if entry.is_file() and entry.name.endswith(".md"):
            found.append(Path(entry.path))
        elif entry.is_dir(follow_symlinks=False) and (not wanted or entry.name in wanted):
            for folder, dirnames, filenames in os.walk(entry.path):
                dirnames[:] = sorted(name for name in dirnames if not name.startswith("."))
                found.extend(
                    Path(folder, name)
                    for name in sorted(filenames)
                    if name.endswith(".md") and not name.startswith(".")
                )
    return found


def split_front_matter(text: str) -> tuple[str, str]:
    """``(front matter, body)`` of a Markdown file that starts with a ``---`` line."""
    lines = text.split("\n")
    if not lines or lines[0].rstrip() != "---":
        raise InvalidPromptFile("no YAML front matter (the file must start with a '---' line)")
    for index in range(1, len(lines)):
        if lines[index].rstrip() in FENCES:
            return "\n".join(lines[1:index]), "\n".join(lines[index + 1 :])
    raise InvalidPromptFile("the YAML front matter is not closed by a '---' line")


def _parse_yaml(front_matter: str) -> Any:
    try:
        return yaml.load(front_matter, Loader=YamlLoader)  # noqa: S506 (a safe loader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        problem = getattr(error, "problem", None) or str(error)
        where = f" at line {mark.line + 2}" if mark is not None else ""
        context, context_mark = getattr(error, "context", None), getattr(error, "context_mark", None)
        if context and context_mark is not None and (mark is None or context_mark.line != mark.line):
            problem += f" ({context} started at line {context_mark.line + 2})"
        raise InvalidPromptFile(f"invalid YAML front matter{where}: {problem}") from None


def _string(
    data: Mapping[str, Any], key: str, *, required: bool = False, max_length: int | None = None
) -> str:
    value = data.get(key)
    if value is None:
        if required:
            raise InvalidPromptFile(f"'{key}' is required")
        return ""
    if not isinstance(value, str):
        raise InvalidPromptFile(f"'{key}' must be a string, not {type(value).__name__}")
    value = value.strip()
    if required and not value:
        raise InvalidPromptFile(f"'{key}' must not be empty")
    if max_length is not None and len(value) > max_length:
        raise InvalidPromptFile(f"'{key}' is longer than {max_length} characters")
    return value


def _read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8-sig").replace("\r\n", "\n")
    except UnicodeDecodeError:
        raise InvalidPromptFile("is not UTF-8 text") from None


def _body_file(reference: Any, directory: Path, root: Path) -> Path:
    if not isinstance(reference, str) or not reference.strip():
        raise InvalidPromptFile("body_file must be a relative path")
    if os.path.isabs(reference) or reference.startswith("~") or Path(reference).drive:
        raise InvalidPromptFile(f"body_file '{reference}' is an absolute path; it must be relative")
    path = directory / reference
    resolved = Path(os.path.realpath(path))
    if not _inside(resolved, root):
        raise InvalidPromptFile(f"body_file '{reference}' is outside the source folder")
    if not resolved.is_file():
        raise InvalidPromptFile(f"body_file '{reference}' does not exist")
    return resolved


def _messages(
    data: Mapping[str, Any], body: str, directory: Path, root: Path
) -> tuple[list[dict], list[Path]]:
    declared = data.get("messages")
    if declared is None:
        if not body:
            raise InvalidPromptFile("has no content: write the system message as the body, or list messages:")
        return [{"role": "system", "content": body}], []
    if body:
        raise InvalidPromptFile("has both a body and messages:; use one or the other")
    if not isinstance(declared, list) or not declared:
        raise InvalidPromptFile("'messages' must be a non-empty list")
    messages, body_files = [], []
    for index, message in enumerate(declared, start=1):
        if not isinstance(message, Mapping):
            raise InvalidPromptFile(f"message {index} must be a mapping with role and content or body_file")
        unknown = sorted(str(key) for key in message if key not in MESSAGE_KEYS)
        if unknown:
            raise InvalidPromptFile(f"message {index} has unknown key(s): {', '.join(unknown)}")
        if ("content" in message) == ("body_file" in message):
            raise InvalidPromptFile(f"message {index} needs exactly one of content or body_file")
        if "body_file" in message:
            try:
                path = _body_file(message["body_file"], directory, root)
                content = _read_text(path)
            except InvalidPromptFile as error:
                raise InvalidPromptFile(f"message {index}: {error}") from None
            body_files.append(path)
        else:
            content = message["content"]
            if not isinstance(content, str):
                raise InvalidPromptFile(f"message {index}: content must be a string")
        messages.append({"role": message.get("role"), "content": content.strip()})
    return messages, body_files


def _labels(data: Mapping[str, Any]) -> list[str]:
    """The label names of ``labels:`` (a list, or one name alone), each checked like ``set_label`` does."""
    from ..models.prompts import validate_label_name

    declared = data.get("labels")
    if declared is None:
        return []
    if isinstance(declared, str):
        declared = [declared]
    if not isinstance(declared, list):
        raise InvalidPromptFile("'labels' must be a list of label names")
    names = []
    for name in declared:
        try:
            names.append(validate_label_name(name.strip() if isinstance(name, str) else name))
        except ValidationError as error:
            raise InvalidPromptFile(f"'labels': {' '.join(error.messages)}") from None
    return list(dict.fromkeys(names))


def read_prompt_file(path: Path, root: Path) -> PromptFile:
    """Parse and validate one prompt file; ``InvalidPromptFile`` says what is wrong."""
    from ..models.prompts import normalize_messages, normalize_model_params

    resolved = Path(os.path.realpath(path))
    if not _inside(resolved, root):
        raise InvalidPromptFile("is a link to a file outside the source folder")
    front_matter, body = split_front_matter(_read_text(path))
    data = _parse_yaml(front_matter)
    if not isinstance(data, Mapping):
        raise InvalidPromptFile("the front matter must be a YAML mapping (key: value lines)")
    unknown = sorted(str(key) for key in data if key not in FRONT_MATTER_KEYS)
    if unknown:
        raise InvalidPromptFile(
            f"unknown front matter key(s): {', '.join(unknown)} (allowed: {', '.join(FRONT_MATTER_KEYS)})"
        )
    slug = _string(data, "slug", required=True, max_length=255)
    try:
        validate_slug(slug)
    except ValidationError:
        raise InvalidPromptFile(
            f"slug '{slug}' may contain only letters, numbers, underscores and hyphens"
        ) from None
    tags = data.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(tag, str) and tag.strip() for tag in tags):
        raise InvalidPromptFile("'tags' must be a list of non-empty strings")
    relative = path.relative_to(root)
    tags = list(dict.fromkeys(tag.strip() for tag in tags))
    if len(relative.parts) > 1 and relative.parts[0] not in tags:
        tags.append(relative.parts[0])
    labels = _labels(data)
    messages, body_files = _messages(data, body.strip(), path.parent, root)
    try:
        messages = normalize_messages(messages)
        model_params = normalize_model_params(data.get("model_params"))
    except ValidationError as error:
        raise InvalidPromptFile(" ".join(error.messages)) from None
    return PromptFile(
        path=relative.as_posix(),
        slug=slug,
        name=_string(data, "name", required=True, max_length=255),
        description=_string(data, "description"),
        tags=tags,
        model=_string(data, "model", max_length=255),
        model_params=model_params,
        messages=messages,
        changelog=_string(data, "changelog"),
        body_files=body_files,
        labels=labels,
    )


def read_folder(
    root: str | os.PathLike[str], subfolders: Iterable[str] = (), progress: Progress | None = None
) -> tuple[list[PromptFile], list[FileError]]:
    """Read and validate every prompt file under ``root``: ``(prompt files, errors)``.

    A file used as another file's ``body_file`` is content, not a prompt. Two files with the same
    slug are both reported."""
    root = Path(os.path.realpath(root))
    if not root.is_dir():
        raise FileNotFoundError(f"The prompts folder {root} does not exist.")
    paths = discover(root, subfolders)
    parsed: dict[Path, PromptFile | FileError] = {}
    for done, path in enumerate(paths, start=1):
        try:
            parsed[path] = read_prompt_file(path, root)
        except InvalidPromptFile as error:
            parsed[path] = FileError(path.relative_to(root).as_posix(), str(error))
        except OSError as error:
            parsed[path] = FileError(path.relative_to(root).as_posix(), f"cannot be read: {error.strerror}")
        if progress is not None:
            progress("read", done, len(paths))
    body_files = {
        body for result in parsed.values() if isinstance(result, PromptFile) for body in result.body_files
    }
    files, errors = [], []
    by_slug: dict[str, list[PromptFile]] = {}
    for path, result in parsed.items():
        if Path(os.path.realpath(path)) in body_files:
            continue
        if isinstance(result, FileError):
            errors.append(result)
        else:
            files.append(result)
            by_slug.setdefault(result.slug, []).append(result)
    for slug, same in by_slug.items():
        if len(same) > 1:
            for prompt_file in same:
                others = ", ".join(other.path for other in same if other is not prompt_file)
                errors.append(FileError(prompt_file.path, f"slug '{slug}' is also used by {others}"))
    duplicated = {id(prompt_file) for same in by_slug.values() if len(same) > 1 for prompt_file in same}
    return [f for f in files if id(f) not in duplicated], sorted(errors, key=lambda error: error.path)


# -- writing ---------------------------------------------------------------------------------------


def _latest_versions(prompt_ids: list[int]) -> dict[int, Any]:
    """The current (highest-numbered) version of each of these prompts, by prompt id."""
    from ..models import PromptVersion

    latest = PromptVersion.objects.filter(prompt_id=OuterRef("prompt_id")).order_by("-number")
    current = PromptVersion.objects.filter(
        prompt_id__in=prompt_ids, number=Subquery(latest.values("number")[:1])
    )
    return {version.prompt_id: version for version in current}


def _label_numbers(prompt_ids: list[int]) -> dict[int, dict[str, int]]:
    """``{prompt id: {label name: version number}}`` for these prompts."""
    from ..models import PromptLabel

    numbers: dict[int, dict[str, int]] = {}
    rows = PromptLabel.objects.filter(prompt_id__in=prompt_ids).values_list(
        "prompt_id", "name", "version__number"
    )
    for prompt_id, name, number in rows:
        numbers.setdefault(prompt_id, {})[name] = number
    return numbers


@dataclass
class _State:
    """The prompts with the files' slugs, their current versions and their labels, as stored now."""

    prompts: dict[str, Any] = field(default_factory=dict)
    versions: dict[int, Any] = field(default_factory=dict)
    labels: dict[int, dict[str, int]] = field(default_factory=dict)


def _current_state(slugs: list[str]) -> _State:
    from ..models import Prompt

    state = _State()
    for start in range(0, len(slugs), QUERY_CHUNK):
        chunk = slugs[start : start + QUERY_CHUNK]
        found = list(Prompt.objects.filter(slug__in=chunk))
        ids = [prompt.pk for prompt in found]
        state.prompts.update((prompt.slug, prompt) for prompt in found)
        state.versions.update(_latest_versions(ids))
        state.labels.update(_label_numbers(ids))
    return state


def _create_versions(changed: list[tuple[Any, PromptFile]]) -> dict[int, Any]:
    """What ``update_content`` does for each prompt, in a few queries for them all: lock the prompt
    rows, create the next version unless the current one already has the file's content, touch
    ``updated_at``, drop the cached prompts, and send ``prompt_version_created`` once committed.
    Returns each prompt's version with the file's content (created or found), by prompt id."""
    from ..models import Prompt, PromptVersion
    from ..models.prompts import invalidate_prompt_cache

    ids = sorted(prompt.pk for prompt, _ in changed)
    list(Prompt.objects.select_for_update().filter(pk__in=ids).order_by("pk").values_list("pk", flat=True))
    current = _latest_versions(ids)
    created = []
    for prompt, prompt_file in changed:
        version = current.get(prompt.pk)
        if version is not None and version.has_content(
            prompt_file.messages, prompt_file.model, prompt_file.model_params
        ):
            continue
        current[prompt.pk] = PromptVersion(
            prompt=prompt,
            number=(version.number if version else 0) + 1,
            messages=prompt_file.messages,
            model=prompt_file.model,
            model_params=prompt_file.model_params,
            changelog=prompt_file.changelog or f"sync_prompts: {prompt_file.path}",
            source=PromptVersion.Source.SYNC,
        )
        created.append(current[prompt.pk])
    if not created:
        return current
    PromptVersion.objects.bulk_create(created)
    now = timezone.now()
    Prompt.objects.filter(pk__in=[version.prompt_id for version in created]).update(updated_at=now)
    slugs = []
    for version in created:
        version.prompt.updated_at = now
        slugs.append(version.prompt.slug)
    invalidate_prompt_cache(*slugs)

    def committed() -> None:
        invalidate_prompt_cache(*slugs)
        for version in created:
            emit(prompt_version_created, sender=PromptVersion, prompt=version.prompt, version=version)

    transaction.on_commit(committed)
    return current


def _move_labels(changed: list[tuple[Any, PromptFile]], versions: dict[int, Any], state: _State) -> None:
    """Point each file's labels at the version with its content, through ``Prompt.set_label``
    (history, cache, ``prompt_label_moved``). No user is passed, so protected labels move too."""
    for prompt, prompt_file in changed:
        version = versions[prompt.pk]
        labels = state.labels.get(prompt.pk, {})
        for name in prompt_file.labels:
            if labels.get(name) != version.number:
                prompt.set_label(name, version, source="sync")


def _sync_chunk(files: list[PromptFile], state: _State, dry_run: bool) -> list[str]:
    """Compare each file with its prompt (``created``, ``updated`` or ``unchanged``, returned in
    order) and, unless ``dry_run``, write the changes: new prompts in one bulk insert, then the
    new versions, then the label moves."""
    from ..models import Prompt

    outcomes = []
    new_prompts = []
    changed = []
    for prompt_file in files:
        details = {"name": prompt_file.name, "description": prompt_file.description, "tags": prompt_file.tags}
        prompt = state.prompts.get(prompt_file.slug)
        if prompt is None:
            outcomes.append("created")
            prompt = Prompt(slug=prompt_file.slug, **details)
            new_prompts.append(prompt)
            changed.append((prompt, prompt_file))
            continue
        details_changed = any(getattr(prompt, key) != value for key, value in details.items())
        current = state.versions.get(prompt.pk)
        content_changed = current is None or not current.has_content(
            prompt_file.messages, prompt_file.model, prompt_file.model_params
        )
        target = (current.number if current is not None else 0) + (1 if content_changed else 0)
        labels = state.labels.get(prompt.pk, {})
        labels_changed = any(labels.get(name) != target for name in prompt_file.labels)
        if not (details_changed or content_changed or labels_changed):
            outcomes.append("unchanged")
            continue
        outcomes.append("updated")
        if details_changed and not dry_run:
            for key, value in details.items():
                setattr(prompt, key, value)
            prompt.save(update_fields=[*details, "updated_at"])
        changed.append((prompt, prompt_file))
    if not dry_run and changed:
        Prompt.objects.bulk_create(new_prompts)
        for prompt in new_prompts:
            prompt._loaded_slug = prompt.slug
        _move_labels(changed, _create_versions(changed), state)
    return outcomes


def sync(
    files: list[PromptFile],
    *,
    dry_run: bool = False,
    progress: Progress | None = None,
    on_change: Callable[[str, PromptFile], None] | None = None,
) -> SyncResult:
    """Create or update a prompt for each file, in one transaction (nothing when ``dry_run``).

    A new version is created only when the messages, model or model parameters changed; a change of
    name, description or tags updates the prompt without one. Then each of the file's ``labels``
    is moved to the version with the file's content (the new one, or the current one when the
    content is unchanged) with ``Prompt.set_label(source="sync")``; labels the file does not name
    are left as they are. All three count as updated. The files are written ``WRITE_CHUNK`` at a
    time, with a few bulk queries per chunk and a few more per label moved."""
    result = SyncResult(dry_run=dry_run)
    with transaction.atomic():
        state = _current_state([prompt_file.slug for prompt_file in files])
        for start in range(0, len(files), WRITE_CHUNK):
            chunk = files[start : start + WRITE_CHUNK]
            outcomes = _sync_chunk(chunk, state, dry_run)
            for done, (prompt_file, outcome) in enumerate(zip(chunk, outcomes, strict=True), start=start + 1):
                getattr(result, outcome).append(prompt_file.slug)
                if on_change is not None:
                    on_change(outcome, prompt_file)
                if progress is not None:
                    progress("write", done, len(files))
    return result


# -- exporting -------------------------------------------------------------------------------------


class _ExportDumper(yaml.SafeDumper):
    pass


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_ExportDumper.add_representer(str, _represent_str)


def prompt_file_text(prompt: Any, version: Any, labels: Iterable[str] = ()) -> str:
    """The Markdown file ``export_prompts`` writes for ``version`` of ``prompt``, naming ``labels``
    (those pointing at ``version``) in its front matter."""
    data: dict[str, Any] = {"slug": prompt.slug, "name": prompt.name}
    if prompt.description:
        data["description"] = prompt.description
    if prompt.tags:
        data["tags"] = list(prompt.tags)
    if version.model:
        data["model"] = version.model
    if version.model_params:
        data["model_params"] = version.model_params
    labels = sorted(labels)
    if labels:
        data["labels"] = labels
    messages = version.messages
    body = ""
    if len(messages) == 1 and messages[0]["role"] == "system":
        body = messages[0]["content"]
    else:
        data["messages"] = [{"role": m["role"], "content": m["content"]} for m in messages]
    front_matter = yaml.dump(
        data, Dumper=_ExportDumper, sort_keys=False, allow_unicode=True, default_flow_style=False, width=100
    )
    text = f"---\n{front_matter}---\n"
    if body:
        text += f"\n{body}\n"
    return text


def export(
    directory: str | os.PathLike[str], slugs: Iterable[str] = (), *, dry_run: bool = False
) -> list[tuple[str, Path]]:
    """Write ``<slug>.md`` for the current version of each prompt (those in ``slugs`` when given)
    into ``directory``: ``[(slug, path)]``, with the labels that point at that version. Prompts
    without a version are skipped; labels on older versions cannot be written in the file."""
    from ..models import Prompt

    directory = Path(directory)
    queryset = Prompt.objects.order_by("slug")
    slugs = list(slugs)
    if slugs:
        queryset = queryset.filter(slug__in=slugs)
    prompts = list(queryset)
    state = _current_state([prompt.slug for prompt in prompts])
    written = []
    if not dry_run:
        directory.mkdir(parents=True, exist_ok=True)
    for prompt in prompts:
        version = state.versions.get(prompt.pk)
        if version is None:
            continue
        labels = [
            name for name, number in state.labels.get(prompt.pk, {}).items() if number == version.number
        ]
        path = directory / f"{prompt.slug}.md"
        if not dry_run:
            path.write_text(prompt_file_text(prompt, version, labels), encoding="utf-8")
        written.append((prompt.slug, path))
    return written
