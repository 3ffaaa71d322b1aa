"""Scores: judgements of executions and of whole sessions (SPEC section 16), and end-user feedback.

::

    from llm_agents import scores

    scores.add(execution, "helpfulness", 4, comment="good", source="human", author=request.user)
    scores.add(execution, "resolved", True)
    scores.add_session("conv-42", "csat", "happy")
    scores.record_feedback(result.feedback_token, "thumbs_up", True)

A value's data type follows from it (True/False boolean, stored as 1.0/0.0; a number numeric; a
string categorical) unless a :class:`~llm_agents.models.ScoreConfig` of the name exists: the config
then decides the type and bounds the value. A value that does not fit raises ``ValidationError``
naming the field and stores nothing. Each score stored sends ``score_created`` once the transaction
commits.

A score of an execution of an evaluation run belongs to that run (its ``eval_run`` is the
execution's unless given), so the production analytics leave it out as they leave out the execution.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.core import signing
from django.core.exceptions import ValidationError
from django.db import router, transaction

from .conf import app_settings
from .context import current_tenant_id
from .db.isolation import single_writer
from .events import emit
from .models import Execution, Score
from .signals import score_created

__all__ = [
    "FeedbackTokenError",
    "add",
    "add_session",
    "feedback_token",
    "record_feedback",
    "verify_feedback_token",
    "vote",
]

FEEDBACK_SALT = "llm_agents.feedback"


class FeedbackTokenError(ValueError):
    """A feedback token that is not one of ours (``"invalid token"``: forged or tampered with) or
    that is older than ``FEEDBACK_TOKEN_MAX_AGE`` (``"expired token"``)."""


def add(
    execution: Execution | uuid.UUID | str,
    name: str,
    value: Any,
    *,
    comment: str = "",
    source: str = Score.Source.API,
    author: Any = None,
    eval_run: Any = None,
    eval_result: Any = None,
) -> Score:
    """Store a score of ``execution`` (an Execution or its id) and return it. Its ``tenant_id`` is
    the execution's, its ``eval_run`` the execution's evaluation run unless given. ``ValidationError``
    (naming the field: ``execution``, ``name``, ``value``, ``source``) when it does not fit."""
    alias = router.db_for_write(Score)
    execution_id = execution.pk if isinstance(execution, Execution) else execution
    found = (
        Execution.objects.using(alias)
        .filter(pk=execution_id)
        .values_list("tenant_id", "eval_run_id", "started_at")
        .first()
        if _is_uuid(execution_id)
        else None
    )
    if found is None:
        raise ValidationError({"execution": f"No execution has the id {execution_id!r}."})
    tenant_id, run_id, started_at = found
    score = _checked(
        Score(
            execution_id=execution_id, name=name, comment=comment, source=source, author=author,
            eval_run=eval_run, eval_result=eval_result, tenant_id=tenant_id, execution_started_at=started_at,
        ),
        value,
    )  # fmt: skip
    if eval_run is None and run_id is not None:
        score.eval_run_id = run_id
    with single_writer(alias), transaction.atomic(using=alias):
        _save(score, alias)
    return score


def add_session(
    session_id: str,
    name: str,
    value: Any,
    *,
    comment: str = "",
    source: str = Score.Source.API,
    author: Any = None,
) -> Score:
    """Store a score of the whole session ``session_id`` and return it. Its ``tenant_id`` is that of
    the session's latest execution with a tenant, else the current tenant. ``ValidationError``
    (naming the field: ``session_id``, ``name``, ``value``, ``source``) when it does not fit."""
    alias = router.db_for_write(Score)
    if not isinstance(session_id, str) or not session_id:
        raise ValidationError({"session_id": f"session_id must be a non-empty string, not {session_id!r}."})
    tenant_id = (
        Execution.objects.using(alias)
        .by_session(session_id)
        .exclude(tenant_id__isnull=True)
        .exclude(tenant_id="")
        .order_by("-started_at")
        .values_list("tenant_id", flat=True)
        .first()
    )
    if tenant_id is None:
        tenant_id = current_tenant_id()
    score = _checked(
        Score(
            session_id=session_id,
            name=name,
            comment=comment,
            source=source,
            author=author,
            tenant_id=tenant_id,
        ),
        value,
    )
    with single_writer(alias), transaction.atomic(using=alias):
        _save(score, alias)
    return score


def feedback_token(execution_id: uuid.UUID | str) -> str:
    """A signed token naming the execution ``execution_id`` (``AgentResult.feedback_token``): whoever
    holds it may record feedback on that execution for ``FEEDBACK_TOKEN_MAX_AGE`` seconds."""
    return signing.dumps(str(execution_id), salt=FEEDBACK_SALT, compress=False)


def verify_feedback_token(token: str) -> uuid.UUID:
    """The id of the execution ``token`` names; :class:`FeedbackTokenError` when the token is not
    one of ours (forged, tampered with: ``"invalid token"``) or is too old (``"expired token"``)."""
    try:
        named = signing.loads(str(token), salt=FEEDBACK_SALT, max_age=app_settings.FEEDBACK_TOKEN_MAX_AGE)
    except signing.SignatureExpired:
        raise FeedbackTokenError("expired token") from None
    except signing.BadSignature:
        raise FeedbackTokenError("invalid token") from None
    if not _is_uuid(named):
        raise FeedbackTokenError("invalid token")
    return uuid.UUID(named)


def record_feedback(token: str, name: str, value: Any, comment: str = "") -> Score:
    """Store end-user feedback on the execution ``token`` names (:func:`feedback_token`), with
    source ``feedback``, and return it (:func:`vote`, without saying whether it replaced one)."""
    return vote(token, name, value, comment)[0]


def vote(token: str, name: str, value: Any, comment: str = "") -> tuple[Score, bool]:
    """Store end-user feedback on the execution ``token`` names, with source ``feedback``; return it
    and whether it replaced an earlier vote.

    One vote per token and name: the token names the execution, so an execution keeps one feedback
    score per name, and a second post replaces the first (the earlier score is deleted, the new one
    stored). Posts for one execution take turns (its row is locked, ``SELECT … FOR UPDATE``, while
    the old vote is replaced), so concurrent posts leave one score. :class:`FeedbackTokenError` for
    a bad token; ``ValidationError`` (naming the field) for a value that does not fit."""
    execution_id = verify_feedback_token(token)
    alias = router.db_for_write(Score)
    score = _checked(
        Score(execution_id=execution_id, name=name, comment=comment, source=Score.Source.FEEDBACK), value
    )
    with single_writer(alias), transaction.atomic(using=alias):
        found = (
            Execution.objects.using(alias)
            .select_for_update()
            .filter(pk=execution_id)
            .values_list("tenant_id", "eval_run_id", "started_at")
            .first()
        )
        if found is None:
            raise ValidationError({"execution": f"No execution has the id {str(execution_id)!r}."})
        score.tenant_id, score.eval_run_id, score.execution_started_at = found
        replaced, _ = (
            Score.objects.using(alias)
            .filter(execution_id=execution_id, name=score.name, source=Score.Source.FEEDBACK)
            .delete()
        )
        _save(score, alias)
    return score, bool(replaced)


def _checked(score: Score, value: Any) -> Score:
    """``score`` with its value set from ``value`` and every field checked; ``ValidationError`` with
    each field that does not fit otherwise (the category, ``string_value``, reported as ``value``).
    The foreign keys are the caller's to check."""
    errors: dict[str, list[str]] = {}
    try:
        score.set_value(value)
    except ValidationError as error:
        errors.update(error.message_dict)
    relations = {"execution", "author", "eval_run", "eval_result"}
    try:
        score.clean_fields(exclude=relations | ({"data_type", "value", "string_value"} if errors else set()))
    except ValidationError as error:
        for field, messages in error.message_dict.items():
            errors.setdefault("value" if field == "string_value" else field, []).extend(messages)
    if not errors:
        try:
            score.clean()
        except ValidationError as error:
            errors.update(error.message_dict)
    if errors:
        raise ValidationError(errors)
    return score


def _save(score: Score, alias: str) -> None:
    """Insert ``score`` and send ``score_created`` once the transaction commits."""
    score.save(using=alias, force_insert=True)
    transaction.on_commit(lambda: emit(score_created, sender=Score, score=score), using=alias)


def _is_uuid(value: Any) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True
