"""The copy table: where in its prompt the task's answers copy from next.

A function call's first argument is the first parameter its schema lists: after
``", "arguments": {"`` the answer copies the token that follows ``"properties": {"`` in the
prompt.  No other source guesses it: the request's match has nothing to go from (the answer's
last tokens are not in the prompt), the prompt's next item (:mod:`tasc_vllm.kernels.next_items`)
needs an item written before, and the corpus does not know this request's parameters.

The copy table learns such links from the corpus's prompts and answers.  At every answer
position whose token is a word or digit token found in its prompt (at most
:data:`MAX_OCCURRENCES` times), the :data:`ANCHOR` prompt tokens before each occurrence are
counted, an occurrence among ``n`` as ``1/n``, under the answer's last 1 to :data:`ORDER`
tokens.  While drafting, the longest of the answer's last tokens that the answers wrote at
least :data:`MIN_COUNT` times gives its most frequent anchor; the token after the anchor's first
occurrence in the prompt is the guess, one more candidate with three features for the scorer
(:mod:`tasc_vllm.kernels.candidates`).  It is learned with the scorer
(:mod:`tasc_vllm.index.policy`; in folds, as the n-gram table is) and saved with it.

The table is a sorted array of keys with one anchor each: a lookup is one binary search per
context length, and the anchor's search scans the prompt once.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from tasc_vllm.kernels.lookups import first_occurrence, token_at
from tasc_vllm.kernels.ngram_table import finalize, mix, sorted_key_index
from tasc_vllm.kernels.token_classes import is_content

ORDER = 3  # the answer's last tokens a context holds, at most
ANCHOR = 3  # the prompt tokens before a copied token that find it again
MAX_OCCURRENCES = 8  # a token found more often in its prompt tells nothing of where it came from
MIN_COUNT = 2  # a context the answers wrote fewer times guesses nothing
_COPY_SEED = np.uint64(0x8CB92BA72F3D8DD7)


class CopyTable(NamedTuple):
    keys: np.ndarray  # uint64[K], ascending: the answers' contexts
    anchors: np.ndarray  # int64[K, ANCHOR]: each context's most frequent anchor
    weights: np.ndarray  # float64[K]: how often the answer copied the token after it
    totals: np.ndarray  # int64[K]: how often the context came in the answers


def empty_copies() -> CopyTable:
    return CopyTable(np.zeros(0, dtype=np.uint64), np.zeros((0, ANCHOR), dtype=np.int64),
                     np.zeros(0, dtype=np.float64), np.zeros(0, dtype=np.int64))


@njit(cache=True)
def context_key(ctx, n_ctx, draft, end, length):
    """The key of the ``length`` tokens before position ``end`` of the sequence
    ``ctx[:n_ctx] + draft``."""
    h = _COPY_SEED
    for i in range(1, length + 1):
        h = mix(h, token_at(ctx, n_ctx, draft, end - i))
    return finalize(h, length)


@njit(cache=True)
def copy_guess(ctx, n_ctx, draft, n_draft, start, copies):
    """The copy table's guess at the end of the sequence ``ctx[:n_ctx] + draft[:n_draft]``,
    whose answer begins at ``start`` (-1: unknown, so no guess): (position in ``ctx`` of the
    guessed token, its anchor's share of the context's answers, the context's length, how often
    the answers wrote it), or (-1, 0.0, 0, 0)."""
    if start <= ANCHOR or copies.keys.shape[0] == 0:
        return -1, 0.0, 0, 0
    end = n_ctx + n_draft
    for length in range(min(ORDER, end - start), 0, -1):
        e = sorted_key_index(copies.keys, context_key(ctx, n_ctx, draft, end, length))
        if e < 0:
            continue
        q = first_occurrence(ctx, copies.anchors[e], 0, start - 1)  # the token after it in the prompt
        if q < 0:
            return -1, 0.0, 0, 0  # the longest known context's anchor is not in this prompt
        return q + ANCHOR, copies.weights[e] / copies.totals[e], length, copies.totals[e]
    return -1, 0.0, 0, 0


@njit(cache=True)
def copy_examples(seq, p, start, classes, ctx_keys, n_ctx_keys, pair_keys, pair_anchors, pair_weights, n_pairs):
    """The copy table's examples at answer position ``p`` of the prompt and answer ``seq``
    (the answer begins at ``start``): the position's contexts into ``ctx_keys`` from
    ``n_ctx_keys`` on, and a (context, anchor, weight) for each of the position's token's
    occurrences in the prompt into the pair arrays from ``n_pairs`` on, when they have room.
    Returns the new counts."""
    lengths = min(ORDER, p - start)
    if start <= ANCHOR or lengths < 1 or n_ctx_keys + lengths > ctx_keys.shape[0]:
        return n_ctx_keys, n_pairs
    for length in range(1, lengths + 1):
        ctx_keys[n_ctx_keys + length - 1] = context_key(seq, seq.shape[0], seq, p, length)
    t = seq[p]
    found = 0
    if is_content(classes, t):
        for q in range(ANCHOR, start):
            if seq[q] == t:
                found += 1
    if 0 < found <= MAX_OCCURRENCES and n_pairs + found * lengths <= pair_keys.shape[0]:
        for q in range(ANCHOR, start):
            if seq[q] != t:
                continue
            for length in range(1, lengths + 1):
                pair_keys[n_pairs] = ctx_keys[n_ctx_keys + length - 1]
                for i in range(ANCHOR):
                    pair_anchors[n_pairs, i] = seq[q - ANCHOR + i]
                pair_weights[n_pairs] = 1.0 / found
                n_pairs += 1
    return n_ctx_keys + lengths, n_pairs


def build_copies(ctx_keys: np.ndarray, pair_keys: np.ndarray, pair_anchors: np.ndarray,
                 pair_weights: np.ndarray) -> CopyTable:
    """The table of the answers' contexts ``ctx_keys`` (one per answer position and length)
    and their ``(context, anchor, weight)`` copies: each context written at least
    :data:`MIN_COUNT` times keeps its heaviest anchor (the first in token order on a tie)."""
    ctx_keys = np.asarray(ctx_keys, dtype=np.uint64)
    if pair_keys.size == 0 or ctx_keys.size == 0:
        return empty_copies()
    seen, seen_count = np.unique(ctx_keys, return_counts=True)
    pair_anchors = np.asarray(pair_anchors, dtype=np.int64).reshape(-1, ANCHOR)
    order = np.lexsort(tuple(pair_anchors[:, i] for i in range(ANCHOR - 1, -1, -1)) + (pair_keys,))
    keys, anchors, weights = pair_keys[order], pair_anchors[order], pair_weights[order]
    new = np.r_[True, (keys[1:] != keys[:-1]) | np.any(anchors[1:] != anchors[:-1], axis=1)]
    first = np.flatnonzero(new)
    keys, anchors, weights = keys[first], anchors[first], np.add.reduceat(weights, first)
    # per context, the heaviest anchor (a stable sort keeps the first in token order on a tie)
    order = np.lexsort((-weights, keys))
    keys, anchors, weights = keys[order], anchors[order], weights[order]
    best = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    keys, anchors, weights = keys[best], anchors[best], weights[best]
    totals = seen_count[np.searchsorted(seen, keys)].astype(np.int64)
    keep = totals >= MIN_COUNT
    return CopyTable(keys[keep].copy(), np.ascontiguousarray(anchors[keep]), weights[keep].astype(np.float64),
                     totals[keep])


def check_copies(copies: CopyTable) -> None:
    """Raise ``ValueError`` unless ``copies`` is a table the hot path can read."""
    k = copies.keys.shape[0]
    if (copies.keys.ndim != 1 or copies.anchors.shape != (k, ANCHOR) or copies.weights.shape != (k,)
            or copies.totals.shape != (k,)):
        raise ValueError("copy table arrays of mismatched shapes")
    if k and (np.any(copies.keys[1:] <= copies.keys[:-1]) or copies.totals.min() < 1
              or not np.all((copies.weights > 0) & (copies.weights <= copies.totals * (1 + 1e-9)))):
        raise ValueError("copy table keys not ascending, or weights out of range")
