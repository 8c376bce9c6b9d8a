"""Corpus n-gram statistics: for every context of 1..max_order tokens seen in the corpus, the
``TOP_K`` most frequent next tokens with their counts.

The corpus is one int32 array of token ids with ``-1`` between texts. A context is keyed by a
64-bit rolling hash of its tokens (most recent first) and its order; the keys live in an
open-addressing hash table, so a lookup costs O(1) whatever the corpus size. Building sorts
one uint64 array per order (hash in the high bits, next token in the low ``NEXT_BITS``) and
counts runs; everything runs in compiled NumPy/Numba code, never a Python loop over tokens.

Given the token classes, the table also holds **contexts that skip a run**: a run of word
and digit tokens, single joiners such as ``_`` or ``-`` between them (a value, a name, a
number, a date: :data:`MAX_RUN` tokens at most) is replaced by
the wildcard :data:`RUN_MARK`, so the context is the tokens before the run, the wildcard, and
the up to :data:`MAX_TAIL` other tokens after it.  ``"StreetName": "`` + run counts the
token that ends the run (``",``), whatever the street was; ``{"name": "`` + run + ``", "``
counts the key after a function's name.  The request's values are seldom in the corpus, so
no ordinary context that holds one is known; these are
(:func:`tasc_vllm.kernels.lookups.run_skipping_entry`).  Ordinary contexts never hold the
wildcard, so both kinds share one table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from numba import njit

from tasc_vllm.kernels.token_classes import is_content, is_joiner

TOP_K = 4
NEXT_BITS = 20  # vocabularies up to 1,048,576 tokens
MAX_VOCAB = 1 << NEXT_BITS
_NEXT_MASK = np.uint64((1 << NEXT_BITS) - 1)
_KEY_MASK = np.uint64(~((1 << NEXT_BITS) - 1) & 0xFFFFFFFFFFFFFFFF)
_SEED = np.uint64(0x9E3779B97F4A7C15)
_PRIME = np.uint64(0x100000001B3)
_GOLD = np.uint64(0x9E3779B97F4A7C15)
RUN_MARK = MAX_VOCAB  # the wildcard standing for a run of word and digit tokens: never a token id
MAX_RUN = 16  # longer runs are not skipped
MAX_TAIL = 4  # tokens after a run that a skipping context may end with


@njit(cache=True)
def sorted_key_index(keys, key):
    """The index of ``key`` in the ascending array ``keys``, -1 when it is absent."""
    i = np.searchsorted(keys, key)
    if i < keys.shape[0] and keys[i] == key:
        return i
    return -1


@njit(cache=True, inline="always")
def mix(h, token):
    """Extend a context hash by one (older) token."""
    return (np.uint64(h) ^ np.uint64(token + 1)) * _PRIME


@njit(cache=True, inline="always")
def finalize(h, order):
    """Turn a rolling hash of ``order`` tokens into a table key (high bits only, never 0)."""
    z = np.uint64(h) + np.uint64(order) * _GOLD
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    z = z & _KEY_MASK
    if z == 0:
        z = np.uint64(1) << np.uint64(NEXT_BITS)
    return z


@njit(cache=True)
def context_key(context):
    """Table key of a whole context (token array, most recent last)."""
    h = _SEED
    n = context.shape[0]
    for i in range(n):
        h = mix(h, context[n - 1 - i])
    return finalize(h, n)


@njit(cache=True)
def _order_keys(tokens, prev_hash, order, out_hash, out_combined):
    """Hashes of the order-``order`` contexts ending at each position, and for the valid ones
    (context inside one text, followed by a real token) ``key | next`` in ``out_combined``.
    Returns how many entries of ``out_combined`` were filled."""
    n = tokens.shape[0]
    m = 0
    for p in range(n):
        start = p - order + 1
        if start < 0 or tokens[start] < 0 or prev_hash[p] == 0:
            out_hash[p] = 0  # 0 marks "no context of this order ends here"
            continue
        h = mix(prev_hash[p], tokens[start])
        out_hash[p] = h
        if p + 1 < n and tokens[p + 1] >= 0 and tokens[p] >= 0:
            out_combined[m] = finalize(h, order) | np.uint64(tokens[p + 1])
            m += 1
    return m


@njit(cache=True)
def _run_events(tokens, classes):
    """Every token that follows a run of at most :data:`MAX_RUN` tokens and at most
    :data:`MAX_TAIL` other tokens after it, all in one text that a token precedes the run in:
    (the runs' first positions, the followed positions, the followers' positions).  A run is
    content tokens (``classes``: one per token id) with at most one joiner between two of them:
    ``calculate _ area``, ``2022 - 03``.  The tokens between a run and its follower
    are its tail: none for the token that closes the run.  A joiner inside a run also counts
    as following the run before it (no tail), so the table knows how often a value goes on
    where it could have closed."""
    n = tokens.shape[0]
    # a position follows at most one run (tails hold no content token): at most n events
    starts = np.empty(n, dtype=np.int64)
    tails = np.empty(n, dtype=np.int64)
    follows = np.empty(n, dtype=np.int64)
    r = 0
    p = 0
    while p < n:
        if is_content(classes, tokens[p]):
            s = p
            counted = s > 0 and tokens[s - 1] >= 0
            while True:
                if p + 1 < n and is_content(classes, tokens[p + 1]):
                    p += 1
                elif p + 2 < n and is_joiner(classes, tokens[p + 1]) and is_content(classes, tokens[p + 2]):
                    if counted and p - s + 1 <= MAX_RUN:  # the joiner follows the run so far
                        starts[r] = s
                        tails[r] = p + 1
                        follows[r] = p + 1
                        r += 1
                    p += 2
                else:
                    break
            if p - s + 1 <= MAX_RUN and counted:
                for f in range(p + 1, min(p + 2 + MAX_TAIL, n)):
                    u = tokens[f]
                    if u < 0:
                        break
                    starts[r] = s
                    tails[r] = p + 1
                    follows[r] = f
                    r += 1
                    if is_content(classes, u):
                        break  # the next run begins: tails hold no content token
        p += 1
    return starts[:r], tails[:r], follows[:r]


@njit(cache=True)
def _run_hashes(tokens, tails, follows):
    """Each event's rolling hash of its tail (most recent first), then the wildcard."""
    out = np.empty(tails.shape[0], dtype=np.uint64)
    for i in range(tails.shape[0]):
        h = _SEED
        for q in range(follows[i] - 1, tails[i] - 1, -1):
            h = mix(h, tokens[q])
        out[i] = mix(h, RUN_MARK)
    return out


@njit(cache=True)
def _run_keys(tokens, starts, tails, follows, hashes, order, out):
    """Extend each event's hash (``hashes``: with ``order - 1`` tokens before the run, 0 once
    it has no more) by one older token, and write ``key | follower`` for the events whose
    ``order`` tokens before the run lie in their text.  Returns how many were written."""
    m = 0
    for i in range(starts.shape[0]):
        h = hashes[i]
        q = starts[i] - order
        if h == 0 or q < 0 or tokens[q] < 0:
            hashes[i] = 0
            continue
        h = mix(h, tokens[q])
        hashes[i] = h
        out[m] = finalize(h, order + 1 + follows[i] - tails[i]) | np.uint64(tokens[follows[i]])
        m += 1
    return m


@njit(cache=True)
def _count_groups(combined):
    groups = 0
    prev = np.uint64(0)
    for i in range(combined.shape[0]):
        key = combined[i] & _KEY_MASK
        if i == 0 or key != prev:
            groups += 1
            prev = key
    return groups


@njit(cache=True)
def _top_k_per_key(combined, min_count, keys, nexts, counts, totals):
    """Walk sorted ``key | next`` values; per key keep the TOP_K most frequent next tokens."""
    n = combined.shape[0]
    g = -1
    i = 0
    while i < n:
        key = combined[i] & _KEY_MASK
        j = i
        g += 1
        keys[g] = key
        totals[g] = 0
        for s in range(TOP_K):
            nexts[g, s] = -1
            counts[g, s] = 0
        while j < n and (combined[j] & _KEY_MASK) == key:
            tok = combined[j] & _NEXT_MASK
            r = j
            while r < n and combined[r] == combined[j]:
                r += 1
            c = r - j
            totals[g] += c
            # insertion into the small sorted top-k list
            s = TOP_K - 1
            if c > counts[g, s]:
                while s > 0 and counts[g, s - 1] < c:
                    counts[g, s] = counts[g, s - 1]
                    nexts[g, s] = nexts[g, s - 1]
                    s -= 1
                counts[g, s] = c
                nexts[g, s] = np.int32(tok)
            j = r
        if totals[g] < min_count:
            g -= 1  # drop rare contexts
        i = j
    return g + 1


@njit(cache=True, inline="always")
def _home_slot(key, capacity):
    """Multiplicative hashing of the key's high bits into a power-of-two table."""
    bits = np.uint64(0)
    c = capacity
    while c > 1:
        c >>= 1
        bits += np.uint64(1)
    return np.int64((np.uint64(key) * _GOLD) >> (np.uint64(64) - bits))


@njit(cache=True)
def _build_slots(keys, capacity):
    slots = np.full(capacity, -1, dtype=np.int32)
    for e in range(keys.shape[0]):
        s = _home_slot(keys[e], capacity)
        while slots[s] != -1:
            s = (s + np.int64(1)) & np.int64(capacity - 1)
        slots[s] = e
    return slots


@njit(cache=True, inline="always")
def lookup(slots, keys, key):
    """Index of ``key`` in the entry arrays, or -1."""
    capacity = slots.shape[0]
    s = _home_slot(key, capacity)
    mask = np.int64(capacity - 1)
    while True:
        e = slots[s]
        if e == -1:
            return -1
        if keys[e] == key:
            return e
        s = (s + np.int64(1)) & mask


class TableView(NamedTuple):
    """The table's arrays as the kernels take them (one typed argument)."""

    slots: np.ndarray
    keys: np.ndarray
    nexts: np.ndarray
    counts: np.ndarray
    totals: np.ndarray


@dataclass
class NgramTable:
    """Arrays of the n-gram model; all plain NumPy, saved with ``np.savez``."""

    slots: np.ndarray  # int32[capacity], entry index or -1
    keys: np.ndarray  # uint64[E]
    nexts: np.ndarray  # int32[E, TOP_K], -1 where unused
    counts: np.ndarray  # int32[E, TOP_K]
    totals: np.ndarray  # int32[E]
    max_order: int

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "slots": self.slots,
            "keys": self.keys,
            "nexts": self.nexts,
            "counts": self.counts,
            "totals": self.totals,
            "max_order": np.array(self.max_order, dtype=np.int64),
        }

    @classmethod
    def from_arrays(cls, a) -> "NgramTable":
        return cls(
            slots=a["slots"],
            keys=a["keys"],
            nexts=a["nexts"],
            counts=a["counts"],
            totals=a["totals"],
            max_order=int(a["max_order"]),
        )

    @property
    def view(self) -> TableView:
        return TableView(self.slots, self.keys, self.nexts, self.counts, self.totals)

    @property
    def nbytes(self) -> int:
        return sum(v.nbytes for v in self.arrays().values())


def build_table(tokens: np.ndarray, max_order: int, min_count: int = 1, progress=None,
                classes: np.ndarray | None = None) -> NgramTable:
    """Count the next-token statistics of every context of order 1..max_order in ``tokens``
    (int32, ``-1`` separating texts). ``progress`` is an optional callable(order).  With
    ``classes`` (one token class per id, :mod:`tasc_vllm.kernels.token_classes`), also the
    contexts that skip a run of word and digit tokens."""
    tokens = np.ascontiguousarray(tokens, dtype=np.int32)
    if tokens.size and int(tokens.max()) >= MAX_VOCAB:
        raise ValueError(f"token id {int(tokens.max())} exceeds the supported vocabulary size {MAX_VOCAB}")
    n = tokens.shape[0]
    prev_hash = np.full(n, _SEED, dtype=np.uint64)
    prev_hash[tokens < 0] = 0
    hash_buf = np.empty(n, dtype=np.uint64)
    combined = np.empty(n, dtype=np.uint64)
    if classes is not None and classes.shape[0]:
        starts, tails, follows = _run_events(tokens, np.ascontiguousarray(classes, dtype=np.uint8))
    else:
        starts = tails = follows = np.zeros(0, dtype=np.int64)
    run_hashes = _run_hashes(tokens, tails, follows)
    closers = np.empty(starts.shape[0], dtype=np.uint64)
    parts = []
    for order in range(1, max_order + 1):
        m = _order_keys(tokens, prev_hash, order, hash_buf, combined)
        prev_hash, hash_buf = hash_buf, prev_hash
        mc = _run_keys(tokens, starts, tails, follows, run_hashes, order, closers)
        if m == 0 and mc == 0:
            break
        sorted_combined = np.sort(np.concatenate((combined[:m], closers[:mc])) if mc else combined[:m])
        groups = _count_groups(sorted_combined)
        keys = np.empty(groups, dtype=np.uint64)
        nexts = np.empty((groups, TOP_K), dtype=np.int32)
        counts = np.empty((groups, TOP_K), dtype=np.int32)
        totals = np.empty(groups, dtype=np.int32)
        kept = _top_k_per_key(sorted_combined, min_count, keys, nexts, counts, totals)
        parts.append((keys[:kept], nexts[:kept], counts[:kept], totals[:kept]))
        del sorted_combined
        if progress is not None:
            progress(order)
    if parts:
        keys = np.concatenate([p[0] for p in parts])
        nexts = np.concatenate([p[1] for p in parts])
        counts = np.concatenate([p[2] for p in parts])
        totals = np.concatenate([p[3] for p in parts])
    else:
        keys = np.zeros(0, dtype=np.uint64)
        nexts = np.zeros((0, TOP_K), dtype=np.int32)
        counts = np.zeros((0, TOP_K), dtype=np.int32)
        totals = np.zeros(0, dtype=np.int32)
    capacity = 1 << max(4, int(np.ceil(np.log2(max(1, 2 * len(keys))))))
    slots = _build_slots(keys, capacity)
    return NgramTable(slots, keys, nexts, counts, totals, max_order)
