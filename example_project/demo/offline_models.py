"""The demo's offline models: the offline provider (``llm_agents.providers.fake``), which echoes the last
user message, with two models of the demo's own that answer differently, so that its evaluation runs
have something to tell apart.

* ``fake/summary-small``, the small summary model, is terse: its answer stops after
  :data:`TERSE_SENTENCES` sentences, so it drops whatever the text says after them.
* ``fake/judge`` grades as ``llm_judge`` asks (on its scale of 5): it reads the expected output and the
  output to grade from the judge's prompt and answers ``{"score", "reasoning"}``, the score from how
  much of the expected output the output keeps.

The demo's settings name :class:`OfflineModels` as the ``fake`` provider; the Batch API that runs in the
process (``offline_batch_api``) answers with :func:`answer_text` too.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace

from llm_agents.providers.base import ProviderRequest, ProviderResponse, StreamEvent, Usage
from llm_agents.providers.fake import FakeProvider, chunked, echo, estimate_tokens, paced

#: The small model's answers stop after this many sentences.
TERSE_SENTENCES = 3
TERSE_MODELS = {"fake/summary-small"}
JUDGE_MODEL = "fake/judge"

SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
EXPECTED, GRADED, RETRY = "Expected output:\n", "Output to grade:\n", "\n\nYour previous answer"


def sentences(text: str) -> list[str]:
    return [sentence for sentence in SENTENCE_END.split(text.strip()) if sentence]


def answer_text(model: str, text: str) -> str:
    """What ``model`` answers to ``text`` (the last user message): the text itself, but for the terse
    model (its first sentences) and the judge (its verdict)."""
    if model in TERSE_MODELS:
        return " ".join(sentences(text)[:TERSE_SENTENCES])
    if model == JUDGE_MODEL:
        return verdict(text)
    return text


def verdict(prompt: str) -> str:
    """The judge's answer to the judge's ``prompt``: 5 when the output contains the expected output, else
    1 plus 4 × the share of the expected output's sentences the output repeats; 3 with nothing expected."""
    if EXPECTED not in prompt or GRADED not in prompt:
        return json.dumps({"score": 3, "reasoning": "There is no expected output to compare with."})
    expected = prompt.split(EXPECTED, 1)[1].split("\n\n" + GRADED, 1)[0].strip()
    output = prompt.rsplit(GRADED, 1)[1].split(RETRY, 1)[0].strip()
    if expected in output:
        return json.dumps({"score": 5, "reasoning": "The output has everything the expected output says."})
    wanted, given = Counter(sentences(expected)), Counter(sentences(output))
    kept = sum(min(count, given[sentence]) for sentence, count in wanted.items())
    total = sum(wanted.values())
    reasoning = f"The output keeps {kept} of the expected output's {total} sentences."
    return json.dumps({"score": 1 + round(4 * kept / total), "reasoning": reasoning})


class OfflineModels(FakeProvider):
    """The offline provider, answering as :func:`answer_text` says (after the simulated latency)."""

    def answer(self, request: ProviderRequest) -> ProviderResponse:
        response = echo(request)
        content = answer_text(request.model, response.content)
        if content == response.content:
            return response
        usage = Usage(input_tokens=response.usage.input_tokens, output_tokens=estimate_tokens(content))
        return replace(response, content=content, usage=usage)

    def complete(self, request: ProviderRequest) -> ProviderResponse:
        seconds = self.simulated_latency(request.model)
        if seconds:
            time.sleep(seconds)
        return self.answer(request)

    def stream(self, request: ProviderRequest) -> Iterator[StreamEvent]:
        seconds = self.simulated_latency(request.model)
        events = chunked(self.answer(request))
        return paced(events, seconds) if seconds else events
