"""The scorer's training examples: the corpus replayed as the proposer would see it."""

from __future__ import annotations

import numpy as np
from numba import njit

from tasc_vllm.kernels.echoes import echo_key
from tasc_vllm.kernels.candidates import MAX_CANDIDATES, NUM_FEATURES, gather
from tasc_vllm.kernels.input_reading import answer_start, answer_start_after
from tasc_vllm.kernels.learned_drafting import request_matches


@njit(cache=True)
def training_rows(seqs, offsets, starts, table, echo, params, space, classes, text, X, y, group, first_group):
    """For each sequence ``seqs[offsets[s]:offsets[s + 1]]`` (a prompt and its answer, the
    answer's first predicted token at ``starts[s]``), with the n-gram ``table`` and the ``echo``
    table built without them, the feature row of every candidate at
    every answer position into ``X`` and whether it was the next token into ``y``, until
    ``X`` is full; each row's position, numbered from ``first_group``, into ``group``.  Returns
    (rows written, positions used)."""
    cand = np.empty(MAX_CANDIDATES, dtype=np.int64)
    feats = np.empty((MAX_CANDIDATES, NUM_FEATURES), dtype=np.float64)
    entries = np.empty(max(params.max_order, 1), dtype=np.int64)
    n = 0
    positions = 0
    cap = X.shape[0]
    for s in range(offsets.shape[0] - 1):
        seq = seqs[offsets[s]:offsets[s + 1]]
        first = max(starts[s], 1)
        start = answer_start(seq, first, text.header)
        for p in range(first, seq.shape[0]):
            if p > first:
                start = answer_start_after(seq, p, text.header, start)
            m = request_matches(seq, p, seq, 0, params, space, classes, text, start)
            nc = gather(seq, p, seq, 0, table, echo, params, classes, m, entries, cand, feats)
            if n + nc > cap:
                return n, positions
            for c in range(nc):
                X[n] = feats[c]
                y[n] = 1.0 if cand[c] == seq[p] else 0.0
                group[n] = first_group + positions
                n += 1
            positions += 1
    return n, positions


@njit(cache=True)
def echo_pairs(seqs, offsets, starts, params, space, classes, text, keys, tokens, owner):
    """For each sequence as in :func:`training_rows`, every answer position's echo key (the
    request's match going on: :func:`tasc_vllm.kernels.echoes.echo_key`, 0 for none) into
    ``keys`` and its token into ``tokens``, the sequence's number into ``owner``, until they
    are full.  Returns the pairs written."""
    n = 0
    cap = keys.shape[0]
    for s in range(offsets.shape[0] - 1):
        seq = seqs[offsets[s]:offsets[s + 1]]
        first = max(starts[s], 1)
        start = answer_start(seq, first, text.header)
        for p in range(first, seq.shape[0]):
            if n >= cap:
                return n
            if p > first:
                start = answer_start_after(seq, p, text.header, start)
            m = request_matches(seq, p, seq, 0, params, space, classes, text, start)
            keys[n] = echo_key(seq, p, m.ptr)
            tokens[n] = seq[p]
            owner[n] = s
            n += 1
    return n
