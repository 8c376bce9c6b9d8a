"""The scorer's training examples: the corpus replayed as the proposer would see it."""

from __future__ import annotations

import numpy as np
from numba import njit

from tasc_vllm.kernels.echoes import echo_key
from tasc_vllm.kernels.candidates import MAX_CANDIDATES, NUM_FEATURES, gather
from tasc_vllm.kernels.input_reading import answer_start, answer_start_after
from tasc_vllm.kernels.learned_drafting import request_matches
from tasc_vllm.kernels.prompt_copies import ORDER, copy_examples


@njit(cache=True)
def answer_positions(seqs, offsets, starts, header):
    """Every answer position of the sequences ``seqs[offsets[s]:offsets[s + 1]]`` (a prompt
    and its answer, the answer's first predicted token at ``starts[s]``), in order, as rows of
    (sequence number, position, the answer's start as the proposer reads it there)."""
    total = 0
    for s in range(offsets.shape[0] - 1):
        total += max(0, offsets[s + 1] - offsets[s] - max(starts[s], 1))
    out = np.empty((total, 3), dtype=np.int64)
    j = 0
    for s in range(offsets.shape[0] - 1):
        seq = seqs[offsets[s]:offsets[s + 1]]
        first = max(starts[s], 1)
        start = answer_start(seq, first, header)
        for p in range(first, seq.shape[0]):
            if p > first:
                start = answer_start_after(seq, p, header, start)
            out[j, 0] = s
            out[j, 1] = p
            out[j, 2] = start
            j += 1
    return out


@njit(cache=True)
def training_rows(seqs, offsets, starts, table, echo, copies, params, space, classes, text, X, y, group,
                  first_group):
    """For each sequence of :func:`answer_positions`, with the n-gram ``table``, the ``echo``
    table and the ``copies`` table built without it, the feature row of every candidate at
    every answer position into ``X`` and whether it was the next token into ``y``, until ``X``
    is full; each row's position, numbered from ``first_group``, into ``group``.  Returns
    (rows written, positions used)."""
    cand = np.empty(MAX_CANDIDATES, dtype=np.int64)
    feats = np.empty((MAX_CANDIDATES, NUM_FEATURES), dtype=np.float64)
    entries = np.empty(max(params.max_order, 1), dtype=np.int64)
    n = 0
    cap = X.shape[0]
    at = answer_positions(seqs, offsets, starts, text.header)
    for positions in range(at.shape[0]):
        s, p, start = at[positions, 0], at[positions, 1], at[positions, 2]
        seq = seqs[offsets[s]:offsets[s + 1]]
        m = request_matches(seq, p, seq, 0, params, space, classes, text, start)
        nc = gather(seq, p, seq, 0, table, echo, copies, params, classes, m, entries, cand, feats)
        if n + nc > cap:
            return n, positions
        for c in range(nc):
            X[n] = feats[c]
            y[n] = 1.0 if cand[c] == seq[p] else 0.0
            group[n] = first_group + positions
            n += 1
    return n, at.shape[0]


@njit(cache=True)
def echo_pairs(seqs, offsets, starts, params, space, classes, text, keys, tokens, owner):
    """For each sequence of :func:`answer_positions`, every answer position's echo key (the
    request's match going on: :func:`tasc_vllm.kernels.echoes.echo_key`, 0 for none) into
    ``keys`` and its token into ``tokens``, the sequence's number into ``owner``, until they
    are full.  Returns the pairs written."""
    at = answer_positions(seqs, offsets, starts, text.header)
    n = min(at.shape[0], keys.shape[0])
    for j in range(n):
        s, p, start = at[j, 0], at[j, 1], at[j, 2]
        seq = seqs[offsets[s]:offsets[s + 1]]
        m = request_matches(seq, p, seq, 0, params, space, classes, text, start)
        keys[j] = echo_key(seq, p, m.ptr)
        tokens[j] = seq[p]
        owner[j] = s
    return n


@njit(cache=True)
def copy_pairs(seqs, offsets, starts, classes, text, ctx_keys, ctx_owner, pair_keys, pair_anchors, pair_weights,
               pair_owner):
    """For each sequence of :func:`answer_positions`, the copy table's examples
    (:func:`tasc_vllm.kernels.prompt_copies.copy_examples`) and the sequence's number of each,
    until the context arrays are full.  Returns (contexts, pairs) written."""
    at = answer_positions(seqs, offsets, starts, text.header)
    n_keys = n_pairs = 0
    for j in range(at.shape[0]):
        s, p, start = at[j, 0], at[j, 1], at[j, 2]
        seq = seqs[offsets[s]:offsets[s + 1]]
        if n_keys + ORDER > ctx_keys.shape[0]:
            break
        k, n = copy_examples(seq, p, start, classes, ctx_keys, n_keys, pair_keys, pair_anchors, pair_weights,
                             n_pairs)
        ctx_owner[n_keys:k] = s
        pair_owner[n_pairs:n] = s
        n_keys, n_pairs = k, n
    return n_keys, n_pairs
