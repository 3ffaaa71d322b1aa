"""Creating and executing evaluation runs.

:func:`create_run` checks everything a run needs (the dataset, the agent, the evaluators and their params,
the overrides, the mode) and stores a ``pending`` EvalRun; :func:`execute` runs a pending run (the Celery
task ``llm_agents.tasks.run_eval`` does the same); :func:`run` is both.

In sync mode each active item is one agent call, up to ``concurrency`` at once on worker threads (each
closes its database connection when it ends), scored as it finishes; the outcomes are written a group at
a time from the calling thread. Items run one after another when ``concurrency`` is 1, on SQLite (one
writer at a time), and inside a transaction (worker threads could not see its uncommitted rows).
"""

from __future__ import annotations

import contextvars
import logging
import queue
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from django.db import connections, router
from django.utils import timezone

from ..agents import Agent
from ..conf import app_settings
from ..models import Dataset, DatasetItem, EvalRun, PromptVersion
from .batch import check_batchable, submit
from .hooks import install
from .registry import EvaluatorSpec, resolve
from .scoring import ItemOutcome, OutcomeWriter, call_item, finish
from .target import dotted_path, load_agent, resolve_prompt_version

__all__ = ["Progress", "create_run", "execute", "run"]

logger = logging.getLogger("llm_agents")

Progress = Callable[[EvalRun], None]
MODES = (EvalRun.Mode.SYNC, EvalRun.Mode.BATCH)


def create_run(
    dataset: Dataset | str,
    agent: type[Agent] | str,
    evaluators: Iterable[Any] = (),
    *,
    model: str | None = None,
    prompt_version: PromptVersion | int | None = None,
    mode: str = "sync",
    concurrency: int = 4,
    name: str = "",
    created_by: Any = None,
) -> EvalRun:
    """Check a run and store it as ``pending`` (nothing is called yet); ``execute`` runs it.

    ``dataset`` is a Dataset or its slug; ``agent`` an Agent subclass or its dotted path; ``evaluators``
    names, ``(name, params)`` pairs or ``{"name", "params"}`` objects; ``model`` replaces the agent's
    model (and its fallbacks); ``prompt_version`` (a PromptVersion of the agent's prompt, or its number)
    replaces the prompt's current version. Anything wrong (a missing dataset, an agent that does not
    import, an unknown evaluator or params it cannot take, an agent with tools in batch mode, no active
    item) raises ``ValueError`` saying so, and nothing is stored."""
    if isinstance(dataset, str):
        found = Dataset.objects.filter(slug=dataset).first()
        if found is None:
            raise ValueError(f"No dataset has the slug {dataset!r}.")
        dataset = found
    agent_class = load_agent(agent)
    specs = resolve(evaluators)
    if model is not None and (not isinstance(model, str) or not model.strip()):
        raise ValueError(f"model must be a model id, not {model!r}.")
    version = resolve_prompt_version(agent_class, prompt_version)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}.")
    if mode == EvalRun.Mode.BATCH:
        check_batchable(agent_class)
        if not app_settings.BATCH_ENABLED:
            raise ValueError('BATCH_ENABLED is off, so a run cannot use mode="batch".')
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError(f"concurrency must be a whole number of at least 1, not {concurrency!r}.")
    item_count = dataset.items.filter(is_active=True).count()
    if not item_count:
        raise ValueError(f"The dataset {dataset.slug!r} has no active item to evaluate.")
    return EvalRun.objects.create(
        dataset=dataset,
        name=name or "",
        agent_type=agent_class.agent_type,
        target=dotted_path(agent_class),
        agent_version=str(agent_class.version),
        model=(model or "").strip(),
        prompt_version=version,
        evaluators=[spec.as_dict() for spec in specs],
        mode=mode,
        concurrency=concurrency,
        item_count=item_count,
        created_by=created_by,
    )


def execute(run: EvalRun | uuid.UUID | str, *, progress: Progress | None = None) -> EvalRun:
    """Run a pending run (given as an EvalRun or its id) and return it.

    Sync mode returns it ``completed`` (or ``failed`` with ``error``); batch mode returns it ``running``
    once its requests are submitted, to be completed by the polls that settle them. ``progress(run)``
    is told after each group of items is written. A run that is not pending is returned as it is, so a
    repeated task changes nothing. Whatever stops the run as a whole (its agent no longer imports, an
    evaluator is no longer registered, the database fails) leaves it ``failed`` with the reason."""
    install()
    if not isinstance(run, EvalRun):
        run = EvalRun.objects.get(pk=run)
    now = timezone.now()
    if not EvalRun.objects.filter(pk=run.pk, status=EvalRun.Status.PENDING).update(
        status=EvalRun.Status.RUNNING, started_at=now
    ):
        run.refresh_from_db()
        return run
    run.status, run.started_at = EvalRun.Status.RUNNING, now
    try:
        agent_class = load_agent(run.target)
        specs = resolve(run.evaluators)
        items = list(
            DatasetItem.objects.filter(dataset_id=run.dataset_id, is_active=True).order_by("created_at", "id")
        )
        if len(items) != run.item_count:
            run.item_count = len(items)
            EvalRun.objects.filter(pk=run.pk).update(item_count=run.item_count)
        if run.mode == EvalRun.Mode.BATCH:
            return submit(run, agent_class, items, prompt_version=run.prompt_version)
        run_items(run, agent_class, specs, items, progress)
    except Exception as exc:
        logger.exception("llm_agents evaluation run %s failed", run.pk)
        return finish(run, error=f"{type(exc).__name__}: {exc}")
    return finish(run)


def run(
    dataset: Dataset | str,
    agent: type[Agent] | str,
    evaluators: Iterable[Any] = (),
    *,
    model: str | None = None,
    prompt_version: PromptVersion | int | None = None,
    mode: str = "sync",
    concurrency: int = 4,
    name: str = "",
    created_by: Any = None,
    progress: Progress | None = None,
) -> EvalRun:
    """Evaluate ``agent`` on every active item of ``dataset`` with ``evaluators``: :func:`create_run`
    then :func:`execute`. ``run.summary`` holds ``{evaluator: {n, mean, pass_rate, ci95}}`` once the run
    completes::

        run = evals.run("faq", SearchAgent, evaluators=["exact_match", ("llm_judge", {"criteria": "Cites a source"})])
    """
    created = create_run(
        dataset, agent, evaluators, model=model, prompt_version=prompt_version, mode=mode,
        concurrency=concurrency, name=name, created_by=created_by,
    )  # fmt: skip
    return execute(created, progress=progress)


def run_items(
    run: EvalRun,
    agent_class: type[Agent],
    specs: Sequence[EvaluatorSpec],
    items: Sequence[DatasetItem],
    progress: Progress | None,
) -> None:
    """Call and score every item (on up to ``run.concurrency`` threads) and write the outcomes."""
    writer = OutcomeWriter(run, progress)
    version = run.prompt_version
    model = run.model or None

    def one(item: DatasetItem) -> ItemOutcome:
        return call_item(run.pk, agent_class, specs, item, model=model, prompt_version=version)

    workers = min(run.concurrency, len(items))
    connection = connections[router.db_for_write(EvalRun)]
    if workers <= 1 or connection.vendor == "sqlite" or connection.in_atomic_block:
        for item in items:
            writer.add(one(item))
            if not writer.running:
                break
    else:
        for outcome in threaded(
            one, items, workers, stop=lambda: not writer.running, tick=writer.flush_if_due
        ):
            writer.add(outcome)
    writer.flush()


def threaded(
    work: Callable[[DatasetItem], ItemOutcome],
    items: Sequence[DatasetItem],
    workers: int,
    *,
    stop: Callable[[], bool],
    tick: Callable[[], None],
) -> Iterator[ItemOutcome]:
    """``work(item)`` for every item on ``workers`` threads (each in a copy of the caller's context, each
    closing its database connections when it ends); yields the outcomes as they finish. ``tick`` is
    called while waiting; once ``stop()`` is true no further item starts."""
    pending = iter(items)
    lock = threading.Lock()
    finished: queue.Queue[Any] = queue.Queue()
    done = object()
    halt = threading.Event()

    def worker() -> None:
        try:
            while not halt.is_set():
                with lock:
                    item = next(pending, None)
                if item is None:
                    return
                finished.put(work(item))
        except BaseException as exc:  # handed to the caller's thread, which raises it
            finished.put(exc)
        finally:
            connections.close_all()
            finished.put(done)

    threads = [
        threading.Thread(
            target=contextvars.copy_context().run, args=(worker,), name=f"llm_agents_eval_{n}", daemon=True
        )
        for n in range(workers)
    ]
    for thread in threads:
        thread.start()
    running = workers
    try:
        while running:
            try:
                got = finished.get(timeout=0.2)
            except queue.Empty:
                tick()
                if stop():
                    halt.set()
                continue
            if got is done:
                running -= 1
            elif isinstance(got, BaseException):
                halt.set()
                raise got
            else:
                yield got
                if stop():
                    halt.set()
    finally:
        halt.set()
        for thread in threads:
            thread.join()
