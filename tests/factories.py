"""factory_boy factories for every model, with realistic defaults.

Token and cost fields are consistent by default (``total_tokens = input + output``,
``total_cost = input_cost + output_cost``, ``chosen_model_id = model_id``); override what a test needs.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import factory
from django.db.models import Max
from django.utils import timezone

from llm_agents.models import (
    Batch,
    BatchRequest,
    Budget,
    CostConfig,
    Execution,
    Prompt,
    PromptVersion,
    Span,
)


class ExecutionFactory(factory.django.DjangoModelFactory):
    """A finished, successful agent call on gpt-4o-mini."""

    class Meta:
        model = Execution

    kind = Execution.Kind.AGENT
    agent_type = "SupportAgent"
    agent_version = "1.0"
    model_id = "gpt-4o-mini"
    chosen_model_id = factory.SelfAttribute("model_id")
    provider = "openai"
    temperature = 0.0
    status = Execution.Status.SUCCESS
    finish_reason = "stop"
    input_tokens = 1200
    output_tokens = 300
    cached_tokens = 0
    reasoning_tokens = 0
    total_tokens = factory.LazyAttribute(lambda o: o.input_tokens + o.output_tokens)
    input_cost = Decimal("0.00018000")
    output_cost = Decimal("0.00018000")
    total_cost = factory.LazyAttribute(lambda o: o.input_cost + o.output_cost)
    pricing_source = Execution.PricingSource.GENAI_PRICES
    duration_ms = 850
    time_to_first_token_ms = None
    started_at = factory.LazyFunction(timezone.now)
    completed_at = factory.LazyAttribute(
        lambda o: (
            o.started_at + dt.timedelta(milliseconds=o.duration_ms or 0)
            if o.status != Execution.Status.RUNNING
            else None
        )
    )
    parameters = factory.LazyFunction(lambda: {"query": "Where is my order?"})
    system_prompt = "You are a helpful support agent."
    user_prompt = "Where is my order?"
    response = "Your order ships tomorrow."
    metadata = factory.LazyFunction(dict)
    tenant_id = None
    parent = None
    prompt_version = None

    class Params:
        failed = factory.Trait(
            status=Execution.Status.ERROR,
            finish_reason="",
            response="",
            error_class="ProviderError",
            error_message="The server had an error while processing your request",
            retryable=True,
        )


class SpanFactory(factory.django.DjangoModelFactory):
    """A successful llm span of an execution."""

    class Meta:
        model = Span

    execution = factory.SubFactory(ExecutionFactory)
    parent = None
    name = "openai.responses"
    kind = Span.Kind.LLM
    status = Span.Status.OK
    model_id = factory.SelfAttribute("execution.model_id")
    provider = factory.SelfAttribute("execution.provider")
    input = factory.LazyFunction(lambda: [{"role": "user", "content": "Where is my order?"}])
    output = "Your order ships tomorrow."
    input_tokens = 1200
    output_tokens = 300
    cached_tokens = 0
    total_cost = Decimal("0.00036000")
    duration_ms = 800
    started_at = factory.LazyFunction(timezone.now)
    completed_at = factory.LazyAttribute(
        lambda o: o.started_at + dt.timedelta(milliseconds=o.duration_ms or 0)
    )
    metadata = factory.LazyFunction(dict)


class PromptFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Prompt
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"support-reply-{n}")
    name = factory.LazyAttribute(lambda o: o.slug.replace("-", " ").capitalize())
    description = "Answers a customer's question about an order."
    tags = factory.LazyFunction(lambda: ["support"])


class PromptVersionFactory(factory.django.DjangoModelFactory):
    """The next version of a prompt (number 1, 2, … per prompt)."""

    class Meta:
        model = PromptVersion

    prompt = factory.SubFactory(PromptFactory)
    number = factory.LazyAttribute(
        lambda o: (o.prompt.versions.aggregate(last=Max("number"))["last"] or 0) + 1 if o.prompt.pk else 1
    )
    messages = factory.LazyFunction(
        lambda: [
            {"role": "system", "content": "You are a helpful support agent for {{company}}."},
            {"role": "user", "content": "{{question}}"},
        ]
    )
    model = "gpt-4o-mini"
    model_params = factory.LazyFunction(lambda: {"temperature": 0.3, "max_tokens": 1024})
    changelog = "First version"
    source = PromptVersion.Source.API


class CostConfigFactory(factory.django.DjangoModelFactory):
    """gpt-4o-mini's list price, effective for the last 30 days with no end."""

    class Meta:
        model = CostConfig

    provider = "openai"
    model = "gpt-4o-mini"
    match_pattern = ""
    input_price_per_mtok = Decimal("0.150000")
    output_price_per_mtok = Decimal("0.600000")
    cached_input_price_per_mtok = Decimal("0.075000")
    effective_from = factory.LazyFunction(lambda: timezone.now() - dt.timedelta(days=30))
    effective_until = None
    source = CostConfig.Source.MANUAL


class BudgetFactory(factory.django.DjangoModelFactory):
    """A global monthly hard-stop budget of $100."""

    class Meta:
        model = Budget

    name = factory.Sequence(lambda n: f"Budget {n}")
    scope = Budget.Scope.GLOBAL
    scope_value = ""
    period = Budget.Period.MONTHLY
    period_days = None
    limit_usd = Decimal("100.00")
    token_limit = None
    enforcement = Budget.Enforcement.HARD_STOP
    alert_at_percentage = 80
    is_active = True


class BatchFactory(factory.django.DjangoModelFactory):
    """A pending claim (no provider batch id yet)."""

    class Meta:
        model = Batch

    purpose = "classify_tickets"
    model = "gpt-4o-mini"
    provider = "openai"
    provider_batch_id = ""
    status = Batch.Status.PENDING
    request_count = 0

    class Params:
        submitted = factory.Trait(
            status=Batch.Status.SUBMITTED,
            provider_batch_id=factory.LazyFunction(lambda: f"batch_{uuid.uuid4().hex[:24]}"),
            input_file_id=factory.LazyFunction(lambda: f"file-{uuid.uuid4().hex[:24]}"),
            submitted_at=factory.LazyFunction(timezone.now),
        )


class BatchRequestFactory(factory.django.DjangoModelFactory):
    """A pending request waiting for a batch."""

    class Meta:
        model = BatchRequest

    purpose = "classify_tickets"
    model = "gpt-4o-mini"
    status = BatchRequest.Status.PENDING
    payload = factory.LazyFunction(
        lambda: {
            "instructions": "Classify the ticket as billing, shipping or other.",
            "input": "My parcel never arrived.",
            "schema": None,
            "temperature": 0.0,
        }
    )
    routing = factory.LazyFunction(dict)
    batch = None
    result = None
    input_tokens = 0
    output_tokens = 0
    total_cost = Decimal("0")
    execution = None
    error = ""


def local_today() -> dt.date:
    """Today's date in ``settings.TIME_ZONE``."""
    return timezone.localtime(timezone.now(), timezone.get_default_timezone()).date()


def local_datetime(day: dt.date, hour: int = 0, minute: int = 0, second: int = 0) -> dt.datetime:
    """An aware datetime at the given wall-clock time of ``day`` in ``settings.TIME_ZONE``."""
    return dt.datetime.combine(day, dt.time(hour, minute, second), tzinfo=timezone.get_default_timezone())
