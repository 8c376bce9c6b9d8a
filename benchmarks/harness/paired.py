"""Whether two models' task scores on the same prompts differ by more than the prompts can
tell: the benchmarks' quality comparison (TASC-ft against its ``--no-enrich`` fine-tune).

A test split of 64 or 137 prompts moves by 1.6 or 0.7 points per prompt, and two fine-tunes
differ on many prompts both ways, so a score difference alone does not say whether one model
is worse.  :func:`paired_difference` compares the two models prompt by prompt: the prompts
each one got right and the other did not, the exact two-sided sign test on them (McNemar's
exact test for right/wrong scores), and a paired bootstrap interval of the difference.
Standard library and numpy only: the project does not depend on scipy.
"""

from __future__ import annotations

from math import comb
from typing import Sequence

import numpy as np

RESAMPLES = 10_000


def sign_test(won: int, lost: int) -> float:
    """Exact two-sided p-value of ``won`` against ``lost`` when each is equally likely."""
    n = won + lost
    if n == 0:
        return 1.0
    tail = sum(comb(n, i) for i in range(min(won, lost) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def paired_difference(first: Sequence[float], second: Sequence[float], *, seed: int = 0) -> dict:
    """``second``'s mean score minus ``first``'s, in points (x100), with the prompts ``second``
    won and lost, the sign test's p-value, and a 95 % paired bootstrap interval."""
    a = np.asarray(first, dtype=np.float64)
    b = np.asarray(second, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"paired scores need two equal, non-empty lists (got {a.size} and {b.size})")
    diff = b - a
    won, lost = int((diff > 0).sum()), int((diff < 0).sum())
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, diff.size, size=(RESAMPLES, diff.size))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return {"prompts": int(diff.size), "difference_points": 100 * float(diff.mean()), "won": won, "lost": lost,
            "p_value": sign_test(won, lost), "interval_points": [100 * float(low), 100 * float(high)]}


def describe(d: dict) -> str:
    """One sentence for a report: the difference, the prompts behind it, and what it can rule out."""
    low, high = d["interval_points"]
    p = f"p = {d['p_value']:.2f}" if d["p_value"] >= 0.01 else "p < 0.01"
    return (f"{d['difference_points']:+.1f} points on {d['prompts']} prompts ({d['won']} won, {d['lost']} lost; "
            f"sign test {p}; 95 % interval {low:+.1f} to {high:+.1f} points)")
