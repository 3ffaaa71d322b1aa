from __future__ import annotations

import json
import logging
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

from django.conf import settings
from django.core.cache import caches
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connections, models, transaction
from django.db.models import Max, Q
from django.db.models.expressions import RawSQL
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from ..conf import app_settings
from ..errors import PromptError
from ..events import emit
from ..prompts.rendering import check_syntax, partial_names, render
from ..signals import prompt_label_moved, prompt_version_created

logger = logging.getLogger("llm_agents")

MESSAGE_ROLES = ("system", "user", "assistant", "developer")
RESERVED_PARAMS = ("model", "messages")
#: The label ``Prompt.load()`` uses when none is named, and the one experiments split.
PRODUCTION = "production"
#: The permission (``app_label.codename``) needed to move a label of ``PROTECTED_PROMPT_LABELS``.
PROMOTE_PERMISSION = "llm_agents.promote_prompt"


def prompt_cache_key(slug: str) -> str:
    """The cache key under which ``Prompt.load(slug)`` keeps the prompt and its current version."""
    return f"llm_agents:prompt:{slug}"


def invalidate_prompt_cache(*slugs: str | None) -> None:
    """Forget what ``Prompt.load()`` cached for these slugs."""
    keys = [prompt_cache_key(slug) for slug in slugs if slug]
    if keys:
        caches[app_settings.CACHE_ALIAS].delete_many(keys)


def normalize_messages(messages: Any) -> list[dict[str, str]]:
    """``messages`` as a list of ``{"role", "content"}`` dicts; ``ValidationError`` naming what is wrong.

    Each content must be a valid Mustache template.
    """
    if not isinstance(messages, list | tuple) or not messages:
        raise ValidationError(_("messages must be a non-empty list of {role, content} objects."))
    normalized = []
    for index, message in enumerate(messages, start=1):
        if not isinstance(message, Mapping):
            raise ValidationError(f"message {index} must be an object with role and content.")
        role, content = message.get("role"), message.get("content")
        if role not in MESSAGE_ROLES:
            raise ValidationError(
                f"message {index}: role must be one of {', '.join(MESSAGE_ROLES)}, not {role!r}."
            )
        if not isinstance(content, str):
            raise ValidationError(f"message {index}: content must be a string.")
        try:
            check_syntax(content)
        except PromptError as error:
            raise ValidationError(f"message {index}: {error}") from None
        normalized.append({"role": role, "content": content})
    return normalized


def normalize_model_params(model_params: Any) -> dict[str, Any]:
    """``model_params`` as a JSON-serialisable dict; ``ValidationError`` naming what is wrong."""
    if model_params is None:
        return {}
    if not isinstance(model_params, Mapping):
        raise ValidationError(_("model_params must be an object (a mapping of parameter to value)."))
    clashing = [key for key in model_params if key in RESERVED_PARAMS]
    if clashing:
        raise ValidationError(f"model_params may not set {', '.join(clashing)}.")
    try:
        return json.loads(json.dumps(dict(model_params)))
    except (TypeError, ValueError) as error:
        raise ValidationError(f"model_params must be JSON-serialisable: {error}") from None


class BuiltPrompt(dict):
    """What ``build()`` returns: ``{"model", "messages", **model_params}``, a plain dict that also
    carries the ``prompt_version`` it was built from."""

    def __init__(self, *args: Any, prompt_version: PromptVersion, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.prompt_version = prompt_version


class PromptQuerySet(models.QuerySet):
    def with_tag(self, tag: str) -> PromptQuerySet:
        """Prompts whose ``tags`` list contains ``tag``."""
        if connections[self.db].features.supports_json_field_contains:
            return self.filter(tags__contains=[tag])
        table = self.model._meta.db_table
        matching = RawSQL(
            f'SELECT "{table}"."id" FROM "{table}", json_each("{table}"."tags") '  # noqa: S608
            "WHERE json_each.value = %s",
            [tag],
        )
        return self.filter(pk__in=matching)

    def with_current_number(self) -> PromptQuerySet:
        """Annotate ``current_number``, the number of each prompt's latest version (None without one)."""
        return self.annotate(current_number=Max("versions__number"))

    def all_tags(self) -> list[str]:
        """Every tag used by these prompts, sorted."""
        tags: set[str] = set()
        for row in self.order_by().values_list("tags", flat=True):
            tags.update(tag for tag in row or [] if isinstance(tag, str))
        return sorted(tags)


class Prompt(models.Model):
    """A managed prompt, addressed by its slug; its content lives in immutable versions."""

    slug = models.SlugField(max_length=255, unique=True)
    name = models.CharField(max_length=255)
    description = models.TextField(blank=True)
    tags = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = PromptQuerySet.as_manager()

    #: The slug as loaded from the database, so a renamed prompt's old cache entry is dropped too.
    _loaded_slug: str | None
    #: Set by ``Prompt.load()``: the version it chose and the running experiment that chose it.
    _current_version: PromptVersion | None
    _experiment: Any

    class Meta:
        ordering = ["slug"]
        permissions = [("promote_prompt", "Can move protected prompt labels")]

    def __str__(self) -> str:
        return self.slug

    def save(self, *args: Any, **kwargs: Any) -> None:
        super().save(*args, **kwargs)
        slugs = {self.slug, getattr(self, "_loaded_slug", None)}
        invalidate_prompt_cache(*slugs)
        transaction.on_commit(lambda: invalidate_prompt_cache(*slugs), using=kwargs.get("using"))
        self._loaded_slug = self.slug

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        slugs = {self.slug, getattr(self, "_loaded_slug", None)}
        result = super().delete(*args, **kwargs)
        invalidate_prompt_cache(*slugs)
        transaction.on_commit(lambda: invalidate_prompt_cache(*slugs), using=kwargs.get("using"))
        return result

    def refresh_from_db(self, *args: Any, **kwargs: Any) -> None:
        super().refresh_from_db(*args, **kwargs)
        self.__dict__.pop("_current_version", None)

    @classmethod
    def from_db(
        cls, db: str | None, field_names: Collection[str], values: Collection[Any], **kwargs: Any
    ) -> Prompt:
        instance = super().from_db(db, field_names, values, **kwargs)
        instance._loaded_slug = instance.__dict__.get("slug")
        return instance

    # -- reading -------------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        slug: str,
        label: str | None = None,
        *,
        user_id: Any = None,
        session_id: Any = None,
        tenant_id: Any = None,
    ) -> Prompt:
        """The prompt with ``slug`` and the version to use, from the cache (``CACHE_ALIAS``) when
        possible; the entry is dropped whenever the prompt, a version, a label or an experiment changes.

        The version is the one ``label`` points at (``PromptError`` when the prompt has no such label);
        without a label, the ``production`` label's when the prompt has one, else the latest version.
        While an experiment on the prompt runs, loading it by ``production`` (named or by default)
        picks the experiment's variant for the unit value: ``user_id``, ``session_id`` or
        ``tenant_id`` as given, else the current ``session()`` and tenant. The prompt's
        ``current_version`` is then that version and its ``experiment`` the experiment.
        Raises ``PromptError`` when no prompt has that slug."""
        entry = cls._cached_entry(slug)
        if label is None:
            version = entry.labels.get(PRODUCTION, entry.latest)
        else:
            version = entry.labels.get(label)
            if version is None:
                raise PromptError(f"Prompt '{slug}' has no label '{label}'.")
        prompt = entry.prompt
        experiment = entry.experiment if label in (None, PRODUCTION) else None
        if experiment is not None:
            unit_value = experiment.unit_value(user_id=user_id, session_id=session_id, tenant_id=tenant_id)
            version = entry.variants[experiment.assign(unit_value)]
        prompt._current_version = version
        prompt._experiment = experiment
        return prompt

    @classmethod
    def _cached_entry(cls, slug: str) -> LoadedPrompt:
        cache = caches[app_settings.CACHE_ALIAS]
        key = prompt_cache_key(slug)
        entry = cache.get(key)
        if not isinstance(entry, LoadedPrompt):
            try:
                prompt = cls.objects.get(slug=slug)
            except cls.DoesNotExist:
                raise PromptError(f"No prompt has the slug '{slug}'.") from None
            entry = LoadedPrompt.of(prompt)
            cache.set(key, entry)
        return entry

    @property
    def experiment(self) -> Any:
        """The running PromptExperiment that chose this prompt's ``current_version`` when it came
        from ``Prompt.load()`` (None otherwise)."""
        return self.__dict__.get("_experiment")

    @property
    def current_version(self) -> PromptVersion | None:
        """The latest version (None before the first one). On a prompt from ``Prompt.load()`` this
        is the version that was cached with it, so ``build()`` and ``current_version`` agree."""
        if "_current_version" in self.__dict__:
            return self.__dict__["_current_version"]
        return self.versions.order_by("-number").first()

    def version(self, number: int) -> PromptVersion:
        """Version ``number`` of this prompt; ``PromptError`` when it does not exist."""
        try:
            return self.versions.get(number=number)
        except PromptVersion.DoesNotExist:
            raise PromptError(f"Prompt '{self.slug}' has no version {number}.") from None

    def build(self, version: int | None = None, **variables: Any) -> BuiltPrompt:
        """Render the current version (or version ``version``) with ``variables``.

        Returns ``{"model", "messages", **model_params}`` (a :class:`BuiltPrompt`, whose
        ``prompt_version`` is the version used). Raises ``PromptError`` for a missing variable, a
        missing partial or a partial cycle."""
        prompt_version = self.current_version if version is None else self.version(version)
        if prompt_version is None:
            raise PromptError(f"Prompt '{self.slug}' has no version yet.")
        return prompt_version.build(**variables)

    def label(self, name: str) -> PromptVersion | None:
        """The version label ``name`` points at (None when the prompt has no such label)."""
        found = self.labels.select_related("version").filter(name=name).first()
        return found.version if found is not None else None

    # -- writing -------------------------------------------------------------------------------

    def set_label(
        self, name: str, version: int | PromptVersion, *, user: Any = None, source: str = "api"
    ) -> PromptLabel:
        """Point label ``name`` at ``version`` (a number or a PromptVersion of this prompt) and
        keep the move in the label's history; returns the PromptLabel.

        ``user`` is who moves it: a label in ``PROTECTED_PROMPT_LABELS`` moved on behalf of a user
        needs the permission ``llm_agents.promote_prompt`` (``PermissionDenied`` otherwise); code
        that passes no user may move any label. Raises ``PromptError`` naming the number when the
        prompt has no such version. A move to the version the label already has changes nothing.
        ``prompt_label_moved`` is sent once the transaction commits."""
        if self.pk is None:
            raise PromptError("Save the prompt before labelling its versions.")
        name = validate_label_name(name)
        validate_source(source)
        check_may_move(name, user)
        db = self._state.db
        with transaction.atomic(using=db):
            Prompt.objects.using(db).select_for_update().filter(pk=self.pk).first()
            target = self._own_version(version)
            label = (
                PromptLabel.objects.using(db).filter(prompt=self, name=name).select_related("version").first()
            )
            old = label.version if label is not None else None
            if label is not None and old is not None and old.pk == target.pk:
                return label
            author = user if getattr(user, "pk", None) is not None else None
            if label is None:
                label = PromptLabel(prompt=self, name=name)
            label.version = target
            label.updated_by = author
            label.save(using=db)
            PromptLabelMove.objects.using(db).create(
                prompt=self, label=name, old_number=old.number if old is not None else None,
                new_number=target.number, moved_by=author, source=source,
            )  # fmt: skip
            slug = self.slug
            invalidate_prompt_cache(slug)
            transaction.on_commit(lambda: self._label_committed(slug, name, old, target), using=db)
        return label

    def _own_version(self, version: int | PromptVersion) -> PromptVersion:
        if isinstance(version, PromptVersion):
            if version.prompt_id != self.pk:
                raise PromptError(
                    f"Version {version.number} belongs to prompt '{version.prompt}', not '{self.slug}'."
                )
            return version
        if isinstance(version, bool) or not isinstance(version, int):
            raise PromptError(f"A version is a number or a PromptVersion, not {version!r}.")
        return self.version(version)

    def _label_committed(self, slug: str, name: str, old: PromptVersion | None, new: PromptVersion) -> None:
        invalidate_prompt_cache(slug)
        emit(
            prompt_label_moved, sender=PromptLabel, prompt=self, label=name, old_version=old, new_version=new
        )

    def update_content(
        self,
        messages: list[dict[str, str]],
        *,
        model: str | None = None,
        model_params: dict[str, Any] | None = None,
        changelog: str = "",
        source: str = "api",
    ) -> PromptVersion:
        """Create the next version with this content and return it.

        ``model`` and ``model_params`` left as None keep the current version's. When the messages,
        model and model parameters equal the current version's, that version is returned and none is
        created. Numbering is safe under concurrent writers (the prompt row is locked).
        ``prompt_version_created`` is sent once the transaction commits."""
        if self.pk is None:
            raise PromptError("Save the prompt before giving it content.")
        messages = normalize_messages(messages)
        validate_source(source)
        with transaction.atomic(using=self._state.db):
            Prompt.objects.using(self._state.db).select_for_update().filter(pk=self.pk).first()
            current = self.versions.order_by("-number").first()
            if model is None:
                model = current.model if current else ""
            params = normalize_model_params(
                (current.model_params if current else {}) if model_params is None else model_params
            )
            if current is not None and current.has_content(messages, model, params):
                self._remember_version(current)
                return current
            created = PromptVersion.objects.create(
                prompt=self,
                number=(current.number if current else 0) + 1,
                messages=messages,
                model=model or "",
                model_params=params,
                changelog=changelog,
                source=source,
            )
            now = timezone.now()
            Prompt.objects.filter(pk=self.pk).update(updated_at=now)
            self.updated_at = now
            slug = self.slug
            invalidate_prompt_cache(slug)
            transaction.on_commit(lambda: self._version_committed(slug, created), using=self._state.db)
        self._remember_version(created)
        return created

    def _remember_version(self, version: PromptVersion) -> None:
        if "_current_version" in self.__dict__:
            self._current_version = version

    def _version_committed(self, slug: str, version: PromptVersion) -> None:
        invalidate_prompt_cache(slug)
        emit(prompt_version_created, sender=PromptVersion, prompt=self, version=version)

    def rollback_to(self, number: int, *, changelog: str = "") -> PromptVersion:
        """Create a new version (source ``rollback``) with the content of version ``number``.

        When the current version already has that content it is returned and nothing is created."""
        target = self.version(number)
        return self.update_content(
            target.messages,
            model=target.model,
            model_params=target.model_params,
            changelog=changelog or f"Rollback to version {number}",
            source=PromptVersion.Source.ROLLBACK,
        )


class PromptVersionQuerySet(models.QuerySet):
    def update(self, **kwargs: Any) -> NoReturn:
        raise ValidationError("Prompt versions are immutable; create a new version instead.")


class PromptVersion(models.Model):
    """One immutable version of a prompt's messages, model and model parameters."""

    class Source(models.TextChoices):
        ADMIN = "admin", _("admin")
        SYNC = "sync", _("sync_prompts")
        API = "api", _("API")
        ROLLBACK = "rollback", _("rollback")

    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    messages = models.JSONField(default=list)
    model = models.CharField(max_length=255, blank=True)
    model_params = models.JSONField(default=dict, blank=True)
    changelog = models.TextField(blank=True)
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.API)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = PromptVersionQuerySet.as_manager()

    class Meta:
        ordering = ["prompt", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["prompt", "number"], name="llm_promptversion_unique_number"),
            models.CheckConstraint(condition=Q(number__gte=1), name="llm_promptversion_number_gte_1"),
        ]

    def __str__(self) -> str:
        return f"{self.prompt_id} v{self.number}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise ValidationError(
                f"Prompt version {self.number} of {self.prompt} is immutable; create a new version instead."
            )
        # Always an INSERT: a new instance given an existing version's pk must not overwrite it.
        kwargs["force_insert"] = True
        super().save(*args, **kwargs)

    def has_content(self, messages: list[dict[str, str]], model: str, model_params: dict[str, Any]) -> bool:
        """Whether this version's messages, model and model parameters are exactly these."""
        stored = [{"role": m.get("role"), "content": m.get("content")} for m in self.messages or []]
        return (
            stored == messages
            and (self.model or "") == (model or "")
            and (self.model_params or {}) == (model_params or {})
        )

    @property
    def text(self) -> str:
        """The contents of the messages joined by a blank line: what ``{{> slug}}`` includes."""
        return "\n\n".join(message["content"] for message in self.messages)

    def build(self, **variables: Any) -> BuiltPrompt:
        """Render this version's messages with ``variables``: ``{"model", "messages", **model_params}``."""
        partials = resolve_partials(self.prompt.slug, [message["content"] for message in self.messages])
        messages = []
        for index, message in enumerate(self.messages, start=1):
            try:
                content = render(message["content"], variables, partials=partials)
            except PromptError as error:
                located = PromptError(f"Prompt '{self.prompt.slug}' v{self.number}, message {index}: {error}")
                located.__dict__.update(error.__dict__)
                raise located from error
            messages.append({"role": message["role"], "content": content})
        return BuiltPrompt(
            {"model": self.model or None, "messages": messages, **(self.model_params or {})},
            prompt_version=self,
        )


def resolve_partials(root_slug: str, templates: Iterable[str]) -> dict[str, str]:
    """The text of every partial reachable from ``templates`` (prompts' current content, by slug).

    Raises ``PromptError`` naming a missing partial, or the cycle when partials include each other
    (or the root prompt)."""
    sources: dict[str, str] = {}

    def visit(slug: str, path: list[str]) -> None:
        if slug in path:
            cycle = " -> ".join([*path[path.index(slug) :], slug])
            raise PromptError(f"Partial cycle: {cycle}.")
        if slug in sources:
            return
        try:
            entry = Prompt._cached_entry(slug)
        except PromptError:
            error = PromptError(f"Missing partial '{slug}': no prompt has that slug.")
            error.partial = slug
            raise error from None
        version = entry.labels.get(PRODUCTION, entry.latest)
        text = version.text if version is not None else ""
        sources[slug] = text
        for name in partial_names(text):
            visit(name, [*path, slug])

    for template in templates:
        for name in partial_names(template):
            visit(name, [root_slug])
    return sources


def validate_source(source: str) -> None:
    """``ValidationError`` unless ``source`` is one of PromptVersion.Source (where a version or a
    label move came from)."""
    if source not in PromptVersion.Source.values:
        raise ValidationError(f"source must be one of {', '.join(PromptVersion.Source.values)}.")


def validate_label_name(name: Any) -> str:
    """``name`` if it is a label name (a slug); ``ValidationError`` naming it otherwise."""
    if not isinstance(name, str) or not LABEL_NAME.fullmatch(name):
        raise ValidationError(
            f"{name!r} is not a label name: use letters, digits, hyphens and underscores (at most 100)."
        )
    return name


LABEL_NAME = re.compile(r"[-a-zA-Z0-9_]{1,100}")


def is_protected(name: str) -> bool:
    """Whether label ``name`` is in ``PROTECTED_PROMPT_LABELS``."""
    return name in (app_settings.PROTECTED_PROMPT_LABELS or ())


def may_move(name: str, user: Any) -> bool:
    """Whether ``user`` may move label ``name`` (anyone, unless the label is protected)."""
    return not is_protected(name) or bool(user is not None and user.has_perm(PROMOTE_PERMISSION))


def check_may_move(name: str, user: Any) -> None:
    """``PermissionDenied`` when ``user`` (not None) may not move label ``name``."""
    if user is not None and not may_move(name, user):
        raise PermissionDenied(
            f"The label '{name}' is protected: moving it needs the permission {PROMOTE_PERMISSION}."
        )


class PromptLabel(models.Model):
    """A named pointer (``production``, ``staging``, …) at one version of a prompt."""

    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="labels")
    name = models.CharField(max_length=100)
    version = models.ForeignKey(PromptVersion, on_delete=models.CASCADE, related_name="labels")
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["prompt", "name"]
        constraints = [models.UniqueConstraint(fields=["prompt", "name"], name="llm_promptlabel_unique_name")]

    def __str__(self) -> str:
        return f"{self.prompt_id}@{self.name}"


class PromptLabelMove(models.Model):
    """One move of a prompt label: who, when, from which version number to which."""

    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="label_moves")
    label = models.CharField(max_length=100)
    old_number = models.PositiveIntegerField(null=True, blank=True, help_text=_("None: the label was new."))
    new_number = models.PositiveIntegerField()
    moved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    source = models.CharField(
        max_length=10, choices=PromptVersion.Source.choices, default=PromptVersion.Source.API
    )
    moved_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-moved_at", "-id"]
        indexes = [models.Index(fields=["prompt", "moved_at"], name="llm_labelmove_prompt_idx")]

    def __str__(self) -> str:
        return f"{self.prompt_id}@{self.label}: {self.old_number} -> {self.new_number}"


@dataclass(slots=True)
class LoadedPrompt:
    """What ``Prompt.load()`` caches for a slug: the prompt, its latest version, its labels' versions
    and its running experiment with the versions of its variants (by number)."""

    prompt: Prompt
    latest: PromptVersion | None
    labels: dict[str, PromptVersion]
    experiment: Any
    variants: dict[int, PromptVersion]

    @classmethod
    def of(cls, prompt: Prompt) -> LoadedPrompt:
        versions = prompt.versions.order_by("-number")
        labels = {label.name: label.version for label in prompt.labels.select_related("version")}
        experiment = prompt.experiments.filter(status="running").first()
        variants: dict[int, PromptVersion] = {}
        if experiment is not None:
            variants = {
                version.number: version for version in versions.filter(number__in=experiment.numbers())
            }
        return cls(prompt, versions.first(), labels, experiment, variants)
