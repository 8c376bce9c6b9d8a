"""The engine's step time, measured by the proposer from the time between its calls.

vLLM calls ``propose`` once per step, right after the step's forward pass; the time from the
end of one call to the start of the next is the step that verified the drafts the first call
made.  The model of a step that verifies ``N`` tokens for ``rows`` requests (one token per row
plus the drafts) is

    time = fixed + per_row * rows + per_token * max(0, N - knee)

(the knee: how many tokens the kernels verify at the price of one; on a CPU a few, on a GPU
hundreds).  It is fitted by exponentially weighted least squares for each knee of
:data:`KNEES`, and the knee that fits best is used.  Until :data:`MIN_SAMPLES` steps are
measured, and whenever the fit is degenerate (no variation in the drafts yet), the prior
holds: a fixed part worth ``PRIOR_FIXED_TOKENS`` verified tokens and a knee of
``PRIOR_KNEE``.  Only the ratios matter to the drafting policy, so the prior needs no unit.
A step that prefilled a request that joined is left out (:func:`decoded_only`: the model is of
decode steps, and on a CPU a prompt costs as much as many drafts), and so is a step far slower
than the model predicts (the server was idle).  The setting ``step_cost_model`` replaces the
measurement by a fixed model.
"""

from __future__ import annotations

import numpy as np

from tasc_vllm.errors import TascError

KNEES = (1, 2, 4, 8, 16, 32, 64, 128, 256)
MIN_SAMPLES = 24
FORGET = 0.995  # each step's weight decays by this per later step (a memory of a few hundred steps)
OUTLIER = 3.0  # a step slower than this multiple of the model's time is not used
PRIOR_FIXED_TOKENS = 16.0
PRIOR_KNEE = 4.0
RIDGE = 1e-9


def parse_cost_model(text: str) -> np.ndarray | None:
    """``"FIXED,PER_ROW,PER_TOKEN,KNEE"`` as the cost vector, or None for ``""`` (measure)."""
    if not text:
        return None
    try:
        parts = [float(x) for x in text.split(",")]
    except ValueError:
        parts = []
    if len(parts) != 4 or min(parts) < 0 or parts[0] + parts[2] <= 0:
        raise TascError(f"invalid TASC setting: step_cost_model must be \"FIXED,PER_ROW,PER_TOKEN,KNEE\", four "
                        f"numbers >= 0 with FIXED + PER_TOKEN > 0 (got {text!r})")
    return np.array(parts, dtype=np.float64)


def worth_drafting(cost: np.ndarray, rows: int) -> float:
    """The chance of acceptance below which no draft token can pay in a step of ``rows``
    requests: a token past the knee costs ``per_token`` and must yield at least the step's
    rate without drafts, ``rows / time(rows)`` (the best rate is never lower).  0 while the
    rows' own tokens leave room under the knee (a drafted token there may cost nothing)."""
    fixed, per_row, per_token, knee = cost
    if rows < knee:
        return 0.0
    return float(per_token * rows / (fixed + per_row * rows + per_token * (rows - knee)))


def decoded_only(gained: list[int], lengths: np.ndarray, before: np.ndarray | None) -> bool:
    """Whether a step only decoded the rows of the step before it: the same rows, each longer
    by the tokens it gained (``lengths`` now, ``before`` at the call before).  A request that
    joined starts its row afresh, at its prompt's length, and its prefill ran in the step."""
    return (before is not None and len(gained) == before.shape[0] and min(gained, default=0) > 0
            and np.array_equal(lengths - np.asarray(gained, dtype=lengths.dtype), before))


class StepTimer:
    """Fits the step-time model from ``record`` calls; ``cost()`` gives the model in use."""

    def __init__(self, fixed: np.ndarray | None = None):
        self.fixed = fixed
        self.samples = 0
        k = len(KNEES)
        self._xtx = np.zeros((k, 3, 3))
        self._xty = np.zeros((k, 3))
        self._yty = np.zeros(k)
        self._cost = fixed.copy() if fixed is not None else np.array([PRIOR_FIXED_TOKENS, 0.0, 1.0, PRIOR_KNEE])
        self.measured = False

    def cost(self) -> np.ndarray:
        """(fixed, per_row, per_token, knee)."""
        return self._cost

    def predict(self, rows: int, tokens: int) -> float:
        c = self._cost
        return float(c[0] + c[1] * rows + c[2] * max(0.0, tokens - c[3]))

    def record(self, rows: int, tokens: int, seconds: float) -> None:
        """One step of ``rows`` requests that verified ``tokens`` tokens took ``seconds``."""
        if self.fixed is not None or rows <= 0 or seconds <= 0.0:
            return
        if self.measured and seconds > OUTLIER * self.predict(rows, tokens):
            return
        x = np.array([[1.0, rows, max(0.0, tokens - k)] for k in KNEES])
        self._xtx *= FORGET
        self._xty *= FORGET
        self._yty *= FORGET
        self._xtx += x[:, :, None] * x[:, None, :]
        self._xty += x * seconds
        self._yty += seconds * seconds
        self.samples += 1
        if self.samples >= MIN_SAMPLES:
            self._refit()

    def _refit(self) -> None:
        best = None
        for i, knee in enumerate(KNEES):
            a = self._xtx[i] + RIDGE * np.eye(3)
            try:
                theta = np.linalg.solve(a, self._xty[i])
            except np.linalg.LinAlgError:
                continue
            sse = self._yty[i] - 2 * theta @ self._xty[i] + theta @ self._xtx[i] @ theta
            if theta[2] <= 0 or theta[0] + theta[1] <= 0:
                continue  # no cost per token seen yet, or no fixed part: not a usable model
            if best is None or sse < best[0] - 1e-15:
                best = (sse, theta, knee)
        if best is None:
            return
        _, theta, knee = best
        self._cost = np.array([max(theta[0], 0.0), max(theta[1], 0.0), theta[2], float(knee)])
        if self._cost[0] + self._cost[1] <= 0:
            self._cost[0] = theta[2]
        self.measured = True

    def summary(self) -> str:
        c = self._cost
        source = "given" if self.fixed is not None else ("measured" if self.measured else "prior")
        return (f"step time ({source}, {self.samples} steps): {c[0]:.4g} + {c[1]:.4g}/row + "
                f"{c[2]:.4g}/token past {c[3]:g} tokens")
