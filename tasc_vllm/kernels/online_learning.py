"""Online learning: the tokens a server generates join the n-gram table as they are accepted.

The proposer sees, every step, each running request's context and the tokens it gained in
that step (``sampled_token_ids``).  Each new token is counted as the follower of the 1 to
``max_order`` tokens before it, exactly as :func:`tasc_vllm.kernels.ngram_table.build_table` counts
the corpus, so answers the server has produced are drafted from as if they had been in the
index.  Nothing leaves the process and nothing is coordinated between engines: each engine
(data parallel, several replicas) starts from the same index file and learns on its own.

Memory is bounded: :func:`with_room` copies the table once at start with room for
``extra_entries`` new contexts (at most half full, so lookups stay short); once that room is
used up, only contexts already known keep learning.  A context keeps its ``TOP_K`` most
frequent followers: a new follower of a full context takes the last place only when that
one was seen once, otherwise the last place's count decays by one (counts then
under-estimate, never over-estimate, how often a follower was seen).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from tasc_vllm.kernels.ngram_table import TOP_K, _SEED, NgramTable, _build_slots, _home_slot, finalize, lookup, mix


def with_room(table: NgramTable, extra_entries: int) -> tuple[NgramTable, np.ndarray]:
    """A copy of ``table`` that can take ``extra_entries`` new contexts, and its fill counter
    (a one-element int64 array: entries in use)."""
    used = table.keys.shape[0]
    size = used + extra_entries
    keys = np.zeros(size, dtype=np.uint64)
    keys[:used] = table.keys
    nexts = np.full((size, TOP_K), -1, dtype=np.int32)
    nexts[:used] = table.nexts
    counts = np.zeros((size, TOP_K), dtype=np.int32)
    counts[:used] = table.counts
    totals = np.zeros(size, dtype=np.int32)
    totals[:used] = table.totals
    capacity = 1 << max(4, int(np.ceil(np.log2(max(1, 2 * size)))))
    slots = table.slots if capacity == table.slots.shape[0] else _build_slots(table.keys, capacity)
    if slots is table.slots:
        slots = slots.copy()
    return NgramTable(slots, keys, nexts, counts, totals, table.max_order), np.array([used], dtype=np.int64)


@njit(cache=True)
def _count_follower(e, tok, nexts, counts, totals):
    if totals[e] < 2_000_000_000:
        totals[e] += 1
    for s in range(TOP_K):
        if nexts[e, s] == tok:
            if counts[e, s] < 2_000_000_000:
                counts[e, s] += 1
            while s > 0 and counts[e, s] > counts[e, s - 1]:  # keep the list sorted
                counts[e, s], counts[e, s - 1] = counts[e, s - 1], counts[e, s]
                nexts[e, s], nexts[e, s - 1] = nexts[e, s - 1], nexts[e, s]
                s -= 1
            return
        if nexts[e, s] == -1:
            nexts[e, s] = tok
            counts[e, s] = 1
            return
    last = TOP_K - 1
    if counts[e, last] <= 1:
        nexts[e, last] = tok
        counts[e, last] = 1
    else:
        counts[e, last] -= 1


@njit(cache=True)
def learn_batch(rows, lengths, new_tokens, token_ids, table, max_order, used):
    """Count, for each row ``rows[i]``, its last ``new_tokens[i]`` tokens as followers of their
    1..``max_order`` preceding tokens in ``table`` (:class:`tasc_vllm.kernels.ngram_table.TableView`).
    Returns how many (context, follower) pairs were counted."""
    slots, keys, nexts, counts, totals = table
    capacity = slots.shape[0]
    mask = np.int64(capacity - 1)
    room = keys.shape[0]
    learned = 0
    for i in range(rows.shape[0]):
        r = rows[i]
        n = lengths[r]
        for p in range(max(1, n - new_tokens[i]), n):
            tok = token_ids[r, p]
            if tok < 0:
                continue
            h = _SEED
            for order in range(1, min(max_order, p) + 1):
                prev = token_ids[r, p - order]
                if prev < 0:
                    break
                h = mix(h, prev)
                key = finalize(h, order)
                e = lookup(slots, keys, key)
                if e == -1:
                    # a new context: only while there is room (longer orders need this one)
                    if used[0] >= room:
                        break
                    e = used[0]
                    used[0] += 1
                    keys[e] = key
                    s = _home_slot(key, capacity)
                    while slots[s] != -1:
                        s = (s + np.int64(1)) & mask
                    slots[s] = e
                _count_follower(e, np.int32(tok), nexts, counts, totals)
                learned += 1
    return learned
