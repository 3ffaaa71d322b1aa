"""The benchmark history: N root executions in the shape issue 17 measures, written with COPY.

Shape (``SHAPE`` below, seeded, so two runs with the same size and seed write the same rows, their
times counted back from the moment of generation):

- ``rows`` root executions spread evenly over the ``days`` (90) ending now, in time order as a live
  system writes them, so a third of them fall in the last 30 days;
- 12 agents with uneven traffic, 6 models of 3 providers: each agent asks for one model, ~3 % of
  calls fall back to another (``chosen_model_id`` differs, two attempts);
- 4 tenants and ~20 % of calls without a tenant;
- ~5 % failures spread over every error category (rate limit, timeout, network, authentication,
  invalid request, budget, other), with the error class and message the providers' SDKs raise;
- 2 or 3 ``agent_version`` values per agent rolled out over time (the two latest mixed in the last
  30 days), and prompt versions (1 to 3) for four of the agents;
- system prompt + user prompt + response together 0.3–6 KB, log-normal (median ~1.2 KB), the
  system prompt being the agent's own text;
- durations log-normal (median ~1.2 s), timeouts at 30–60 s; tokens from the text sizes, costs
  from the model's prices (total = input + output, both ways);
- ~60 % of calls in sessions (``conv-N``, ~2–3 calls each, consecutive in time) of 20,000 end users,
  ~10 % tagged ``beta``; nested executions inherit them;
- 3 spans per root execution (retrieval, llm, tool; the llm span carries the model, tokens and
  cost), and ~2 % of root executions calling a nested agent (its own execution with one llm span,
  its totals rolled into the root's, the root's third span an agent span), as tracking writes them.

Only COPY writes the executions and spans (psycopg's ``cursor.copy()``, one COPY per table per chunk
of ``CHUNK`` roots, one transaction per chunk): a thread builds the chunks' text while ``WRITERS``
connections COPY them; triggers on the tables fire as they do for any COPY, and the tables keep
every index (the session settings below make the search index's inserts cheaper). ``ensure()`` reuses a database whose last complete generation
had the same size, seed and shape (recorded in the table ``bench_history``) and is not stale.
PostgreSQL only.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import queue
import random
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import psycopg

SHAPE = 2  # bump when the generated rows change, so ensure() regenerates older histories
SEED = 17
DAYS = 90.0
CHUNK = 20_000
MAX_AGE_HOURS = 24.0  # ensure() regenerates a history generated longer ago than this

# (model, provider, input USD per million tokens, output USD per million tokens)
MODELS = [
    ("gpt-4o-mini", "openai", "0.15", "0.60"),
    ("gpt-4o", "openai", "2.50", "10.00"),
    ("claude-sonnet-4", "anthropic", "3.00", "15.00"),
    ("gpt-4.1-nano", "openai", "0.10", "0.40"),
    ("claude-3-5-haiku", "anthropic", "0.80", "4.00"),
    ("gemini-2.0-flash", "google", "0.10", "0.40"),
]
# (agent, share of traffic, model asked for, fallback model, versions oldest first, prompt slug)
AGENTS = [
    ("SupportAgent", 18, 0, 1, ("1.9", "2.0", "2.1"), "support-reply"),
    ("SearchAgent", 14, 5, 0, ("1.0", "1.1"), None),
    ("SummaryAgent", 12, 4, 0, ("3.0", "3.1", "3.2"), "summary"),
    ("RouterAgent", 10, 3, 0, ("1.0", "1.1"), None),
    ("TriageAgent", 9, 0, 3, ("0.9", "1.0"), "triage"),
    ("WriterAgent", 8, 2, 1, ("2.0", "2.1", "2.2"), "writer"),
    ("ExtractAgent", 7, 1, 2, ("1.0", "1.1"), None),
    ("InvoiceAgent", 6, 1, 0, ("1.4", "1.5"), None),
    ("ReviewAgent", 5, 2, 4, ("1.0", "1.1", "1.2"), None),
    ("TranslateAgent", 4, 5, 3, ("1.0", "2.0"), None),
    ("PlannerAgent", 4, 2, 1, ("0.1", "0.2"), None),
    ("nightly_digest", 3, 4, 5, ("1.0", "1.1"), None),
]
NESTED_AGENT = ("LookupAgent", 3, "1.0")  # (agent, model, version) called from inside ~2 % of roots
TENANTS = [("acme", 35), ("globex", 20), ("initech", 15), ("umbrella", 10), (None, 20)]
# (share of all calls, status, error class, error message); 5 % in all
FAILURES = [
    (0.012, "error", "RateLimitError", "Rate limit reached for requests per min (RPM): Limit 500, Used 500"),
    (0.010, "timeout", "ProviderTimeoutError", "Request timed out after 30 s"),
    (
        0.008,
        "error",
        "APIConnectionError",
        "Connection error: server disconnected without sending a response",
    ),
    (0.003, "error", "AuthenticationError", "Incorrect API key provided"),
    (0.007, "error", "BadRequestError", "This model's maximum context length is 128000 tokens"),
    (0.003, "error", "BudgetExceededError", "Budget 'monthly global' exceeded: 1000.00 USD"),
    (0.007, "error", "InternalServerError", "The server had an error while processing your request"),
]
FALLBACK_SHARE = 0.03
NESTED_SHARE = 0.02
CACHE_HIT_SHARE = 0.03
STREAMING_SHARE = 0.3
PROMPT_CACHE_SHARE = 0.4  # calls whose system prompt was read from the provider's prompt cache
SESSION_SHARE = 0.6  # calls made in a conversation (a session of ~2–3 calls minutes apart, of one end user)
SESSION_TURNS = 4  # consecutive calls drawn into one session (those of them in a session)
USERS = 20_000
BETA_TAG_SHARE = 0.1  # calls tagged "beta"

EXECUTION_COLUMNS = (
    "id", "kind", "agent_type", "agent_version", "model_id", "chosen_model_id", "provider", "temperature",
    "status", "finish_reason", "input_tokens", "output_tokens", "cached_tokens", "cache_write_tokens",
    "reasoning_tokens", "total_tokens", "input_cost", "output_cost", "total_cost", "pricing_source",
    "duration_ms", "time_to_first_token_ms", "started_at", "completed_at", "created_at", "parameters",
    "system_prompt", "user_prompt", "response", "error_class", "error_message", "metadata", "streaming",
    "tool_calls", "tool_calls_count", "attempts", "attempts_count", "fallback_chain", "fallback_reason",
    "cache_hit", "retryable", "rate_limited", "tenant_id", "parent_id", "root_id", "prompt_version_id",
    "model_spend", "session_id", "user_id", "tags",
)  # fmt: skip
SPAN_COLUMNS = (
    "id", "execution_id", "parent_id", "name", "kind", "status", "model_id", "provider", "input", "output",
    "input_tokens", "output_tokens", "cached_tokens", "cache_write_tokens", "reasoning_tokens", "total_cost",
    "duration_ms", "time_to_first_token_ms", "error_class", "error_message", "metadata", "started_at",
    "completed_at",
)  # fmt: skip

WORDS = (
    "the a an of to in for on with and or but not this that these those is are was were be been have has "
    "order invoice customer account refund payment shipping delivery address product price discount "
    "subscription plan renewal cancel support ticket issue error report summary document section table "
    "figure result answer question context retrieved passage source citation policy terms request reply "
    "please thanks regarding update status tracking number warehouse returned damaged missing item "
    "quantity total amount currency date time week month year team manager review approve reject escalate "
    "priority urgent normal low high model agent tool search query index vector embedding score rank "
    "translate english french german spanish tone formal friendly concise detailed bullet list steps"
).split()

META_TABLE = "bench_history"
WRITERS = 2  # COPY connections
# The writers' session settings: a large pending list lets the GIN search index take the rows in big
# batches (7 s instead of 18 s per 20,000 executions on the machine of docs/performance.md); commits
# need not wait for the WAL flush (a crash loses a chunk, and the history is regenerated).
SESSION_SETTINGS = {"gin_pending_list_limit": "256MB", "work_mem": "256MB", "synchronous_commit": "off"}


def _corpus(rng: random.Random, size: int) -> str:
    words, length = [], 0
    while length < size:
        word = rng.choice(WORDS)
        if rng.random() < 0.08:
            word += rng.choice((".", ",", "?", ":"))
        words.append(word)
        length += len(word) + 1
    return " ".join(words)


def _cost_units(price: str) -> int:
    """USD per million tokens as 1e-8 USD per token (prices have at most 2 decimals)."""
    units = Decimal(price) * 100
    assert units == int(units), price
    return int(units)


def _money(units: int) -> str:
    return f"{units // 100_000_000}.{units % 100_000_000:08d}"


def _spend_json(spent: dict[str, list[int]]) -> str:
    """``model_spend`` (``{model: [cost, tokens]}``, costs from whole units) as COPY text."""
    return json.dumps({model: [_money(cost), tokens] for model, (cost, tokens) in spent.items()})


def _uuid(rng: random.Random) -> str:
    bits = (rng.getrandbits(128) & ~(0xF000 << 64) | (0x4000 << 64)) & ~(0xC << 60) | (0x8 << 60)
    text = f"{bits:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def _stamp(moment: float) -> str:
    """A POSIX timestamp as COPY text (UTC)."""
    return dt.datetime.fromtimestamp(moment, dt.UTC).isoformat()


def _copy_value(value: Any) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, dict | list):
        value = json.dumps(value)
    text = str(value)
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _extra_columns(model: Any, known: tuple[str, ...]) -> tuple[list[str], str]:
    """Columns of ``model`` the generator does not know (added after it was written), with each one's
    COPY text (its default), so COPY still writes every column; nullable columns and database
    defaults are left to the database. Raises when a new column has neither."""
    from django.db.models import NOT_PROVIDED

    names, values = [], []
    for field in model._meta.concrete_fields:
        if field.column in known or getattr(field, "db_default", NOT_PROVIDED) is not NOT_PROVIDED:
            continue
        if field.has_default():
            names.append(field.column)
            values.append(_copy_value(field.get_default()))
        elif not field.null:
            raise RuntimeError(f"bench/history.py does not know how to fill {model.__name__}.{field.name}")
    return names, "".join(f"\t{value}" for value in values)


class Plan:
    """What a generation writes: sizes, seed, and the fixed tables the rows are drawn from."""

    def __init__(self, rows: int, *, days: float = DAYS, seed: int = SEED, end: float | None = None) -> None:
        self.rows, self.days, self.seed = rows, days, seed
        self.end = time.time() if end is None else end
        self.start = self.end - days * 86_400
        rng = random.Random(seed)
        self.corpus = _corpus(rng, 1_500_000)
        self.agent_prompts = [_corpus(rng, 4_000) for _ in AGENTS]
        self.nested_prompt = _corpus(rng, 2_000)
        self.prompt_versions: dict[tuple[str, int], int] = {}  # (slug, number) -> PromptVersion id
        self.agent_cumulative = _cumulative([agent[1] for agent in AGENTS])
        self.tenant_cumulative = _cumulative([tenant[1] for tenant in TENANTS])
        self.failure_cumulative = []
        total = 0.0
        for share, *_rest in FAILURES:
            total += share
            self.failure_cumulative.append(total)
        self.prices = [(_cost_units(m[2]), _cost_units(m[3])) for m in MODELS]

    def chunks(self) -> Iterator[tuple[int, int]]:
        for first in range(0, self.rows, CHUNK):
            yield first, min(first + CHUNK, self.rows)

    def generate(
        self, first: int, last: int, extra_executions: str, extra_spans: str
    ) -> tuple[str, str, int]:
        """COPY text of the executions and spans of roots ``first`` to ``last - 1``, and how many
        executions that is (roots and nested ones). Every chunk draws from its own seeded generator,
        so a chunk's rows do not depend on the chunks before it."""
        rng = random.Random(self.seed * 1_000_003 + first)
        rand, gauss = rng.random, rng.gauss
        corpus, corpus_length = self.corpus, len(self.corpus)
        span_seconds = self.end - self.start
        executions: list[str] = []
        spans: list[str] = []
        for i in range(first, last):
            started = self.start + span_seconds * (i + rand()) / self.rows
            fraction = (started - self.start) / span_seconds
            a = _pick(self.agent_cumulative, rand())
            agent, _share, asked, fallback_model, versions, slug = AGENTS[a]
            k = len(versions)
            index = min(max(int(fraction * k + (rand() - 0.5)), 0), k - 1)
            version = versions[index]
            prompt_version = self.prompt_versions.get((slug, index + 1)) if slug else None
            tenant = TENANTS[_pick(self.tenant_cumulative, rand())][0]
            roll = rand()
            failure = None
            if roll < self.failure_cumulative[-1]:
                failure = FAILURES[_pick(self.failure_cumulative, roll)]
            fell_back = failure is None and rand() < FALLBACK_SHARE
            chosen = fallback_model if fell_back else asked
            cache_hit = failure is None and not fell_back and rand() < CACHE_HIT_SHARE
            nested = failure is None and not cache_hit and rand() < NESTED_SHARE
            streaming = rand() < STREAMING_SHARE
            if rand() < SESSION_SHARE:
                conversation = i // SESSION_TURNS
                session, end_user = f"conv-{conversation}", f"u-{conversation * 7919 % USERS}"
            else:
                session = end_user = ""
            tags = '["beta"]' if rand() < BETA_TAG_SHARE else "[]"
            model, provider, *_prices = MODELS[asked]
            chosen_model, chosen_provider, *_prices = MODELS[chosen]

            size = min(max(math.exp(7.09 + 0.6 * gauss(0.0, 1.0)), 300.0), 6000.0)  # median e^7.09 ≈ 1.2 KB
            system_length = int(size * 0.35)
            user_length = int(size * 0.25)
            response_length = int(size) - system_length - user_length
            prompt_text = self.agent_prompts[a]
            system = prompt_text[:system_length]
            offset = int(rand() * (corpus_length - 6000))
            user = corpus[offset : offset + user_length]
            response = (
                "" if failure else corpus[offset + user_length : offset + user_length + response_length]
            )

            if failure is not None or cache_hit:
                tin = tout = cached = 0
            else:
                tin = (system_length + user_length) // 4 + int(rand() * 40)
                tout = response_length // 4
                cached = system_length // 4 if rand() < PROMPT_CACHE_SHARE else 0
            in_price, out_price = self.prices[chosen]
            in_cost, out_cost = tin * in_price, tout * out_price
            if failure is not None and failure[1] == "timeout":
                duration = 30_000 + int(rand() * 30_000)
            elif failure is not None:
                duration = 40 + int(rand() * 900)
            elif cache_hit:
                duration = 5 + int(rand() * 30)
            else:
                duration = min(max(int(math.exp(7.09 + 0.8 * gauss(0.0, 1.0))), 80), 120_000)

            execution_id = _uuid(rng)
            started_text = _stamp(started)
            completed_text = _stamp(started + duration / 1000)
            llm_seconds = duration * 0.8 / 1000
            # spans: retrieval (10 %), llm (80 %), tool or nested agent (10 %)
            t1, t2 = started + duration * 0.1 / 1000, started + duration * 0.9 / 1000
            s1, s2 = _stamp(t1), _stamp(t2)
            span_status = "error" if failure else "ok"
            error_class = failure[2] if failure else ""
            error_message = failure[3] if failure else ""
            spans.append(
                f"{_uuid(rng)}\t{execution_id}\t\\N\tretrieval\tretriever\tok\t\t\t"
                f'{{"query": "{agent} context", "top_k": 5}}\t{{"documents": 5}}\t0\t0\t0\t0\t0\t0.00000000\t'
                f"{duration // 10}\t\\N\t\t\t{{}}\t{started_text}\t{s1}{extra_spans}\n"
            )
            spans.append(
                f"{_uuid(rng)}\t{execution_id}\t\\N\t{chosen_model}\tllm\t{span_status}\t{chosen_model}\t"
                f'{chosen_provider}\t{{"messages": 2}}\t{{"finish_reason": "stop"}}\t{tin}\t{tout}\t{cached}\t0\t0\t'
                f"{_money(in_cost + out_cost)}\t{int(llm_seconds * 1000)}\t"
                f"{int(llm_seconds * 250) if streaming else chr(92) + 'N'}\t{error_class}\t{error_message}\t{{}}\t"
                f"{s1}\t{s2}{extra_spans}\n"
            )
            # model_spend as the product records it: the llm spans' spend by model, nested ones included.
            spent = (
                {chosen_model: [in_cost + out_cost, tin + tout]} if in_cost + out_cost or tin + tout else {}
            )
            nested_line = ""
            if nested:
                child_agent, child_model_index, child_version = NESTED_AGENT
                child_model, child_provider, *_prices = MODELS[child_model_index]
                child_in, child_out = 120 + int(rand() * 400), 30 + int(rand() * 200)
                child_prices = self.prices[child_model_index]
                child_in_cost, child_out_cost = child_in * child_prices[0], child_out * child_prices[1]
                child_duration = max(duration // 10, 1)
                child_id = _uuid(rng)
                child_offset = int(rand() * (corpus_length - 2000))
                spans.append(
                    f"{_uuid(rng)}\t{execution_id}\t\\N\t{child_agent}\tagent\tok\t{child_model}\t"
                    f'{child_provider}\t{{"q": "lookup"}}\t{{"found": true}}\t{child_in}\t{child_out}\t0\t0\t0\t'
                    f"0.00000000\t{child_duration}\t\\N\t\t\t{{}}\t{s2}\t{completed_text}{extra_spans}\n"
                )
                spans.append(
                    f"{_uuid(rng)}\t{child_id}\t\\N\t{child_model}\tllm\tok\t{child_model}\t{child_provider}\t"
                    f'{{"messages": 2}}\t{{"finish_reason": "stop"}}\t{child_in}\t{child_out}\t0\t0\t0\t'
                    f"{_money(child_in_cost + child_out_cost)}\t{child_duration}\t\\N\t\t\t{{}}\t{s2}\t"
                    f"{completed_text}{extra_spans}\n"
                )
                nested_line = (
                    f"{child_id}\tagent\t{child_agent}\t{child_version}\t{child_model}\t{child_model}\t"
                    f"{child_provider}\t0\tsuccess\tstop\t{child_in}\t{child_out}\t0\t0\t0\t{child_in + child_out}\t"
                    f"{_money(child_in_cost)}\t{_money(child_out_cost)}\t{_money(child_in_cost + child_out_cost)}\t"
                    f"genai_prices\t{child_duration}\t\\N\t{s2}\t{completed_text}\t{s2}\t{{}}\t"
                    f"{self.nested_prompt[:300]}\t{corpus[child_offset : child_offset + 200]}\t"
                    f"{corpus[child_offset + 200 : child_offset + 500]}\t\t\t{{}}\tf\t[]\t0\t[]\t1\t[]\t\tf\tf\tf\t"
                    f"{tenant if tenant is not None else chr(92) + 'N'}\t{execution_id}\t{execution_id}\t\\N\t"
                    f"{_spend_json({child_model: [child_in_cost + child_out_cost, child_in + child_out]})}"
                    f"\t{session}\t{end_user}\t{tags}{extra_executions}\n"
                )
                entry = spent.setdefault(child_model, [0, 0])
                entry[0] += child_in_cost + child_out_cost
                entry[1] += child_in + child_out
                tin, tout = tin + child_in, tout + child_out
                in_cost, out_cost = in_cost + child_in_cost, out_cost + child_out_cost
            else:
                tool_seconds = duration * 0.1
                spans.append(
                    f"{_uuid(rng)}\t{execution_id}\t\\N\tlookup_order\ttool\tok\t\t\t"
                    f'{{"order_id": {i}}}\t{{"status": "shipped"}}\t0\t0\t0\t0\t0\t0.00000000\t'
                    f"{int(tool_seconds)}\t\\N\t\t\t{{}}\t{s2}\t{completed_text}{extra_spans}\n"
                )

            tool_calls_count = 1 if not nested and rand() < 0.3 else 0
            tool_calls = (
                '[{"name": "lookup_order", "arguments": {"order_id": 1}}]' if tool_calls_count else "[]"
            )
            if fell_back:
                attempts = f'[{{"model": "{model}", "error": "RateLimitError"}}, {{"model": "{chosen_model}", "error": null}}]'
                attempts_count, chain, reason = 2, f'["{model}", "{chosen_model}"]', "RateLimitError"
            else:
                attempts, attempts_count, chain, reason = "[]", 1, "[]", ""
            status = failure[1] if failure else "success"
            finish = "" if failure else ("tool_calls" if tool_calls_count else "stop")
            ttft = str(duration // 4) if streaming and not failure else "\\N"
            executions.append(
                f"{execution_id}\tagent\t{agent}\t{version}\t{model}\t{chosen_model}\t{chosen_provider}\t0.2\t"
                f"{status}\t{finish}\t{tin}\t{tout}\t{cached}\t0\t0\t{tin + tout}\t{_money(in_cost)}\t"
                f"{_money(out_cost)}\t{_money(in_cost + out_cost)}\tgenai_prices\t{duration}\t{ttft}\t"
                f"{started_text}\t{completed_text}\t{started_text}\t"
                f'{{"temperature": 0.2, "max_tokens": 1024}}\t{system}\t{user}\t{response}\t{error_class}\t'
                f'{error_message}\t{{"request_id": "req-{i}", "channel": "web"}}\t{"t" if streaming else "f"}\t'
                f"{tool_calls}\t{tool_calls_count}\t{attempts}\t{attempts_count}\t{chain}\t{reason}\t"
                f"{'t' if cache_hit else 'f'}\t"
                f"{'t' if failure and failure[2] in ('RateLimitError', 'APIConnectionError', 'InternalServerError', 'ProviderTimeoutError') else 'f'}\t"
                f"{'t' if failure and failure[2] == 'RateLimitError' else 'f'}\t"
                f"{tenant if tenant is not None else chr(92) + 'N'}\t\\N\t{execution_id}\t"
                f"{prompt_version if prompt_version is not None else chr(92) + 'N'}\t{_spend_json(spent)}"
                f"\t{session}\t{end_user}\t{tags}{extra_executions}\n"
            )
            if nested_line:
                executions.append(nested_line)
        return "".join(executions), "".join(spans), len(executions)


def _cumulative(weights: list[float]) -> list[float]:
    total, running, result = sum(weights), 0.0, []
    for weight in weights:
        running += weight / total
        result.append(running)
    result[-1] = 1.0
    return result


def _pick(cumulative: list[float], roll: float) -> int:
    for index, edge in enumerate(cumulative):
        if roll < edge:
            return index
    return len(cumulative) - 1


def _create_prompt_versions(plan: Plan) -> None:
    """The Prompt and PromptVersion rows the executions of four agents point at (ORM: a dozen rows)."""
    from llm_agents.models import Prompt, PromptVersion

    Prompt.objects.filter(slug__startswith="bench-").delete()
    for agent, _share, model, _fallback, versions, slug in AGENTS:
        if slug is None:
            continue
        prompt = Prompt.objects.create(slug=f"bench-{slug}", name=f"{agent} (bench)")
        for number in range(1, len(versions) + 1):
            version = PromptVersion.objects.create(
                prompt=prompt,
                number=number,
                messages=[{"role": "system", "content": f"You are {agent}, version {number}."}],
                model=MODELS[model][0],
            )
            plan.prompt_versions[(slug, number)] = version.pk


def _connection_params() -> dict[str, Any]:
    """psycopg.connect() keywords for Django's default database."""
    from django.db import connection

    settings = connection.settings_dict
    params = {"dbname": settings["NAME"], "user": settings["USER"], "password": settings["PASSWORD"],
              "host": settings["HOST"], "port": settings["PORT"]}  # fmt: skip
    return {key: value for key, value in params.items() if value}


def _write_meta(cursor: Any, values: dict[str, Any] | None) -> None:
    cursor.execute(
        f"CREATE TABLE IF NOT EXISTS {META_TABLE} (rows bigint, seed integer, days double precision, "
        "shape integer, end_at timestamptz, executions bigint, spans bigint, seconds double precision, "
        "complete boolean)"
    )
    cursor.execute(f"DELETE FROM {META_TABLE}")  # noqa: S608 - a constant name
    if values is not None:
        cursor.execute(
            f"INSERT INTO {META_TABLE} VALUES (%(rows)s, %(seed)s, %(days)s, %(shape)s, "  # noqa: S608
            "to_timestamp(%(end)s), %(executions)s, %(spans)s, %(seconds)s, true)",
            values,
        )


def read_meta() -> dict[str, Any] | None:
    """The record of the last complete generation in this database, or None."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s)", [META_TABLE])
        if cursor.fetchone()[0] is None:
            return None
        cursor.execute(
            f"SELECT rows, seed, days, shape, extract(epoch FROM end_at)::float8, executions, spans, seconds "  # noqa: S608
            f"FROM {META_TABLE} WHERE complete"
        )
        row = cursor.fetchone()
    if row is None:
        return None
    keys = ("rows", "seed", "days", "shape", "end", "executions", "spans", "seconds")
    return dict(zip(keys, row, strict=True))


def generate(rows: int, *, days: float = DAYS, seed: int = SEED, quiet: bool = False) -> dict[str, Any]:
    """Empty the executions and spans tables and write ``rows`` root executions of the shape above
    with COPY, then VACUUM ANALYZE; returns the record ``read_meta()`` reads back."""
    from django.db import connection

    from llm_agents.db import partitions, rollups
    from llm_agents.models import Execution, Span

    if connection.vendor != "postgresql":
        raise RuntimeError("bench/history.py writes with PostgreSQL's COPY; point DATABASE_URL at PostgreSQL")
    started = time.perf_counter()
    plan = Plan(rows, days=days, seed=seed)
    extra_executions_columns, extra_executions = _extra_columns(Execution, EXECUTION_COLUMNS)
    extra_spans_columns, extra_spans = _extra_columns(Span, SPAN_COLUMNS)
    execution_columns = ", ".join(f'"{name}"' for name in (*EXECUTION_COLUMNS, *extra_executions_columns))
    span_columns = ", ".join(f'"{name}"' for name in (*SPAN_COLUMNS, *extra_spans_columns))
    with connection.cursor() as cursor:
        _write_meta(cursor, None)
        cursor.execute("TRUNCATE llm_agents_span, llm_agents_execution CASCADE")
    _create_prompt_versions(plan)
    if partitions.is_partitioned(connection, Execution._meta.db_table):
        # A month of partitions for every month the history covers, so no row lands in DEFAULT.
        first = dt.datetime.fromtimestamp(plan.start, dt.UTC)
        for month in partitions.months(first, dt.datetime.fromtimestamp(plan.end, dt.UTC)):
            for table in partitions.tables():
                partitions.create_month(connection, table, month)
    if not quiet:
        print(
            f"  generating {rows:,} root executions over {days:g} days with COPY (chunks of {CHUNK:,})",
            flush=True,
        )

    # One thread builds the chunks' text; WRITERS threads COPY them, each on a connection of its own,
    # so PostgreSQL uses as many cores (the search index's to_tsvector is most of the work).
    chunks: queue.Queue[tuple[int, int, str, str, int] | None] = queue.Queue(maxsize=WRITERS + 1)
    done: queue.Queue[tuple[int, int, int] | BaseException] = queue.Queue()
    stop = threading.Event()

    def produce() -> None:
        try:
            for first, last in plan.chunks():
                if stop.is_set():
                    break
                chunks.put((first, last, *plan.generate(first, last, extra_executions, extra_spans)))
        except BaseException as error:  # noqa: BLE001 - handed to the main thread, which raises it
            done.put(error)
        finally:
            for _ in range(WRITERS):
                chunks.put(None)

    def write() -> None:
        try:
            with psycopg.connect(**_connection_params()) as db:
                for setting, value in SESSION_SETTINGS.items():
                    db.execute(f"SET {setting} = '{value}'")
                db.commit()
                while (item := chunks.get()) is not None:
                    first, last, execution_text, span_text, count = item
                    with db.cursor() as cursor:
                        with cursor.copy(
                            f"COPY llm_agents_execution ({execution_columns}) FROM STDIN"
                        ) as copy:
                            copy.write(execution_text)
                        with cursor.copy(f"COPY llm_agents_span ({span_columns}) FROM STDIN") as copy:
                            copy.write(span_text)
                    db.commit()
                    done.put((last - first, count, span_text.count("\n")))
        except BaseException as error:  # noqa: BLE001 - handed to the main thread, which raises it
            stop.set()
            done.put(error)

    threads = [threading.Thread(target=produce, daemon=True)]
    threads += [threading.Thread(target=write, daemon=True) for _ in range(WRITERS)]
    for thread in threads:
        thread.start()
    roots = executions = spans = 0
    last_report = started
    while roots < rows:
        item = done.get()
        if isinstance(item, BaseException):
            stop.set()
            raise item
        roots, executions, spans = roots + item[0], executions + item[1], spans + item[2]
        now = time.perf_counter()
        if not quiet and (now - last_report >= 15 or roots == rows):
            rate = roots / (now - started)
            print(
                f"  {roots:>12,} / {rows:,} roots ({executions:,} executions, {spans:,} spans) "
                f"in {now - started:5.0f} s · {rate:,.0f} roots/s · ~{(rows - roots) / rate:.0f} s left",
                flush=True,
            )
            last_report = now
    for thread in threads:
        thread.join()
    written = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute("SET maintenance_work_mem = '512MB'")  # VACUUM merges the GIN pending list
        cursor.execute("VACUUM ANALYZE llm_agents_execution")
        cursor.execute("VACUUM ANALYZE llm_agents_span")
        # The rollups were updated at every chunk: vacuumed as autovacuum keeps such small, busy tables.
        for table in rollups.present(connection):
            cursor.execute(f"VACUUM ANALYZE {table}")
        cursor.execute("RESET maintenance_work_mem")
        seconds = time.perf_counter() - started
        meta = {
            "rows": rows,
            "seed": seed,
            "days": days,
            "shape": SHAPE,
            "end": plan.end,
            "executions": executions,
            "spans": spans,
            "seconds": seconds,
        }
        _write_meta(cursor, meta)
    if not quiet:
        print(
            f"  {rows:,} roots ({executions:,} executions, {spans:,} spans) written in {written:.0f} s, "
            f"vacuumed and analysed in {seconds - written:.0f} s: {seconds:.0f} s in all",
            flush=True,
        )
    return meta


def ensure(
    rows: int,
    *,
    days: float = DAYS,
    seed: int = SEED,
    refill: bool = False,
    max_age_hours: float = MAX_AGE_HOURS,
) -> dict[str, Any]:
    """Reuse this database's history when its last complete generation had these ``rows``, ``days``,
    ``seed`` and ``SHAPE``, still holds that many root executions, and is less than
    ``max_age_hours`` old (the windows are counted back from now); generate it otherwise."""
    from django.db import connection

    meta = read_meta()
    reason = "none recorded"
    if meta is not None:
        age_hours = (time.time() - meta["end"]) / 3600
        wanted = {"rows": rows, "days": days, "seed": seed, "shape": SHAPE}
        different = [f"{key} {meta[key]} ≠ {value}" for key, value in wanted.items() if meta[key] != value]
        if refill:
            reason = "--refill"
        elif different:
            reason = ", ".join(different)
        elif age_hours > max_age_hours:
            reason = f"generated {age_hours:.1f} h ago (> {max_age_hours:g} h)"
        else:
            with connection.cursor() as cursor:
                cursor.execute("SELECT count(*) FROM llm_agents_execution WHERE parent_id IS NULL")
                present = cursor.fetchone()[0]
            if present == rows:
                print(
                    f"reusing the history in this database: {rows:,} root executions generated "
                    f"{age_hours:.1f} h ago in {meta['seconds']:.0f} s",
                    flush=True,
                )
                return meta
            reason = f"{present:,} root executions present"
    print(f"generating the history ({reason}; want {rows:,} root executions)", flush=True)
    return generate(rows, days=days, seed=seed)


def describe(window_days: float = 30) -> list[tuple[str, str]]:
    """What the measured data holds: rows in all and in the last ``window_days`` days, the share of
    failures, fallbacks and tenants, and the rows' average width (``pg_column_size``), as
    ``(what, value)`` pairs."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FILTER (WHERE parent_id IS NULL), count(*) FILTER (WHERE parent_id IS NOT NULL), "
            "min(started_at), max(started_at) FROM llm_agents_execution"
        )
        roots, nested, first, last = cursor.fetchone()
        cursor.execute(
            "SELECT count(*), count(*) FILTER (WHERE status IN ('error', 'timeout')), "
            "count(*) FILTER (WHERE chosen_model_id <> model_id), count(*) FILTER (WHERE tenant_id IS NULL), "
            "count(DISTINCT agent_type), count(DISTINCT chosen_model_id) "
            "FROM llm_agents_execution WHERE parent_id IS NULL AND started_at >= now() - %s * interval '1 day'",
            [window_days],
        )
        window, failed, fallbacks, no_tenant, agents, models = cursor.fetchone()
        cursor.execute("SELECT count(*) FROM llm_agents_span")
        spans = cursor.fetchone()[0]
        # A 1 % sample of the table's pages, at least every row of a small table.
        sample = "TABLESAMPLE SYSTEM (1)" if roots + nested > 200_000 else ""
        cursor.execute(
            "SELECT avg(pg_column_size(e.*)), "
            "avg(octet_length(system_prompt) + octet_length(user_prompt) + octet_length(response)), "
            "percentile_cont(0.5) WITHIN GROUP (ORDER BY octet_length(system_prompt) + "
            "octet_length(user_prompt) + octet_length(response)), "
            "percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms) "
            f"FROM llm_agents_execution AS e {sample}"
        )
        width, text_mean, text_median, duration_median = cursor.fetchone()
        cursor.execute("SELECT avg(pg_column_size(s.*)) FROM llm_agents_span AS s TABLESAMPLE SYSTEM (1)")
        span_width = cursor.fetchone()[0]
        # Summed over partitions when the tables are partitioned (pg_partition_tree lists no plain table).
        sizes = [
            f"COALESCE((SELECT sum({function}(relid)) FROM pg_partition_tree('{table}')), {function}('{table}'))"
            for function, table in (
                ("pg_total_relation_size", "llm_agents_execution"),
                ("pg_relation_size", "llm_agents_execution"),
                ("pg_total_relation_size", "llm_agents_span"),
            )
        ]
        cursor.execute(f"SELECT {', '.join(sizes)}")
        total_size, heap_size, span_size = cursor.fetchone()

    def share(part: int) -> str:
        return f"{100 * part / window:.1f} %" if window else "-"

    mib = 1024 * 1024
    return [
        ("root executions", f"{roots:,} (+ {nested:,} nested), {spans:,} spans"),
        ("history", f"{first:%Y-%m-%d %H:%M} → {last:%Y-%m-%d %H:%M} UTC" if first else "empty"),
        (
            f"root executions in the last {window_days:g} days",
            f"{window:,} ({100 * window / roots:.1f} % of all)" if roots else "0",
        ),
        (
            "  of which failed / fallbacks / no tenant",
            f"{share(failed)} / {share(fallbacks)} / {share(no_tenant)}; {agents} agents, {models} models",
        ),
        (
            "average row width (pg_column_size)",
            f"executions {float(width or 0):,.0f} B, spans {float(span_width or 0):,.0f} B",
        ),
        (
            "prompts + response per execution",
            f"mean {float(text_mean or 0):,.0f} B, median {float(text_median or 0):,.0f} B; "
            f"median duration {float(duration_median or 0):,.0f} ms",
        ),
        (
            "table sizes",
            f"executions {heap_size / mib:,.0f} MiB heap, {total_size / mib:,.0f} MiB with TOAST and indexes; "
            f"spans {span_size / mib:,.0f} MiB",
        ),
    ]
