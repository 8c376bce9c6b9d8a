"""The engine's step time, measured by the proposer from the time between its calls.

vLLM calls ``propose`` once per step, right after the step's forward pass; the time from the
start of one call to the start of the next is the step that verified the drafts the first call
made.  The model of a step that verifies ``N`` tokens for ``rows`` requests (one token per row
plus the drafts) is

    time = fixed + per_row * rows + per_token * max(0, N - knee)

(the knee: how many tokens the kernels verify at the price of one; on a CPU a few, on a GPU
hundreds).  It is fitted by exponentially weighted least squares for each knee of
:data:`KNEES`, and the knee that fits best is used.  Until :data:`MIN_SAMPLES` steps are
measured, and whenever the fit is degenerate (no variation in the drafts yet), the prior
holds: a fixed part worth ``PRIOR_FIXED_TOKENS`` verified tokens, ``PRIOR_PER_ROW`` of a
token per row and a knee of ``PRIOR_KNEE``.  Only the ratios matter to the drafting policy,
so the prior needs no unit.

A fit is bounded by what a token can cost: the tokens up to the knee are verified within the
flat part of a step, so ``per_token * knee`` is at most ``fixed + per_row * rows`` (at the
mean row count).  Where the least-squares fit breaks the bound (few steps past a knee, one of
them slow) the fit is redone on the bound.

Only steps that decode are timed: a step in which a request joined also prefilled its prompt,
and is left out.  Which rows are requests that joined is read from the rows themselves
(:class:`StepRows`): vLLM gives no request ids, and it moves rows when a request leaves.  The
prompt's length does not tell what its prefill cost, since vLLM's prefix cache skips the part
an earlier request shared: priced by their prompt tokens, such steps made a batch-16 step
of 16 tokens look three times its measured 37 ms (docs/design.md).  A step far slower than the
model predicts (the server was idle) is left out, and so is a step in which a request was
still prefilling in chunks.  The setting ``step_cost_model`` replaces the measurement by a
fixed model.
"""

from __future__ import annotations

import numpy as np

from tasc_vllm.errors import TascError

KNEES = (1, 2, 4, 8, 16, 32, 64, 128, 256)
# a fit of three unknowns and a knee from a few dozen noisy steps priced a token up to 1.7 times its cost at
# batch 16 (docs/design.md), where the prior's shape is close: the prior holds until this many are timed
MIN_SAMPLES = 64
FORGET = 0.995  # each step's weight decays by this per later step (a memory of a few hundred steps)
OUTLIER = 3.0  # a step slower than this multiple of the model's time is not used
PRIOR_FIXED_TOKENS = 16.0
# a row costs more than the token it verifies (its sampling, its cache's attention, the
# scheduler's work for it): with none, a batch-16 step's fixed part was priced at 16 verified
# tokens where this CPU's is 25, a drafted token looked a third dearer than it is, and short
# batch-16 runs, which end before 64 steps are timed, drafted too little (docs/design.md)
PRIOR_PER_ROW = 0.5
PRIOR_KNEE = 4.0
RIDGE = 1e-9
# a firmer pull of per_row to 0: while every step has the same rows (batch 1), the fixed part
# and per_row cannot be told apart, and the fixed part takes all of it
ROW_RIDGE = 1e-4


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


def _last_tokens(token_ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Each row's last token when it was ``lengths`` long."""
    return token_ids[np.arange(lengths.shape[0]), np.maximum(lengths, 1) - 1]


class StepRows:
    """What each row held at a ``propose`` call, to tell at the next call which rows are the
    same requests: a row that gained ``g`` tokens was, at the call before, ``g`` tokens shorter
    and ended with the token now at that place.  A row matching no row of the call before is
    a request that joined, whose prompt the step prefilled.  A request that left is simply
    absent (vLLM fills its place with the batch's last row)."""

    def __init__(self, lengths: np.ndarray, token_ids: np.ndarray, drafted: list[int]):
        self.rows: dict[tuple[int, int], list[int]] = {}
        for n, t, d in zip(lengths.tolist(), _last_tokens(token_ids, lengths).tolist(), drafted):
            self.rows.setdefault((n, t), []).append(d)

    def step(self, gained: list[int], lengths: np.ndarray, token_ids: np.ndarray) -> tuple[int, int, int] | None:
        """``(rows, tokens verified, requests that joined)`` of the step since that call, or
        None when a row gained nothing (a prompt still prefilling in chunks, or a discarded row)."""
        if not gained or min(gained) <= 0:
            return None
        before = lengths - np.asarray(gained, dtype=lengths.dtype)
        unmatched = {key: list(ds) for key, ds in self.rows.items()}
        tokens = joined = 0
        for n, t in zip(before.tolist(), _last_tokens(token_ids, before).tolist()):
            ds = unmatched.get((n, t))
            if ds:
                tokens += 1 + ds.pop()  # the token sampled at that call and the drafts made for it
            else:
                tokens += 1
                joined += 1  # a request that joined: its prompt was prefilled in this step
        return len(gained), tokens, joined


class StepTimer:
    """Fits the step-time model from ``record`` calls; ``cost()`` gives the model in use."""

    def __init__(self, fixed: np.ndarray | None = None):
        self.fixed = fixed
        self.samples = 0
        k = len(KNEES)
        self._xtx = np.zeros((k, 3, 3))
        self._xty = np.zeros((k, 3))
        self._yty = np.zeros(k)
        prior = np.array([PRIOR_FIXED_TOKENS, PRIOR_PER_ROW, 1.0, PRIOR_KNEE])
        self._cost = fixed.copy() if fixed is not None else prior
        self.measured = False

    def cost(self) -> np.ndarray:
        """(fixed, per_row, per_token, knee)."""
        return self._cost

    def predict(self, rows: int, tokens: int) -> float:
        c = self._cost
        return float(c[0] + c[1] * rows + c[2] * max(0.0, tokens - c[3]))

    def record(self, rows: int, tokens: int, seconds: float) -> None:
        """One decoding step of ``rows`` requests that verified ``tokens`` tokens took ``seconds``."""
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
        rows = self._xtx[0, 0, 1] / self._xtx[0, 0, 0]  # the weighted mean row count
        for i, knee in enumerate(KNEES):
            theta = self._solve(self._xtx[i], self._xty[i])
            if theta is not None and theta[2] * knee > theta[0] + theta[1] * rows:
                # a token past the knee dearer than the flat part allows: fit on the bound,
                # fixed = per_token * knee - per_row * rows
                t = np.array([[knee, -rows], [0.0, 1.0], [1.0, 0.0]])
                phi = self._solve(t.T @ self._xtx[i] @ t, t.T @ self._xty[i])
                theta = None if phi is None else t @ phi
            if theta is None or theta[2] <= 0 or theta[0] + theta[1] <= 0:
                continue  # no cost per token seen yet, or no fixed part: not a usable model
            sse = self._yty[i] - 2 * theta @ self._xty[i] + theta @ self._xtx[i] @ theta
            if best is None or sse < best[0] - 1e-15:
                best = (sse, theta, knee)
        if best is None:
            return
        _, theta, knee = best
        self._cost = np.array([max(theta[0], 0.0), max(theta[1], 0.0), theta[2], float(knee)])
        if self._cost[0] + self._cost[1] <= 0:
            self._cost[0] = theta[2]
        self.measured = True

    @staticmethod
    def _solve(a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
        """Ridge least squares; the unknown at index 1 is the cost per row in both of the fit's
        forms, and gets the firmer :data:`ROW_RIDGE`."""
        ridge = np.full(a.shape[0], RIDGE)
        ridge[1] = ROW_RIDGE
        try:
            return np.linalg.solve(a + np.diag(ridge), b)
        except np.linalg.LinAlgError:
            return None

    def summary(self) -> str:
        c = self._cost
        source = "given" if self.fixed is not None else ("measured" if self.measured else "prior")
        return (f"step time ({source}, {self.samples} steps): {c[0]:.4g} + {c[1]:.4g}/row + "
                f"{c[2]:.4g}/token past {c[3]:g} tokens")
