"""The engine's step time, measured by the proposer from the time between its calls.

vLLM calls ``propose`` once per step, right after the step's forward pass; the time from the
start of one call to the start of the next is the step that verified the drafts the first call
made.  The model of a step that verifies ``N`` tokens for ``rows`` requests (one token per row
plus the drafts) while prefilling ``P`` prompt tokens of requests that joined is

    time = fixed + per_row * rows + per_token * max(0, N - knee) + per_prompt_token * P

(the knee: how many tokens the kernels verify at the price of one; on a CPU a few, on a GPU
hundreds).  It is fitted by exponentially weighted least squares for each knee of
:data:`KNEES`, and the knee that fits best is used.  Each batch-size bucket (1, 2-3, 4-7,
...) has a fit of its own: the knee is not the same at every batch size (on this CPU 8
tokens at batch 1, 64 at batch 16), and one fit over a server whose load changes would
carry one batch size's knee to another.  Until :data:`MIN_SAMPLES` steps of a bucket are
measured, and whenever its fit is degenerate (no variation in the drafts yet), the prior
holds there: a fixed part worth ``PRIOR_FIXED_TOKENS`` verified tokens and a knee of
``PRIOR_KNEE``.  Only the ratios matter to the drafting policy, so the prior needs no unit.

A fit is bounded by what a token can cost: the tokens up to the knee are verified within the
flat part of a step, so ``per_token * knee`` is at most ``fixed + per_row * rows`` (at the
mean row count).  Where the least-squares fit breaks the bound (few steps past a knee, one of
them slow) the fit is redone on the bound.

Which rows of a step are requests that joined is read from the rows themselves
(:class:`StepRows`): vLLM gives no request ids, and it moves rows when a request leaves.  A
step far slower than the model predicts (the server was idle) is left out, and so is a step
in which a request was still prefilling in chunks.  The setting ``step_cost_model`` replaces
the measurement by a fixed model.

The fits go on from the weighted sums of an earlier engine (:meth:`StepTimer.resume`, kept
by :mod:`tasc_vllm.step_time_store`), each bucket's scaled down to :data:`RESUMED_WEIGHT`
steps so that this engine's own steps soon outweigh them.
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
# a firmer pull of per_row to 0: while every step has the same rows (batch 1), the fixed part
# and per_row cannot be told apart, and the fixed part takes all of it
ROW_RIDGE = 1e-4
BUCKETS = 9  # batch-size buckets, one fit each: 1, 2-3, 4-7, ..., 128-255, 256 and more
RESUMED_WEIGHT = 48.0  # an earlier engine's sums weigh at most as much as this many fresh steps


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
        """``(rows, tokens verified, prompt tokens prefilled)`` of the step since that call, or
        None when a row gained nothing (a prompt still prefilling in chunks, or a discarded row)."""
        if not gained or min(gained) <= 0:
            return None
        before = lengths - np.asarray(gained, dtype=lengths.dtype)
        unmatched = {key: list(ds) for key, ds in self.rows.items()}
        tokens = prompt = 0
        for n, t in zip(before.tolist(), _last_tokens(token_ids, before).tolist()):
            ds = unmatched.get((n, t))
            if ds:
                tokens += 1 + ds.pop()  # the token sampled at that call and the drafts made for it
            else:
                tokens += 1
                prompt += n  # a request that joined: its prompt was prefilled in this step
        return len(gained), tokens, prompt


def bucket(rows: int) -> int:
    """The batch-size bucket of a step of ``rows`` requests: 1, 2-3, 4-7, ... (one fit each)."""
    return min(max(int(rows), 1).bit_length() - 1, BUCKETS - 1)


class StepFit:
    """One step-time model, fitted from the steps of one batch-size bucket."""

    def __init__(self):
        k = len(KNEES)
        self.samples = 0
        self.xtx = np.zeros((k, 4, 4))
        self.xty = np.zeros((k, 4))
        self.yty = np.zeros(k)
        self.cost = np.array([PRIOR_FIXED_TOKENS, 0.0, 1.0, PRIOR_KNEE])
        self.per_prompt_token = 0.0
        self.measured = False

    def predict(self, rows: int, tokens: int, prompt: int = 0) -> float:
        c = self.cost
        return float(c[0] + c[1] * rows + c[2] * max(0.0, tokens - c[3]) + self.per_prompt_token * prompt)

    def add(self, rows: int, tokens: int, seconds: float, prompt: int) -> None:
        x = np.array([[1.0, rows, max(0.0, tokens - k), prompt] for k in KNEES])
        self.xtx *= FORGET
        self.xty *= FORGET
        self.yty *= FORGET
        self.xtx += x[:, :, None] * x[:, None, :]
        self.xty += x * seconds
        self.yty += seconds * seconds
        self.samples += 1
        if self.samples >= MIN_SAMPLES:
            self.refit()

    def refit(self) -> None:
        best = None
        rows = self.xtx[0, 0, 1] / self.xtx[0, 0, 0]  # the weighted mean row count
        for i, knee in enumerate(KNEES):
            theta = _solve(self.xtx[i], self.xty[i])
            if theta is not None and theta[2] * knee > theta[0] + theta[1] * rows:
                # a token past the knee dearer than the flat part allows: fit on the bound,
                # fixed = per_token * knee - per_row * rows
                t = np.array([[knee, -rows, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
                phi = _solve(t.T @ self.xtx[i] @ t, t.T @ self.xty[i])
                theta = None if phi is None else t @ phi
            if theta is None or theta[2] <= 0 or theta[0] + theta[1] <= 0:
                continue  # no cost per token seen yet, or no fixed part: not a usable model
            sse = self.yty[i] - 2 * theta @ self.xty[i] + theta @ self.xtx[i] @ theta
            if best is None or sse < best[0] - 1e-15:
                best = (sse, theta, knee)
        if best is None:
            return
        _, theta, knee = best
        self.cost = np.array([max(theta[0], 0.0), max(theta[1], 0.0), theta[2], float(knee)])
        if self.cost[0] + self.cost[1] <= 0:
            self.cost[0] = theta[2]
        self.per_prompt_token = max(theta[3], 0.0)
        self.measured = True


def _solve(a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
    """Ridge least squares; the unknown at index 1 is the cost per row in both of the fit's
    forms, and gets the firmer :data:`ROW_RIDGE`."""
    ridge = np.full(a.shape[0], RIDGE)
    ridge[1] = ROW_RIDGE
    try:
        return np.linalg.solve(a + np.diag(ridge), b)
    except np.linalg.LinAlgError:
        return None


class StepTimer:
    """Fits the step-time model from ``record`` calls, one fit per batch-size bucket
    (:func:`bucket`); ``cost(rows)`` gives the model in use for a step of ``rows`` requests:
    its bucket's fit once measured, else the prior (or the given model)."""

    def __init__(self, fixed: np.ndarray | None = None):
        self.fixed = fixed
        self.fits = [StepFit() for _ in range(BUCKETS)]
        self._prior = fixed.copy() if fixed is not None else np.array([PRIOR_FIXED_TOKENS, 0.0, 1.0, PRIOR_KNEE])
        self.fresh_samples = 0  # steps this engine recorded itself
        self.resumed_samples = 0  # steps behind the sums it resumed from
        self._fresh = np.zeros(BUCKETS, dtype=np.int64)  # per bucket

    @property
    def samples(self) -> int:
        return sum(f.samples for f in self.fits)

    @property
    def measured(self) -> bool:
        return any(f.measured for f in self.fits)

    def cost(self, rows: int = 1) -> np.ndarray:
        """(fixed, per_row, per_token, knee) for a step of ``rows`` requests."""
        f = self.fits[bucket(rows)]
        return f.cost if self.fixed is None and f.measured else self._prior

    def costs(self) -> dict[str, list[float]]:
        """The measured fits by their buckets' smallest row count (for the stats file)."""
        return {str(1 << b): f.cost.tolist() for b, f in enumerate(self.fits) if f.measured}

    def per_prompt_token(self, rows: int = 1) -> float:
        f = self.fits[bucket(rows)]
        return f.per_prompt_token if self.fixed is None and f.measured else 0.0

    def predict(self, rows: int, tokens: int, prompt: int = 0) -> float:
        c = self.cost(rows)
        return float(c[0] + c[1] * rows + c[2] * max(0.0, tokens - c[3]) + self.per_prompt_token(rows) * prompt)

    def record(self, rows: int, tokens: int, seconds: float, prompt: int = 0) -> None:
        """One step of ``rows`` requests that verified ``tokens`` tokens and prefilled
        ``prompt`` prompt tokens took ``seconds``."""
        if self.fixed is not None or rows <= 0 or seconds <= 0.0:
            return
        b = bucket(rows)
        # outliers are judged by this engine's own fit: a resumed one may not fit this run
        if self._fresh[b] >= MIN_SAMPLES and seconds > OUTLIER * self.predict(rows, tokens, prompt):
            return
        self.fits[b].add(rows, tokens, seconds, prompt)
        self._fresh[b] += 1
        self.fresh_samples += 1

    def state(self) -> dict[str, np.ndarray]:
        """The fits' weighted sums, for :meth:`resume`."""
        return {"xtx": np.stack([f.xtx for f in self.fits]), "xty": np.stack([f.xty for f in self.fits]),
                "yty": np.stack([f.yty for f in self.fits]),
                "samples": np.array([f.samples for f in self.fits], dtype=np.int64)}

    def resume(self, state: dict[str, np.ndarray]) -> bool:
        """Go on from an earlier timer's sums (:meth:`state`): each bucket that had a model
        resumes, scaled to weigh at most :data:`RESUMED_WEIGHT` steps.  False (nothing
        changed) for sums of another shape or not finite, or when no bucket had a model."""
        if self.fixed is not None:
            return False
        k = len(KNEES)
        try:
            xtx, xty, yty = (np.array(state[n], dtype=np.float64) for n in ("xtx", "xty", "yty"))
            samples = np.array(state["samples"], dtype=np.int64).reshape(-1)
        except (KeyError, TypeError, ValueError):
            return False
        shapes = (xtx.shape, xty.shape, yty.shape, samples.shape)
        if shapes != ((BUCKETS, k, 4, 4), (BUCKETS, k, 4), (BUCKETS, k), (BUCKETS,)):
            return False
        if not (np.all(np.isfinite(xtx)) and np.all(np.isfinite(xty)) and np.all(np.isfinite(yty))):
            return False
        resumed = []
        for b in range(BUCKETS):
            weight = xtx[b, 0, 0, 0]  # the sum of the steps' weights
            if samples[b] < MIN_SAMPLES or weight <= 0:
                continue
            fit = StepFit()
            scale = min(1.0, RESUMED_WEIGHT / weight)
            fit.xtx, fit.xty, fit.yty = xtx[b] * scale, xty[b] * scale, yty[b] * scale
            fit.samples = int(samples[b])
            fit.refit()
            if fit.measured:
                resumed.append((b, fit))
        for b, fit in resumed:
            self.fits[b] = fit
        self.resumed_samples = sum(f.samples for _, f in resumed)
        return bool(resumed)

    def summary(self) -> str:
        if self.fixed is not None:
            c = self.fixed
            return (f"step time (given): {c[0]:.4g} + {c[1]:.4g}/row + {c[2]:.4g}/token past {c[3]:g} tokens")
        parts = []
        for b, f in enumerate(self.fits):
            if f.measured:
                c = f.cost
                lo = 1 << b
                rows = f"{lo}+" if b == BUCKETS - 1 else (f"{lo}" if lo == 1 else f"{lo}-{2 * lo - 1}")
                parts.append(f"{rows} rows: {c[0]:.4g} + {c[1]:.4g}/row + {c[2]:.4g}/token past {c[3]:g} tokens "
                             f"+ {f.per_prompt_token:.4g}/prompt token")
        resumed = f", resumed from {self.resumed_samples} earlier steps" if self.resumed_samples else ""
        return (f"step time ({self.fresh_samples} steps{resumed}): " + ("; ".join(parts) if parts else
                f"the prior ({PRIOR_FIXED_TOKENS:g} tokens' worth, flat to {PRIOR_KNEE:g} tokens)"))
