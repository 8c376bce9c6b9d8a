"""The benchmarks' prompt-by-prompt quality comparison (benchmarks.harness.paired)."""

import pytest

from benchmarks.harness.paired import describe, paired_difference, sign_test


def test_sign_test_gives_the_exact_binomial_tail_both_ways():
    assert sign_test(7, 3) == pytest.approx(2 * (1 + 10 + 45 + 120) / 2 ** 10)  # P(X <= 3 | n=10), doubled
    assert sign_test(3, 7) == sign_test(7, 3)
    assert sign_test(10, 0) == pytest.approx(2 / 2 ** 10)
    assert sign_test(5, 5) == 1.0 and sign_test(0, 0) == 1.0  # capped, and no discordant prompt says nothing


def test_paired_difference_counts_the_prompts_each_side_won_and_bounds_the_difference():
    first = [1, 0, 1, 1, 0, 1, 1, 1]
    second = [1, 1, 0, 0, 0, 1, 1, 1]
    d = paired_difference(first, second)
    assert d["prompts"] == 8 and d["won"] == 1 and d["lost"] == 2
    assert d["difference_points"] == pytest.approx(-12.5)
    low, high = d["interval_points"]
    assert low < -12.5 < high and low >= -100 and high <= 100
    assert d["p_value"] == pytest.approx(sign_test(1, 2))
    assert paired_difference(first, second) == d  # seeded: the same report every time
    assert describe(d).startswith("-12.5 points on 8 prompts (1 won, 2 lost; sign test p = 1.00; 95 % interval ")
    assert "sign test p < 0.01" in describe(paired_difference([0] * 10, [1] * 10))
    same = paired_difference(first, first)
    assert same["interval_points"] == [0.0, 0.0] and same["p_value"] == 1.0


def test_paired_difference_refuses_lists_that_do_not_pair():
    with pytest.raises(ValueError, match="equal, non-empty"):
        paired_difference([1, 0], [1])
    with pytest.raises(ValueError, match="equal, non-empty"):
        paired_difference([], [])
