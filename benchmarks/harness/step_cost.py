"""What a decoding run's time is made of, fitted to engine runs measured side by side.

A run of one batch size spends, to a good approximation (within 5 % over the batch-1 runs
of ``full.json``, 9 % for BFCL's oracle),

    seconds = prefill + step * steps / B + draft_token * drafted

where ``steps`` counts every position the requests were verified at (output tokens minus
accepted draft tokens, the prefill's first token included) and ``drafted`` the draft tokens
vLLM verified.  ``prefill`` is the same for every method on the same prompts, so it is the
part no drafter can cut.  Fitted by least squares over the methods of one task and batch size
(plain decoding, ``ngram``, ``suffix``, TASC-spec, the oracle: their step and draft counts
differ, which separates the three terms), it turns a replay's step and draft counts into the
engine's speed-up, where a fixed ``overhead + verified tokens`` step cost only ranks settings.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class StepCost:
    prefill: float  # seconds: prompt processing, the same for every method
    step: float  # seconds per engine step of B rows (their own verified tokens included)
    draft_token: float  # seconds per drafted token verified
    batch_size: int
    runs: int  # runs it was fitted to
    worst_error: float  # largest relative error of its fit over those runs

    def seconds(self, steps: float, drafted: float) -> float:
        return self.prefill + self.step * steps / self.batch_size + self.draft_token * drafted

    def speedup(self, tokens: int, steps: int, drafted: int) -> float:
        """Plain decoding's modelled time for ``tokens`` output tokens over a run's."""
        return self.seconds(tokens, 0) / self.seconds(steps, drafted)

    def to_dict(self) -> dict:
        return asdict(self)


def run_counts(run: dict) -> tuple[int, int]:
    """(steps, drafted tokens) of one measured run (``benchmarks.run``'s result rows)."""
    m = run.get("spec_metrics") or {}
    return run["output_tokens"] - int(m.get("num_accepted_tokens", 0)), int(m.get("num_draft_tokens", 0))


def fit_step_cost(runs: list[dict]) -> StepCost:
    """Fit :class:`StepCost` to runs of one task and one batch size.  Needs plain decoding and
    at least two speculative runs with different draft counts; a fit that makes a term
    negative is refused (the runs do not separate the three terms)."""
    sizes = {int(r["batch_size"]) for r in runs}
    if len(sizes) != 1:
        raise ValueError(f"runs of one batch size needed, got {sorted(sizes)}")
    (b,) = sizes
    counts = [run_counts(r) for r in runs]
    if len(runs) < 3 or not any(d == 0 for _, d in counts) or len({d for _, d in counts if d}) < 2:
        raise ValueError(f"need plain decoding and two speculative runs with different draft counts "
                         f"({len(runs)} run(s) given)")
    x = np.array([[1.0, s / b, float(d)] for s, d in counts])
    y = np.array([float(r["seconds"]) for r in runs])
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    if (coef < 0).any():
        raise ValueError(f"the fit gives a negative term ({', '.join(f'{c:.4g}' for c in coef)} s): "
                         "these runs do not separate prefill, steps and drafted tokens")
    worst = float(np.max(np.abs(x @ coef - y) / y))
    return StepCost(float(coef[0]), float(coef[1]), float(coef[2]), b, len(runs), worst)


def perfect_drafts(hits: list, k: int) -> dict:
    """Counts of drafts that always hold exactly the model's next tokens, as long as ``hits``
    allows and at most ``k`` of them, stopping right before the first position it does not.
    ``hits[i][j]``: whether a drafter could have the token at position ``j + 1`` of answer
    ``i`` (the first comes from prefill).  All true: the oracle drafter."""
    steps = drafted = tokens = 0
    for h in hits:
        n = len(h)
        tokens += n + 1
        steps += 1  # prefill yields the first token
        i = 0
        while i < n:
            r = 0
            while r < k and i + r < n and h[i + r]:
                r += 1
            drafted += r
            i += r + 1  # the accepted draft, then the model's own token
            steps += 1
    return {"tokens": tokens, "steps": steps, "drafted": drafted, "accepted": drafted}
