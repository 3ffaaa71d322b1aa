"""Property tests (hypothesis): redaction, Mustache rendering, front matter parsing and periods.

Each property runs a modest number of examples through the product's own entry points (an agent
call and a trace recorded to the database, ``render``/``build``, the ``sync_prompts`` command, the
period parsers and the HTTP API), so the file stays well under a minute. No example database is
kept (``database=None``): nothing is written to the repository.
"""

from __future__ import annotations

import datetime as dt
import json
import string
import tempfile
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.test import override_settings
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from llm_agents import Agent, Param, span, trace
from llm_agents.conf import DEFAULT_REDACT_KEYS
from llm_agents.errors import AuthenticationError, PromptError
from llm_agents.models import Execution, Prompt, PromptVersion, Span
from llm_agents.periods import FIRST_DAY, LAST_DAY, PERIODS, resolve_period
from llm_agents.prompts.rendering import check_syntax, render
from llm_agents.testing import fake_llm
from tests.api_support import API

pytestmark = pytest.mark.django_db

PROPERTIES = settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
SLOW_PROPERTIES = settings(PROPERTIES, max_examples=20)

# -- redaction ------------------------------------------------------------------------------------

SECRET = "s3cr3t-value-7f2a"
KEPT = "kept-value-91bd"
PLACEHOLDER = "[REDACTED]"

KEY_CHARACTERS = string.ascii_letters + string.digits + "_-. "
plain_keys = st.text(KEY_CHARACTERS, min_size=1, max_size=10).filter(
    lambda key: not any(word in key.lower() for word in DEFAULT_REDACT_KEYS)
)
# A sensitive word in any case, with anything around it: "X-Api_Key-2", "DB_PASSWORD", "authorization".
sensitive_keys = st.builds(
    lambda before, word, case, after: before + case(word) + after,
    st.text(KEY_CHARACTERS, max_size=4),
    st.sampled_from(DEFAULT_REDACT_KEYS),
    st.sampled_from([str.lower, str.upper, str.title, lambda word: word[:1].upper() + word[1:]]),
    st.text(KEY_CHARACTERS, max_size=4),
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False, width=32)
    | st.text(max_size=12)
)
# What sits under a sensitive key: the secret itself, or any structure holding it.
secret_values = st.recursive(
    st.just(SECRET) | st.just(f"Bearer {SECRET}"),
    lambda inner: (
        st.lists(inner, min_size=1, max_size=3) | st.dictionaries(plain_keys, inner, min_size=1, max_size=3)
    ),
    max_leaves=4,
)


def mapping(children: st.SearchStrategy) -> st.SearchStrategy:
    """A dict of plain keys (any value) and sensitive keys (values holding the secret)."""
    return st.builds(
        lambda plain, sensitive: {**plain, **sensitive},
        st.dictionaries(plain_keys, children, max_size=3),
        st.dictionaries(sensitive_keys, secret_values, max_size=2),
    )


trees = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | mapping(inner), max_leaves=12)
# "kept" last: a generated plain key may be "kept" too, and must not replace the value checked for.
documents = mapping(trees).map(lambda document: {**document, "kept": KEPT})


class OptionsAgent(Agent):
    model = "fake/echo"
    options = Param(default=None)
    extra = Param(default=None)

    def user_prompt(self):
        return "summarise the options"

    def execution_metadata(self):
        return self.extra


def stored_text(execution: Execution) -> str:
    values = [execution.parameters, execution.metadata, execution.tool_calls, execution.attempts]
    values += [[span.input, span.output, span.metadata] for span in Span.objects.filter(execution=execution)]
    return json.dumps(values)


@PROPERTIES
@given(params=documents, metadata=documents, span_input=documents, span_output=documents)
def test_no_value_under_a_sensitive_key_is_stored_at_any_depth(params, metadata, span_input, span_output):
    with trace("redaction", metadata=metadata) as traced:
        with span("step") as step:
            step.input = span_input
            step.output = span_output
            step.metadata = metadata
        result = OptionsAgent.call(options=params, extra=metadata)

    for execution in (Execution.objects.get(pk=traced.execution_id), result.execution):
        text = stored_text(execution)
        assert SECRET not in text
        assert KEPT in text  # what is not sensitive is kept
    assert result.execution.parameters["options"]["kept"] == KEPT


key_characters = string.ascii_letters + string.digits
provider_keys = st.builds(lambda body: "sk-" + body, st.text(key_characters + "_-", min_size=20, max_size=48))
around = st.text(string.printable, max_size=40)


@PROPERTIES
@given(key=provider_keys, before=around, after=around)
def test_an_api_key_in_a_provider_error_is_never_stored(key, before, after):
    with fake_llm() as llm:
        llm.fail("auth", message=f"{before}{key}{after}")
        with pytest.raises(AuthenticationError) as raised:
            OptionsAgent.call()
    assert key in str(raised.value)  # the caller still sees the provider's own message
    execution = Execution.objects.filter(agent_type="OptionsAgent", status="error").latest("started_at")
    stored = [execution.error_message, json.dumps(execution.attempts)]
    stored += list(Span.objects.filter(execution=execution).values_list("error_message", flat=True))
    assert execution.error_class == "AuthenticationError"
    assert all(key not in text for text in stored)
    assert PLACEHOLDER in execution.error_message


@PROPERTIES
@given(key=st.text(key_characters, min_size=8, max_size=30), before=around, after=around)
def test_a_configured_provider_key_is_removed_from_stored_errors_whatever_its_form(key, before, after):
    assume(key not in PLACEHOLDER)
    providers = {"fake": {"class": "llm_agents.providers.fake.FakeProvider", "api_key": key}}
    with override_settings(LLM_AGENTS={"PROVIDERS": providers}):
        with pytest.raises(RuntimeError):
            with trace("failing"):
                raise RuntimeError(f"{before}{key}{after}")
    execution = Execution.objects.filter(agent_type="failing").latest("started_at")
    assert execution.status == "error"
    assert key not in execution.error_message


# -- Mustache rendering ---------------------------------------------------------------------------

NAMES = ["a", "b", "name", "items", "a.b", "x", "user.name", "."]
TAGS = ["", "#", "^", "/", "&", "{", "!", ">", "=", "}"]
pieces = st.one_of(
    st.text(max_size=6),
    st.builds(
        lambda tag, name, close: "{{" + tag + name + close,
        st.sampled_from(TAGS),
        st.sampled_from(NAMES) | st.text(max_size=4),
        st.sampled_from(["}}", "}}}", "}", "", "=}}"]),
    ),
    st.sampled_from(
        ["{{", "}}", "{{=<% %>=}}", "<%a%>", "{{#a}}{{/a}}", "{{^b}}x{{/b}}", "\n", "{{> other}}"]
    ),
)
templates = st.lists(pieces, max_size=8).map("".join)
variable_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(NAMES[:6]), inner, max_size=3)
    ),
    max_leaves=6,
)
variables = st.dictionaries(st.sampled_from(NAMES[:6]), variable_values, max_size=4)


@settings(PROPERTIES, max_examples=300)
@given(template=templates, values=variables, escape=st.booleans())
def test_rendering_any_template_returns_text_or_raises_prompt_error(template, values, escape):
    try:
        rendered = render(template, values, escape=escape, strict=not escape)
    except PromptError as error:
        assert str(error)
        event("PromptError")
    else:
        assert isinstance(rendered, str)
        event("rendered")


@SLOW_PROPERTIES
@given(template=templates, values=variables)
def test_a_stored_prompt_builds_or_raises_prompt_error(template, values):
    prompt, _ = Prompt.objects.get_or_create(slug="property", defaults={"name": "Property"})
    try:
        version = prompt.update_content(messages=[{"role": "user", "content": template}], model="fake/echo")
    except ValidationError:
        with pytest.raises(PromptError):  # refused at save only when it cannot be parsed
            check_syntax(template)
        return
    try:
        built = Prompt.load("property").build(**values)
    except PromptError as error:
        assert str(error)
    else:
        assert built["messages"][0]["role"] == "user"
        assert built["messages"][0]["content"] == render(template, values, partials=lambda name: None)
    assert isinstance(version, PromptVersion)


# -- front matter through sync_prompts --------------------------------------------------------------

FRONT_MATTER_KEYS = ["slug", "name", "description", "tags", "model", "model_params", "messages", "body_file"]
yaml_values = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", "~", "[", "{", "]", "*a", "&a x", "!!python/object:os.system", "'", '"', "|", ">",
                     "-", "[1, 2]", "{a: 1}", "2024-01-01", "yes", "0x1F", ".inf", "- role: user"]),
    st.sampled_from(["ok-slug", "Name", "../outside/secret.txt", "/etc/hostname", "body.txt"]),
)  # fmt: skip
message_items = st.builds(
    lambda role, key, value: f"  - role: {role}\n    {key}: {value}",
    st.sampled_from(["system", "user", "assistant", "tool", "", "[x]"]),
    st.sampled_from(["content", "body_file", "other"]),
    yaml_values,
)
front_matter_lines = st.one_of(
    st.builds(lambda key, value: f"{key}: {value}", st.sampled_from(FRONT_MATTER_KEYS), yaml_values),
    st.builds(
        lambda items: "messages:\n" + "\n".join(items), st.lists(message_items, min_size=1, max_size=3)
    ),
    st.text(max_size=15),
)
file_texts = st.builds(
    lambda opening, lines, closing, body: opening + "\n".join(lines) + closing + body,
    st.sampled_from(["---\n", "---\r\n", "", "--- \n", "\ufeff---\n"]),
    st.lists(front_matter_lines, max_size=6),
    st.sampled_from(["\n---\n", "\n---", "\n", "\n...\n"]),
    st.text(max_size=30),
)
# Files that are valid but for what their random body or slug makes of them.
VALID_LINES = ["description: d", "tags: [a, b]", "model: fake/echo", "model_params: {temperature: 0.2}"]
well_formed = st.builds(
    lambda slug, lines, body: f"---\nslug: {slug}\nname: Name {slug}\n" + "\n".join(lines) + f"\n---\n{body}",
    st.from_regex(r"[a-z][a-z0-9-]{0,8}", fullmatch=True),
    st.lists(st.sampled_from(VALID_LINES), max_size=2, unique=True),
    st.text(min_size=1, max_size=30),
)
file_contents = (well_formed | well_formed | file_texts).map(lambda text: text.encode("utf-8")) | st.binary(
    max_size=40
)


@settings(PROPERTIES, max_examples=30)
@given(contents=st.lists(file_contents, min_size=1, max_size=2), dry_run=st.booleans())
def test_sync_prompts_reads_any_file_or_refuses_with_a_command_error(contents, dry_run):
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "outside").mkdir()
        (root / "outside" / "secret.txt").write_text(SECRET)
        source = root / "prompts"
        source.mkdir()
        (source / "body.txt").write_text("a body")
        for index, content in enumerate(contents):
            (source / f"file{index}.md").write_bytes(content)
        try:
            call_command("sync_prompts", path=str(source), dry_run=dry_run, verbosity=0)
        except CommandError as error:
            assert "invalid prompt file" in str(error)
            event("refused")
        else:
            event("synced")
    stored = json.dumps(list(PromptVersion.objects.values_list("messages", flat=True)))
    assert SECRET not in stored  # no body_file outside the source folder is ever read


# -- periods and dates ----------------------------------------------------------------------------

period_names = (
    st.sampled_from(PERIODS) | st.text(max_size=12) | st.sampled_from(["TODAY", "7D", " 7d", "7d\x00"])
)


@settings(PROPERTIES, max_examples=200)
@given(name=period_names | st.integers() | st.none())
def test_a_period_name_resolves_or_raises_value_error_naming_the_valid_ones(name):
    if name in PERIODS:
        period = resolve_period(name)
        assert period.start < (period.end or dt.datetime.now(dt.UTC))
        assert Execution.objects.for_period(name).count() == 0
        return
    with pytest.raises(ValueError, match="valid periods are: today, yesterday"):
        resolve_period(name)
    with pytest.raises(ValueError, match="valid periods are"):
        Execution.objects.cost_by_model(period=name)


@settings(PROPERTIES, max_examples=100)
@given(first=st.dates(), last=st.dates(), zone=st.sampled_from(["UTC", "Europe/Paris", "Pacific/Kiritimati"]))
def test_between_two_dates_filters_or_raises_value_error(first, last, zone):
    with override_settings(TIME_ZONE=zone):
        if FIRST_DAY <= min(first, last) and max(first, last) <= LAST_DAY:
            assert Execution.objects.between(first, last).count() == 0
        else:
            with pytest.raises(ValueError, match="outside the supported dates"):
                Execution.objects.between(first, last).count()


date_texts = st.none() | st.dates().map(dt.date.isoformat) | st.text(max_size=12)


def parses(value: str | None) -> dt.date | None:
    try:
        day = dt.date.fromisoformat(value) if value else None
    except ValueError:
        return None
    return day if day is not None and FIRST_DAY <= day <= LAST_DAY else None


@SLOW_PROPERTIES
@given(
    period=st.none() | period_names,
    start=date_texts,
    end=date_texts,
    path=st.sampled_from(["overview/", "executions/", "costs/summary/"]),
)
def test_the_api_answers_any_period_or_dates_with_200_or_a_400_naming_the_parameter(
    staff_client, period, start, end, path
):
    params = {name: value for name, value in (("period", period), ("start_date", start), ("end_date", end))}
    params = {name: value for name, value in params.items() if value}
    response = staff_client.get(API + path, params)
    assert response.status_code in (200, 400), response.content
    first, last = parses(start), parses(end)
    if start or end:
        valid = not period and first is not None and last is not None and first <= last
    else:
        valid = not period or period in PERIODS
    event(f"answered {response.status_code}")
    if valid:
        assert response.status_code == 200, response.content
    else:
        assert response.status_code == 400
        assert set(response.json()) & {"period", "start_date", "end_date"}
