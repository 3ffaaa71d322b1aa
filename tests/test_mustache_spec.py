"""Every case of the official Mustache spec files (comments, delimiters, interpolation, inverted,
partials, sections) in spec mode: HTML escaping on, missing names render empty.

The JSON files in ``tests/mustache_spec/`` are copied unchanged from the mustache/spec repository
(MIT licence beside them)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llm_agents.prompts.rendering import render

SPEC_DIR = Path(__file__).parent / "mustache_spec"
SPEC_FILES = ("comments", "delimiters", "interpolation", "inverted", "partials", "sections")
CASES = [
    pytest.param(case, id=f"{name}: {case['name']}")
    for name in SPEC_FILES
    for case in json.loads((SPEC_DIR / f"{name}.json").read_text(encoding="utf-8"))["tests"]
]


def spec_render(case: dict) -> str:
    return render(
        case["template"], case["data"], partials=case.get("partials", {}), escape=True, strict=False
    )


def test_all_spec_files_are_present():
    assert len(CASES) == 136


@pytest.mark.parametrize("case", CASES)
def test_spec_case(case):
    assert spec_render(case) == case["expected"], case["desc"]


def test_spec_pass_count(capsys):
    failed = []
    for param in CASES:
        case = param.values[0]
        try:
            passed = spec_render(case) == case["expected"]
        except Exception:  # noqa: BLE001  (a crash counts as a failure)
            passed = False
        if not passed:
            failed.append(param.id)
    with capsys.disabled():
        print(f"\nMustache spec: {len(CASES) - len(failed)}/{len(CASES)} cases pass")
    assert failed == []
