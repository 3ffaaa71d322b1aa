"""Latency histograms with a bounded relative error: the buckets the rollups count durations in.

A duration (whole milliseconds) falls in exactly one bucket. Bucket 0 holds 0 ms; every other bucket
covers the whole numbers ``lower..upper`` with ``upper < lower * GAMMA``, ``GAMMA = (1 + ALPHA) /
(1 - ALPHA)``, so the bucket's value ``2 * lower * upper / (lower + upper)`` is within ``ALPHA`` (1%)
of every duration in it — the DDSketch mapping, laid out on whole numbers. The buckets are built once,
here, and stored in a table by the migration that adds the rollups, so PostgreSQL and SQLite put a
duration in the same bucket as Python does (no floating-point logarithm in SQL).

A percentile read from bucket counts interpolates between the values of the two ranks around it,
as ``percentile_cont`` does between the rows themselves, so it is within ``ALPHA`` of the exact answer.
"""

from __future__ import annotations

import bisect
import functools
import math
from collections.abc import Iterable, Mapping, Sequence

ALPHA = 0.01
GAMMA = (1 + ALPHA) / (1 - ALPHA)  # 101 / 99
#: The largest duration a bucket is laid out for: a PositiveIntegerField's maximum.
MAX_MS = 2_147_483_647


@functools.cache
def buckets() -> tuple[tuple[int, int], ...]:
    """``(lower, upper)`` of every bucket, by index: ``(0, 0)`` first, then consecutive ranges of
    whole milliseconds up to :data:`MAX_MS`."""
    laid_out = [(0, 0)]
    lower = 1
    while lower <= MAX_MS:
        # The largest whole number with upper / lower < GAMMA, in exact integer arithmetic.
        upper = min(max(lower, (lower * 101 - 1) // 99), MAX_MS)
        laid_out.append((lower, upper))
        lower = upper + 1
    return tuple(laid_out)


@functools.cache
def _uppers() -> list[int]:
    return [upper for _, upper in buckets()]


def bucket_of(duration_ms: int) -> int:
    """The index of the bucket ``duration_ms`` falls in."""
    if duration_ms < 0 or duration_ms > MAX_MS:
        raise ValueError(f"duration_ms must be from 0 to {MAX_MS}, not {duration_ms!r}")
    return bisect.bisect_left(_uppers(), duration_ms)


def bucket_value(index: int) -> float:
    """The value that stands for every duration of bucket ``index`` (within ALPHA of each)."""
    lower, upper = buckets()[index]
    return 0.0 if upper == 0 else 2 * lower * upper / (lower + upper)


def percentiles(
    counts: Mapping[int, int] | Iterable[tuple[int, int]], percents: Sequence[float]
) -> list[float | None]:
    """Continuous percentiles (as ``percentile_cont``) of the durations counted per bucket index in
    ``counts``; None for each when nothing is counted."""
    pairs = sorted(counts.items() if isinstance(counts, Mapping) else counts)
    indexes = [index for index, n in pairs if n > 0]
    totals = [n for _, n in pairs if n > 0]
    total = sum(totals)
    if not total:
        return [None for _ in percents]
    cumulative = []
    running = 0
    for n in totals:
        running += n
        cumulative.append(running)

    def value_at(rank: int) -> float:  # rank from 0
        return bucket_value(indexes[bisect.bisect_right(cumulative, rank)])

    answers: list[float | None] = []
    for percent in percents:
        position = (total - 1) * percent / 100
        below = math.floor(position)
        fraction = position - below
        low = value_at(below)
        answers.append(low if fraction == 0 else low + (value_at(min(below + 1, total - 1)) - low) * fraction)
    return answers
