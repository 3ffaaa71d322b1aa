"""Demo agents. With no OPENAI_API_KEY they use the offline ``fake/…`` models; with one, OpenAI."""

from __future__ import annotations

import os

from llm_agents import Agent, Param, Tool

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
    """Answers a question, looking documents up with a tool."""

    model = "gpt-4o-mini" if ONLINE else "fake/search-small"
    version = "1.1"
    tools = [LookupDocument]
    query = Param(required=True)

    def system_prompt(self) -> str:
        return "You answer questions about software. Use lookup_document when a topic is named."

    def user_prompt(self) -> str:
        return f"Search for {self.query}"

    def execution_metadata(self) -> dict[str, str]:
        return {"source": "demo"}


class SummaryAgent(Agent):
    """Summarises a text; falls back to a second model when the first fails."""

    model = "gpt-4o" if ONLINE else "fake/summary-large"
    fallback_models = ["gpt-4o-mini" if ONLINE else "fake/summary-small"]
    retries = 1
    retry_backoff = 0
    version = "2.0"
    text = Param(required=True)
    style = Param(default="short")

    def system_prompt(self) -> str:
        return f"Summarise in a {self.style} paragraph."

    def user_prompt(self) -> str:
        return self.text


class StoryAgent(Agent):
    """Streams a short story."""

    model = "gpt-4o-mini" if ONLINE else "fake/story-stream"
    temperature = 0.7
    topic = Param(required=True)

    def user_prompt(self) -> str:
        return f"Tell a three-sentence story about {self.topic}."
