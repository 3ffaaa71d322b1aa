"""Latency buckets (SPEC section 20): every duration is within 1% of its bucket's value, and
percentiles read from bucket counts are within 1% of ``percentile_cont`` over the durations."""

from __future__ import annotations

import math
import random

import pytest

from llm_agents.latency import ALPHA, MAX_MS, bucket_of, bucket_value, buckets, percentiles


def exact_percentile(values: list[int], percent: float) -> float:
    """``percentile_cont``: linear interpolation between the two ranks around ``(n - 1) * p``."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * percent / 100
    below = math.floor(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)


def counts_of(values: list[int]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for value in values:
        counts[bucket_of(value)] = counts.get(bucket_of(value), 0) + 1
    return counts


def within(expected: float, got: float | None) -> bool:
    assert got is not None
    return abs(got - expected) <= ALPHA * expected + 1e-9


def test_every_duration_up_to_100k_ms_is_within_one_percent_of_its_bucket():
    for duration in range(100_001):
        index = bucket_of(duration)
        lower, upper = buckets()[index]
        assert lower <= duration <= upper
        assert abs(bucket_value(index) - duration) < ALPHA * duration or duration == bucket_value(index) == 0


def test_random_large_durations_are_within_one_percent_of_their_bucket():
    rng = random.Random(17)
    samples = [rng.randint(100_000, MAX_MS) for _ in range(20_000)] + [MAX_MS, MAX_MS - 1, 2**30]
    for duration in samples:
        value = bucket_value(bucket_of(duration))
        assert abs(value - duration) < ALPHA * duration, duration


def test_buckets_are_consecutive_whole_numbers_from_zero_to_the_maximum():
    laid_out = buckets()
    assert laid_out[0] == (0, 0)
    assert laid_out[-1][1] == MAX_MS
    for (_, upper), (lower, _) in zip(laid_out, laid_out[1:], strict=False):
        assert lower == upper + 1
    # Few enough buckets for a smallint column and a small table.
    assert len(laid_out) < 32_767
    assert bucket_of(0) == 0 and bucket_of(1) == 1 and bucket_of(MAX_MS) == len(laid_out) - 1


@pytest.mark.parametrize("duration", [-1, MAX_MS + 1, -(10**9)])
def test_durations_out_of_range_are_refused(duration):
    with pytest.raises(ValueError):
        bucket_of(duration)


@pytest.mark.parametrize(
    "values",
    [
        [100, 200, 300, 400, 500],
        [850, 850, 850, 120, 5000, 33, 1_200_000],
        list(range(1, 101)),
        [0, 0, 0, 10, 20],
        [7, 7_000, 7_000_000, 700_000_000],
    ],
)
@pytest.mark.parametrize("percent", [0, 1, 25, 50, 75, 90, 95, 99, 99.9, 100])
def test_percentiles_of_known_lists_are_within_one_percent_of_percentile_cont(values, percent):
    (got,) = percentiles(counts_of(values), [percent])
    assert within(exact_percentile(values, percent), got)


def test_percentiles_of_random_samples_are_within_one_percent_of_percentile_cont():
    rng = random.Random(20)
    for _ in range(200):
        size = rng.randint(1, 400)
        scale = rng.choice([10, 1_000, 60_000, 10_000_000, MAX_MS])
        values = [rng.randint(0, scale) for _ in range(size)]
        percents = [50, 90, 95, 99, rng.uniform(0, 100)]
        for percent, got in zip(percents, percentiles(counts_of(values), percents), strict=True):
            assert within(exact_percentile(values, percent), got), (values, percent)


def test_percentiles_accept_pairs_in_any_order_and_skip_empty_buckets():
    values = [100, 300, 300, 900]
    pairs = sorted(counts_of(values).items(), reverse=True) + [(bucket_of(5000), 0)]
    assert percentiles(pairs, [50, 100]) == percentiles(counts_of(values), [50, 100])


def test_percentiles_of_nothing_are_none():
    assert percentiles({}, [50, 95, 99]) == [None, None, None]
    assert percentiles({bucket_of(100): 0}, [50]) == [None]
    assert percentiles([], []) == []


def test_one_value_is_every_percentile():
    for value in (1, 850, MAX_MS):
        answers = percentiles({bucket_of(value): 1}, [0, 50, 99, 100])
        assert all(within(value, answer) for answer in answers)
    assert percentiles({bucket_of(500): 12}, [0, 50, 100]) == [bucket_value(bucket_of(500))] * 3


def test_zeros_are_exactly_zero():
    assert percentiles({0: 5}, [0, 50, 100]) == [0.0, 0.0, 0.0]
    (half,) = percentiles(counts_of([0, 1000]), [50])
    assert within(500, half)
