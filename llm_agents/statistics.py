"""The statistics of evaluation runs and experiments (SPEC sections 17 and 21): pure functions, no Django.

- :func:`mean_ci95` is the 95% percentile bootstrap interval of a mean: ``resamples`` samples of the
  values drawn with replacement, the 2.5th and 97.5th percentiles of their means (interpolated between
  ranks, as ``statistics.quantiles(method="inclusive")`` does).
- :func:`paired_comparison` compares two paired samples (``a[i]`` and ``b[i]`` are one item scored
  twice): the paired bootstrap interval of the mean difference, and a two-sided paired sign-flip
  permutation test. Under the null hypothesis each difference is as likely to have either sign, so the
  p-value is the share of sign patterns whose mean difference is at least as far from 0 as the observed
  one. Up to :data:`EXACT_UP_TO` non-zero differences every one of the ``2**n`` patterns is counted
  (exact; a zero difference is the same under either sign and changes no pattern's share); beyond,
  ``resamples`` random patterns are drawn and ``p = (count + 1) / (resamples + 1)``, which is never 0.
  A reported p-value is never below 0.0001, its rounding step.

Every bootstrap function takes a ``seed``: the same inputs and seed give the same answer. Means,
intervals and p-values are rounded to 4 places.

Experiments compare independent groups with many members (at least ``min_samples`` per variant), from
each group's count, mean and standard deviation alone (which the database computes):

- :func:`normal_ci95` is the normal-approximation interval of a mean, ``mean ± 1.96 · sd / √n``;
- :func:`two_sample_comparison` is Welch's two-sample z-test: the difference of the means, its
  interval ``delta ± 1.96 · √(sd₁²/n₁ + sd₂²/n₂)``, and the two-sided p-value ``erfc(|z| / √2)`` of
  ``z = delta / √(sd₁²/n₁ + sd₂²/n₂)``.
"""

from __future__ import annotations

import itertools
import math
import random
import statistics
from collections.abc import Sequence
from typing import Any

RESAMPLES = 10_000
#: The 97.5th percentile of the standard normal distribution (1.95996…): 95% of it lies within ±Z95.
Z95 = statistics.NormalDist().inv_cdf(0.975)
#: Up to this many pairs the sign-flip test enumerates all 2**n sign patterns.
EXACT_UP_TO = 16
PLACES = 4
SMALLEST_P = 10**-PLACES


def mean_ci95(values: Sequence[float], seed: int | str, resamples: int = RESAMPLES) -> tuple[float, float]:
    """``(low, high)``: the 95% percentile bootstrap interval of the mean of ``values``.

    Raises ``ValueError`` for no values; one value (or values all equal) gives a zero-width interval."""
    values = [float(value) for value in values]
    if not values:
        raise ValueError("mean_ci95 needs at least one value.")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, not {resamples}.")
    if len(values) == 1 or min(values) == max(values):
        return round(values[0], PLACES), round(values[0], PLACES)
    rng = random.Random(seed)
    count = len(values)
    means = [math.fsum(rng.choices(values, k=count)) / count for _ in range(resamples)]
    if resamples == 1:
        return round(means[0], PLACES), round(means[0], PLACES)
    cuts = statistics.quantiles(means, n=40, method="inclusive")
    return round(cuts[0], PLACES), round(cuts[-1], PLACES)


def paired_comparison(
    a: Sequence[float], b: Sequence[float], seed: int | str, resamples: int = RESAMPLES
) -> dict[str, Any]:
    """Compare paired samples ``a`` and ``b`` (the same items, scored twice).

    Returns ``{n_paired, mean_a, mean_b, delta, ci95: [low, high], p_value, wins, losses, ties}``:
    ``delta`` is the mean of ``a - b``, ``ci95`` its paired bootstrap interval, ``p_value`` the two-sided
    sign-flip permutation test's (1.0 when every difference is 0); ``wins`` counts pairs where ``a`` is
    higher, ``losses`` where it is lower, ``ties`` the rest. Raises ``ValueError`` when the samples
    differ in length or are empty."""
    if len(a) != len(b):
        raise ValueError(f"Paired samples must have the same length, not {len(a)} and {len(b)}.")
    if not a:
        raise ValueError("paired_comparison needs at least one pair.")
    first = [float(value) for value in a]
    second = [float(value) for value in b]
    count = len(first)
    differences = [x - y for x, y in zip(first, second, strict=True)]
    return {
        "n_paired": count,
        "mean_a": round(math.fsum(first) / count, PLACES),
        "mean_b": round(math.fsum(second) / count, PLACES),
        "delta": round(math.fsum(differences) / count, PLACES),
        "ci95": list(mean_ci95(differences, seed, resamples)),
        "p_value": sign_flip_p_value(differences, seed, resamples),
        "wins": sum(1 for x, y in zip(first, second, strict=True) if x > y),
        "losses": sum(1 for x, y in zip(first, second, strict=True) if x < y),
        "ties": sum(1 for x, y in zip(first, second, strict=True) if x == y),
    }


def sign_flip_p_value(differences: Sequence[float], seed: int | str, resamples: int = RESAMPLES) -> float:
    """The two-sided p-value of the paired sign-flip permutation test of ``differences`` (their mean
    against 0): exact up to :data:`EXACT_UP_TO` differences, estimated from ``resamples`` random sign
    patterns beyond. 1.0 when every difference is 0."""
    differences = [float(value) for value in differences if value != 0]
    # A zero difference is the same under either sign: it changes no pattern's distance from 0.
    if not differences:
        return 1.0
    observed = abs(math.fsum(differences))
    # Sums of the same numbers added in another order may differ in the last bits.
    threshold = observed - 1e-9 * max(1.0, math.fsum(abs(value) for value in differences))
    if len(differences) <= EXACT_UP_TO:
        sums = [0.0]
        for value in differences:
            sums = [total + value for total in sums] + [total - value for total in sums]
        p_value = sum(1 for total in sums if abs(total) >= threshold) / len(sums)
    else:
        if resamples < 1:
            raise ValueError(f"resamples must be at least 1, not {resamples}.")
        rng = random.Random(f"{seed}:sign-flip")
        count = len(differences)
        total = math.fsum(differences)
        extreme = 0
        for _ in range(resamples):
            # Each bit of a random number flips one difference: the sum becomes total - 2 * flipped.
            flips = map(int, format(rng.getrandbits(count), f"0{count}b"))
            flipped = math.fsum(itertools.compress(differences, flips))
            if abs(total - 2 * flipped) >= threshold:
                extreme += 1
        p_value = (extreme + 1) / (resamples + 1)
    return max(round(p_value, PLACES), SMALLEST_P)


def rate(part: int, whole: int) -> float:
    """``part`` as a percentage of ``whole``, 0–100, rounded to 2 places like every rate (0 when
    ``whole`` is 0)."""
    return round(part * 100 / whole, 2) if whole else 0.0


def normal_ci95(count: int, mean: float, sd: float | None) -> tuple[float, float]:
    """``(low, high)``: the 95% normal-approximation interval of a mean of ``count`` values with
    sample standard deviation ``sd`` (a zero-width interval for one value). ``ValueError`` for none."""
    if count < 1:
        raise ValueError("normal_ci95 needs at least one value.")
    half = Z95 * (sd or 0.0) / math.sqrt(count) if count > 1 else 0.0
    return round(mean - half, PLACES), round(mean + half, PLACES)


def two_sample_comparison(
    control: tuple[int, float, float | None], variant: tuple[int, float, float | None]
) -> dict[str, Any]:
    """Compare two independent groups, each given as ``(count, mean, sample sd)``: Welch's z-test.

    Returns ``{delta, ci95: [low, high], p_value}``: ``delta`` is the variant's mean minus the
    control's, ``ci95`` its 95% interval, ``p_value`` two-sided (never below 0.0001; 1.0 when both
    groups have no spread and the same mean, 0.0001 when they have none and differ). Raises
    ``ValueError`` when a group has fewer than two values."""
    (n_a, mean_a, sd_a), (n_b, mean_b, sd_b) = control, variant
    if n_a < 2 or n_b < 2:
        raise ValueError(f"two_sample_comparison needs at least two values per group, not {n_a} and {n_b}.")
    delta = float(mean_b) - float(mean_a)
    error = math.sqrt((sd_a or 0.0) ** 2 / n_a + (sd_b or 0.0) ** 2 / n_b)
    if error == 0:
        p_value = 1.0 if delta == 0 else 0.0
        low = high = delta
    else:
        p_value = math.erfc(abs(delta / error) / math.sqrt(2))
        low, high = delta - Z95 * error, delta + Z95 * error
    return {
        "delta": round(delta, PLACES),
        "ci95": [round(low, PLACES), round(high, PLACES)],
        "p_value": max(round(p_value, PLACES), SMALLEST_P),
    }
