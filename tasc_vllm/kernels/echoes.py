"""The echo table: what the task's answers wrote next where the request's match went on the same way.

An answer often mirrors its prompt without copying it.  A function call writes a parameter's
name as the prompt's schema spells it, then ``": "`` for a string and ``": `` for a number:
the request's match (the name in the schema) guesses neither, but the schema's next tokens,
``": {"type": "string"``, tell which.  The echo table learns that link from the corpus's
prompts and answers: at every answer position where the request has an earlier match
(:func:`tasc_vllm.kernels.lookups.find_context_matches`), the :data:`ECHO_LENGTH` tokens
from the match's guess on are hashed into a key, and the answer's next token is counted
under it.  While drafting, the same key gives the answers' ``TOP_K`` most frequent next
tokens, one more source of candidates and two features for the scorer
(:mod:`tasc_vllm.kernels.candidates`).  It is learned with the scorer
(:mod:`tasc_vllm.index.policy`; in folds, as the n-gram table is) and saved with it.

The table is a sorted array of keys and, per key, its followers in falling count: a lookup
is one binary search.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from tasc_vllm.kernels.ngram_table import TOP_K, finalize, mix, sorted_key_index

ECHO_LENGTH = 6  # tokens from the request's guess on that make a key
_ECHO_SEED = np.uint64(0xD6E8FEB86659FD93)


class EchoTable(NamedTuple):
    keys: np.ndarray  # uint64[K], ascending
    first: np.ndarray  # int64[K + 1]: key i's followers are tokens[first[i]:first[i + 1]]
    tokens: np.ndarray  # int64: the followers, most frequent first (at most TOP_K per key)
    counts: np.ndarray  # int64: how often each follower came
    totals: np.ndarray  # int64[K]: how often each key came, all followers counted


def empty_echoes() -> EchoTable:
    z = np.zeros(0, dtype=np.int64)
    return EchoTable(np.zeros(0, dtype=np.uint64), np.zeros(1, dtype=np.int64), z, z.copy(), z.copy())


@njit(cache=True)
def echo_key(ctx, n_ctx, ptr):
    """The key of the :data:`ECHO_LENGTH` tokens of ``ctx[:n_ctx]`` from ``ptr`` on (the
    request's guess); 0 when there is no guess or fewer tokens follow it."""
    if ptr < 0 or ptr + ECHO_LENGTH > n_ctx:
        return np.uint64(0)
    h = _ECHO_SEED
    for i in range(ECHO_LENGTH - 1, -1, -1):
        h = mix(h, ctx[ptr + i])
    return finalize(h, ECHO_LENGTH)


@njit(cache=True)
def echo_entry(echo, key):
    """The index of ``key`` in the table, -1 when it is absent (or 0, no key)."""
    if key == 0:
        return -1
    return sorted_key_index(echo.keys, key)


def build_echoes(keys: np.ndarray, tokens: np.ndarray) -> EchoTable:
    """The table of the ``(key, next token)`` pairs (keys 0 are no key and are dropped)."""
    keys = np.asarray(keys, dtype=np.uint64)
    tokens = np.asarray(tokens, dtype=np.int64)
    keep = keys != 0
    keys, tokens = keys[keep], tokens[keep]
    if keys.size == 0:
        return empty_echoes()
    order = np.lexsort((tokens, keys))
    keys, tokens = keys[order], tokens[order]
    pair_first = np.flatnonzero(np.r_[True, (keys[1:] != keys[:-1]) | (tokens[1:] != tokens[:-1])])
    counts = np.diff(np.r_[pair_first, keys.size])
    pair_keys, pair_tokens = keys[pair_first], tokens[pair_first]
    # by key, then most frequent first, then the smaller token
    order = np.lexsort((pair_tokens, -counts, pair_keys))
    pair_keys, pair_tokens, counts = pair_keys[order], pair_tokens[order], counts[order]
    starts = np.flatnonzero(np.r_[True, pair_keys[1:] != pair_keys[:-1]])
    rank = np.arange(pair_keys.size) - np.repeat(starts, np.diff(np.r_[starts, pair_keys.size]))
    totals = np.add.reduceat(counts, starts)
    top = rank < TOP_K
    kept_per_key = np.minimum(np.diff(np.r_[starts, pair_keys.size]), TOP_K)
    first = np.zeros(starts.size + 1, dtype=np.int64)
    np.cumsum(kept_per_key, out=first[1:])
    return EchoTable(pair_keys[starts].copy(), first, pair_tokens[top].astype(np.int64),
                     counts[top].astype(np.int64), totals.astype(np.int64))


def check_echoes(echo: EchoTable) -> None:
    """Raise ``ValueError`` unless ``echo`` is a table the hot path can read."""
    k = echo.keys.shape[0]
    if echo.keys.ndim != 1 or echo.first.shape != (k + 1,) or echo.totals.shape != (k,):
        raise ValueError("echo table arrays of mismatched lengths")
    n = echo.tokens.shape[0]
    if echo.counts.shape != (n,) or echo.first[0] != 0 or echo.first[-1] != n:
        raise ValueError("echo table followers out of range")
    if k and (np.any(echo.keys[1:] <= echo.keys[:-1]) or np.any(np.diff(echo.first) < 1)
              or np.any(np.diff(echo.first) > TOP_K)):
        raise ValueError("echo table keys not ascending, or a key without followers")
    if n and (echo.tokens.min() < 0 or echo.counts.min() < 1):
        raise ValueError("echo table holds a negative token or count")
