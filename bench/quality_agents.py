"""The agent ``bench_quality.py`` evaluates: a module of its own, so that the evaluation run can
import it by its dotted path as a worker would."""

from __future__ import annotations

from llm_agents import Agent, Param


class BenchAnswer(Agent):
    model = "gpt-4o-mini"
    question = Param()

    def user_prompt(self) -> str:
        return self.question
