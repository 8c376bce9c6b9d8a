"""Online calibration of the two draft sources' confidences.

The drafting loop turns corpus counts into ``count / (total + alpha)`` and an in-request match
of ``m`` tokens into ``m / (m + gamma)``.  How often each is right differs by task: a short
corpus context may be a poor guess on one task and a sure one on another, a long match in
the prompt may copy a value or echo a few-shot example.  So the proposer keeps score: every
token a request gains is first predicted by both sources (as they stood before it), and a hit
or miss is counted in the prediction's bucket (corpus: context order and probability decile;
context: match length).  A bucket's calibrated probability is its hit rate, shrunk towards the
formula by ``PRIOR_TRIALS`` pseudo-observations, so an empty bucket drafts exactly as the
formula says.  Both choosing between the sources and deciding how long a draft to risk use
the calibrated values.

Per-token rates multiply into a draft's running confidence as if the tokens' fates were
independent; they are not, so the draft as a whole is calibrated too.  The proposer keeps
each row's last draft with the running confidence at every position; when the next step
shows how many of those tokens the target model accepted, each drafted token counts a hit
or a miss in its confidence's bucket (twentieths), and the drafting loop stops on the
calibrated confidence.  The score is a few hundred numbers, bounded whatever the traffic.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from tasc_vllm.kernels.lookups import longest_corpus_entry, request_guess

PRIOR_TRIALS = 4.0
PROB_BINS = 10
MAX_ORDER = 32  # TascConfig.max_order's bound
MAX_MATCH = 64  # TascConfig.context_max_order's bound
DRAFT_BINS = 20
CONTEXT_BASE = MAX_ORDER * PROB_BINS
SPACED_BASE = CONTEXT_BASE + MAX_MATCH + 1
DRAFT_BASE = SPACED_BASE + MAX_MATCH + 1
NUM_BUCKETS = DRAFT_BASE + DRAFT_BINS


def new_calibration() -> np.ndarray:
    """Hits (row 0) and trials (row 1) per bucket, all empty."""
    return np.zeros((2, NUM_BUCKETS), dtype=np.float64)


@njit(cache=True, inline="always")
def _bin(p, bins):
    """Which of ``bins`` equal parts of 0..1 holds ``p`` (1.0 in the last)."""
    return min(int(p * bins), bins - 1)


@njit(cache=True, inline="always")
def corpus_bucket(order, p):
    return (order - 1) * PROB_BINS + _bin(p, PROB_BINS)


@njit(cache=True, inline="always")
def context_bucket(m):
    return CONTEXT_BASE + min(m, MAX_MATCH)


@njit(cache=True, inline="always")
def spaced_bucket(m):
    return SPACED_BASE + min(m, MAX_MATCH)


@njit(cache=True, inline="always")
def draft_bucket(confidence):
    return DRAFT_BASE + _bin(confidence, DRAFT_BINS)


@njit(cache=True, inline="always")
def calibrated(cal, bucket, prior):
    return (cal[0, bucket] + PRIOR_TRIALS * prior) / (cal[1, bucket] + PRIOR_TRIALS)


@njit(cache=True)
def observe_batch(rows, lengths, new_tokens, token_ids, table, params, space, cal):
    """Score both sources' top guesses for each row's last ``new_tokens[i]`` tokens (the
    request's guess in the bucket of the match the drafting loop would take it from: with
    whitespace skipped when ``space`` is not empty and that match is the longer one).
    ``table``, ``params``: as for :func:`tasc_vllm.kernels.drafting.draft_batch`."""
    slots, keys, nexts, counts, totals = table
    max_order, ctx_min_order, ctx_max_order, alpha = params.max_order, params.ctx_min_order, params.ctx_max_order, params.alpha
    for i in range(rows.shape[0]):
        r = rows[i]
        row = token_ids[r]
        n = lengths[r]
        for p in range(max(1, n - new_tokens[i]), n):
            tok = row[p]
            if tok < 0:
                continue
            entry, order = longest_corpus_entry(row, p, row, 0, slots, keys, max_order)
            if entry >= 0 and nexts[entry, 0] >= 0:
                b = corpus_bucket(order, counts[entry, 0] / (totals[entry] + alpha))
                cal[1, b] += 1.0
                if nexts[entry, 0] == tok:
                    cal[0, b] += 1.0
            ptr, m, spaced = request_guess(row, p, ctx_min_order, ctx_max_order, space)
            if ptr >= 0:
                b = spaced_bucket(m) if spaced else context_bucket(m)
                cal[1, b] += 1.0
                if row[ptr] == tok:
                    cal[0, b] += 1.0


@njit(cache=True)
def score_drafts(rows, lengths, new_tokens, token_ids, last_len, last_n, last_draft, last_conf, cal):
    """Count which of each row's last drafted tokens the target model accepted.

    Row ``rows[i]`` gained ``new_tokens[i]`` tokens: the accepted part of its last draft plus
    one token of the model's own.  The row's draft (made at length ``last_len``) is scored only
    when the row still holds the same request: the length grew by exactly the tokens gained and
    the accepted tokens are the draft's.  Each row's draft is scored at most once."""
    scored = 0
    for i in range(rows.shape[0]):
        r = rows[i]
        n_draft = last_n[r]
        if n_draft <= 0:
            continue
        last_n[r] = 0
        g = new_tokens[i]
        start = last_len[r]
        if g < 1 or lengths[r] != start + g:
            continue
        accepted = g - 1
        if accepted > n_draft:
            continue
        same = True
        for j in range(accepted):
            if token_ids[r, start + j] != last_draft[r, j]:
                same = False
                break
        if not same or (accepted < n_draft and token_ids[r, start + accepted] == last_draft[r, accepted]):
            continue
        for j in range(n_draft):
            b = draft_bucket(last_conf[r, j])
            cal[1, b] += 1.0
            if j < accepted:
                cal[0, b] += 1.0
        scored += 1
    return scored


class LastDrafts:
    """Each row's last draft, its running confidences and the row length it was made at,
    kept until the next step scores it (:func:`score_drafts`)."""

    def __init__(self, rows: int, k: int):
        self.length = np.zeros(rows, dtype=np.int64)
        self.count = np.zeros(rows, dtype=np.int32)
        self.tokens = np.zeros((rows, k), dtype=np.int32)
        self.confidence = np.zeros((rows, k), dtype=np.float64)

    def score(self, rows, lengths, new_tokens, token_ids, cal) -> int:
        if rows.size and int(rows.max()) >= self.count.shape[0]:
            self._grow(int(rows.max()) + 1)
        return int(score_drafts(rows, lengths, new_tokens, token_ids, self.length, self.count, self.tokens,
                                self.confidence, cal))

    def remember(self, batch_rows: int, rows, lengths, out, out_len, out_conf) -> None:
        """This step's drafts (``out[j]`` for row ``rows[j]``); every other row has none."""
        if batch_rows > self.count.shape[0]:
            self._grow(batch_rows)
        self.count[:batch_rows] = 0
        m = rows.shape[0]
        self.length[rows] = lengths[rows]
        self.count[rows] = out_len[:m]
        self.tokens[rows] = out[:m]
        self.confidence[rows] = out_conf[:m]

    def _grow(self, rows: int) -> None:
        for name in ("length", "count", "tokens", "confidence"):
            old = getattr(self, name)
            new = np.zeros((rows,) + old.shape[1:], dtype=old.dtype)
            new[: old.shape[0]] = old
            setattr(self, name, new)
