"""The bootstrap intervals and the paired sign-flip test against cases worked out by hand or by theory."""

from __future__ import annotations

import itertools
import math
import random
import statistics

import pytest

from llm_agents.statistics import EXACT_UP_TO, mean_ci95, paired_comparison, sign_flip_p_value


def brute_force_p_value(differences: list[float]) -> float:
    """The exact two-sided sign-flip p-value, pattern by pattern (independent of the module's way)."""
    observed = abs(sum(differences))
    patterns = list(itertools.product((1, -1), repeat=len(differences)))
    extreme = sum(
        1
        for signs in patterns
        if abs(sum(s * d for s, d in zip(signs, differences, strict=True))) >= observed - 1e-9
    )
    return extreme / len(patterns)


# -- mean_ci95 --------------------------------------------------------------------------------------


def test_constant_values_give_a_zero_width_interval():
    assert mean_ci95([0.7] * 25, seed=1) == (0.7, 0.7)
    assert mean_ci95([1, 1, 1], seed="run") == (1.0, 1.0)


def test_one_value_is_its_own_interval_and_no_value_is_an_error():
    assert mean_ci95([0.123456], seed=3) == (0.1235, 0.1235)
    with pytest.raises(ValueError, match="at least one value"):
        mean_ci95([], seed=3)


def test_the_bootstrap_interval_agrees_with_the_normal_theory_interval():
    rng = random.Random(7)
    values = [rng.gauss(10, 2) for _ in range(400)]
    mean = statistics.fmean(values)
    half_width = 1.96 * statistics.pstdev(values) / math.sqrt(len(values))

    low, high = mean_ci95(values, seed="normal")

    assert low == pytest.approx(mean - half_width, abs=0.1 * half_width)
    assert high == pytest.approx(mean + half_width, abs=0.1 * half_width)
    assert (high - low) == pytest.approx(2 * half_width, rel=0.1)


def test_a_skewed_sample_gets_an_interval_inside_its_range_around_its_mean():
    values = [0.0] * 18 + [1.0] * 2  # a pass rate of 10%
    low, high = mean_ci95(values, seed=11)
    assert 0.0 <= low < 0.1 < high <= 1.0
    # Two successes in 20: the resampled means are multiples of 1/20.
    assert round(low * 20, 6).is_integer() and round(high * 20, 6).is_integer()


def test_the_same_seed_gives_the_same_interval_and_another_seed_may_not():
    rng = random.Random(5)
    values = [rng.random() for _ in range(60)]
    assert mean_ci95(values, seed="a") == mean_ci95(values, seed="a")
    assert mean_ci95(values, seed=42) == mean_ci95(list(values), seed=42)
    assert mean_ci95(values, seed="a") != mean_ci95(values, seed="b")


def test_the_interval_is_rounded_to_four_places():
    rng = random.Random(9)
    low, high = mean_ci95([rng.random() for _ in range(30)], seed=1)
    assert round(low, 4) == low and round(high, 4) == high


# -- paired_comparison --------------------------------------------------------------------------------


def test_identical_samples_are_not_different():
    scores = [1.0, 0.0, 0.5, 0.75, 1.0, 0.25] * 5
    result = paired_comparison(scores, list(scores), seed="x")
    assert result == {
        "n_paired": 30,
        "mean_a": 0.5833,
        "mean_b": 0.5833,
        "delta": 0.0,
        "ci95": [0.0, 0.0],
        "p_value": 1.0,
        "wins": 0,
        "losses": 0,
        "ties": 30,
    }


def test_a_large_known_difference_is_significant():
    rng = random.Random(1)
    a = [min(1.0, max(0.0, rng.gauss(0.8, 0.1))) for _ in range(40)]
    b = [min(1.0, max(0.0, value - 0.3 + rng.gauss(0, 0.05))) for value in a]

    result = paired_comparison(a, b, seed="known")

    assert result["n_paired"] == 40
    assert result["delta"] == pytest.approx(0.3, abs=0.03)
    # Each of the three is rounded on its own: they agree to the last place.
    assert result["delta"] == pytest.approx(result["mean_a"] - result["mean_b"], abs=0.00015)
    low, high = result["ci95"]
    assert 0 < low < result["delta"] < high
    assert result["p_value"] < 0.05
    assert result["wins"] + result["losses"] + result["ties"] == 40
    assert result["wins"] >= 38


def test_the_direction_is_a_minus_b():
    result = paired_comparison([0.0] * 20, [1.0] * 20, seed=1)
    assert (result["delta"], result["ci95"], result["wins"], result["losses"]) == (-1.0, [-1.0, -1.0], 0, 20)
    # Every one of 20 pairs the same way: the Monte Carlo estimate is its floor, 1 / (resamples + 1).
    assert result["p_value"] == round(1 / 10_001, 4) == 0.0001


def test_exact_p_value_of_five_wins_is_two_in_thirty_two():
    # Of the 32 sign patterns of [1, 1, 1, 1, 1], only all-plus and all-minus reach |mean| = 1.
    result = paired_comparison([1, 1, 1, 1, 1], [0, 0, 0, 0, 0], seed=0)
    assert result["p_value"] == 0.0625 == 2 / 32
    assert (result["wins"], result["losses"], result["ties"]) == (5, 0, 0)


def test_exact_p_value_of_a_mixed_small_case_worked_by_hand():
    # Differences [1, -1, 2] (sum 2); the eight sign patterns sum to 4, 0, 2, -2, 2, -2, 0, -4:
    # six of them are at least 2 from 0.
    result = paired_comparison([1, 0, 3, 0.5], [0, 1, 1, 0.5], seed=0)
    assert result["p_value"] == 0.75
    assert (result["wins"], result["losses"], result["ties"]) == (2, 1, 1)
    assert result["delta"] == 0.5


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_exact_enumeration_matches_brute_force(seed):
    rng = random.Random(seed)
    differences = [round(rng.uniform(-0.4, 0.8), 2) for _ in range(12)]
    assert sign_flip_p_value(differences, seed=0) == round(brute_force_p_value(differences), 4)


def test_the_monte_carlo_estimate_is_close_to_the_exact_answer():
    rng = random.Random(7)
    differences = [round(rng.uniform(-0.4, 0.6), 2) for _ in range(EXACT_UP_TO + 1)]
    exact = brute_force_p_value(differences)
    assert 0.05 < exact < 0.95  # a case where the estimate has room to be wrong

    estimate = sign_flip_p_value(differences, seed="mc")

    # 10,000 patterns: the estimate's standard error is at most 0.005.
    assert estimate == pytest.approx(exact, abs=0.02)


def test_samples_with_no_difference_in_mean_are_not_significant():
    rng = random.Random(8)
    a = [rng.random() for _ in range(50)]
    b = list(a)
    rng.shuffle(b)  # the same values, paired at random
    result = paired_comparison(a, b, seed="null")
    assert result["delta"] == 0.0
    assert result["p_value"] > 0.5
    assert result["ci95"][0] < 0 < result["ci95"][1]


def test_the_same_seed_gives_the_same_comparison():
    rng = random.Random(2)
    a = [rng.random() for _ in range(30)]
    b = [rng.random() for _ in range(30)]
    assert paired_comparison(a, b, seed="s") == paired_comparison(a, b, seed="s")


def test_the_p_value_is_rounded_and_never_zero():
    # Sixteen pairs all one way: exactly 2 / 65536, which rounds to 0; reported as 0.0001.
    assert paired_comparison([1] * 16, [0] * 16, seed=0)["p_value"] == 0.0001
    assert paired_comparison([1] * 3, [0] * 3, seed=0)["p_value"] == 0.25


def test_samples_of_different_lengths_or_none_are_errors():
    with pytest.raises(ValueError, match="same length"):
        paired_comparison([1, 2], [1], seed=0)
    with pytest.raises(ValueError, match="at least one pair"):
        paired_comparison([], [], seed=0)
