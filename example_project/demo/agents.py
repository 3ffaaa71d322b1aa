"""Demo agents and the demo's batch handler. With no OPENAI_API_KEY the agents use the offline ``fake/…``
models; with one, OpenAI. SearchAgent and SummaryAgent send the managed prompts synced from
``example_project/prompts/`` (``prompt = "slug"``); StoryAgent writes its prompt in code."""

from __future__ import annotations

import logging
import os
from typing import Any

from llm_agents import Agent, Param, Tool
from llm_agents.batches import BatchRequestError, BatchResult

logger = logging.getLogger(__name__)

ONLINE = bool(os.environ.get("OPENAI_API_KEY"))

DOCUMENTS = {
    "django": "Django is a high-level Python web framework.",
    "celery": "Celery is a distributed task queue.",
    "postgres": "PostgreSQL is an object-relational database.",
    "redis": "Redis is an in-memory data store.",
}


class LookupDocument(Tool):
    name = "lookup_document"
    description = "Find the reference document about a topic."
    topic = Param(required=True, description="One word, e.g. django")

    def run(self, topic: str) -> dict[str, str]:
        return {"topic": topic, "text": DOCUMENTS.get(topic.lower(), "No document found.")}


class SearchAgent(Agent):
    """Answers a question (the ``answer-question`` prompt), looking documents up with a tool."""

    model = "gpt-4o-mini" if ONLINE else "fake/search-small"
    prompt = "answer-question"
    version = "1.1"
    tools = [LookupDocument]
    query = Param(required=True)

    def execution_metadata(self) -> dict[str, str]:
        return {"source": "demo"}


class SummaryAgent(Agent):
    """Summarises a text (the ``summarise`` prompt, which includes ``house-style``); falls back to a
    second model when the first fails."""

    model = "gpt-4o" if ONLINE else "fake/summary-large"
    fallback_models = ["gpt-4o-mini" if ONLINE else "fake/summary-small"]
    retries = 1
    retry_backoff = 0
    prompt = "summarise"
    version = "2.0"
    text = Param(required=True)
    style = Param(default="short")


class StoryAgent(Agent):
    """Streams a short story."""

    model = "gpt-4o-mini" if ONLINE else "fake/story-stream"
    temperature = 0.7
    topic = Param(required=True)

    def user_prompt(self) -> str:
        return f"Tell a three-sentence story about {self.topic}."


class TicketSummaryHandler:
    """Receives the batched ticket summaries (purpose ``ticket_summary``); ``routing`` names the ticket."""

    def call(self, request: Any, result: BatchResult) -> None:
        logger.info("Ticket %s summarised: %s", request.routing.get("ticket"), result.content[:80])

    def on_failure(self, request: Any, error: BatchRequestError) -> None:
        logger.warning("Ticket %s was not summarised: %s", request.routing.get("ticket"), error)
