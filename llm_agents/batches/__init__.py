"""Queueing requests for the OpenAI Batch API (half price, answered within 24 hours)::

    from llm_agents import batches

    batches.enqueue(purpose="chat_summary", model="gpt-4.1-mini", instructions="Summarize.",
                    input=text, schema=SummarySchema, routing={"conversation_id": 42})
    batches.register_handler("chat_summary", ChatSummaryHandler())
    batches.flush()   # submit what is pending   (task llm_agents.tasks.flush_batches, command flush_batches)
    batches.poll()    # reconcile what finished  (task llm_agents.tasks.poll_batches,  command poll_batches)

See ``docs/batches.md`` for the lifecycle, the handler contract and scheduling.
"""

from __future__ import annotations

from .handlers import BatchRequestError, BatchResult, get_handler, register_handler, unregister_handler
from .queue import enqueue, retry_failed
from .reconcile import PollReport, poll
from .schema import SchemaValidationError
from .submit import MAX_BYTES, MAX_REQUESTS, FlushReport, cancel, flush

__all__ = [
    "MAX_BYTES",
    "MAX_REQUESTS",
    "BatchRequestError",
    "BatchResult",
    "FlushReport",
    "PollReport",
    "SchemaValidationError",
    "cancel",
    "enqueue",
    "flush",
    "get_handler",
    "poll",
    "register_handler",
    "retry_failed",
    "unregister_handler",
]
