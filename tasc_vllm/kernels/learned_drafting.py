"""The learned drafting policy's compiled loops: choose each draft token with the scorer,
then cut the batch's drafts where the measured step cost says a further token stops paying.

Drafting (:func:`draft_one`): at each position the candidates (:mod:`tasc_vllm.kernels.candidates`)
are scored (:mod:`tasc_vllm.kernels.scorer`); the likeliest one is drafted and the draft's
chance of being accepted in full, the product of the chosen tokens' probabilities, is
corrected by the draft-level calibration (:func:`tasc_vllm.kernels.calibration.draft_bucket`:
what fraction of drafted tokens at that confidence the model accepted).  A row drafts while
that chance stays above ``min_confidence``.

Cutting (:func:`cut_batch`): a step that verifies ``N`` tokens (one per row plus the drafts)
takes ``fixed + per_row * rows + per_token * max(0, N - knee)`` (:mod:`tasc_vllm.step_timing`
measures it).  It yields ``rows`` tokens plus the drafts' expected accepted tokens, the sum of
their chances.  Every draft token's chance only falls along its row, so keeping the ``D``
likeliest tokens of the whole batch keeps each row's draft a prefix, and the best ``D`` is
the one with the most expected tokens per unit of time.  A batch of one gets exactly the
length that maximises its own yield per cost; a large batch drafts only what is nearly sure.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from tasc_vllm.kernels.calibration import calibrated, draft_bucket
from tasc_vllm.kernels.candidates import MAX_CANDIDATES, NUM_FEATURES, Matches, gather
from tasc_vllm.kernels.input_reading import answer_start, answer_start_after, next_input_token, word_goes_on
from tasc_vllm.kernels.lookups import find_context_matches, is_space, next_non_space
from tasc_vllm.kernels.next_items import next_item
from tasc_vllm.kernels.scorer import best_candidate, learn_step


@njit(cache=True)
def request_matches(ctx, n_ctx, draft, n_draft, params, space, classes, text, start):
    """The request's guesses at the end of the sequence (:class:`Matches`); ``text``: the
    tokens' texts (:class:`tasc_vllm.kernels.input_reading.InputText`); ``start``: the
    answer's first position in ``ctx[:n_ctx]`` (:func:`tasc_vllm.kernels.input_reading.answer_start`)."""
    ptr, mlen, aptr, alen = find_context_matches(ctx, n_ctx, draft, n_draft, params.ctx_min_order,
                                                 params.ctx_max_order, space[:0])
    sptr, slen = -1, 0
    if space.shape[0] > 0:
        sptr, slen, _, _ = find_context_matches(ctx, n_ctx, draft, n_draft, params.ctx_min_order,
                                                params.ctx_max_order, space)
    rtok, rin = next_input_token(ctx, n_ctx, draft, n_draft, classes, text, start)
    iptr, iagree, iinto = next_item(ctx, n_ctx, draft, n_draft, start)
    return Matches(ptr, mlen, sptr, slen, aptr, alen, start, rtok, rin, word_goes_on(text, rtok, rin), iptr, iagree,
                   iinto)


@njit(cache=True)
def _advance(ctx, n_ctx, out, n_draft, tok, m, params, space, classes, text):
    """The request's guesses after ``tok`` joined the draft: a match whose guess it was goes
    on, the others are searched again (the prompt's next item too: it is read afresh at every
    position, as the scorer's training reads it)."""
    if 0 <= m.ptr < n_ctx and tok == ctx[m.ptr]:
        ptr, mlen = m.ptr + 1, min(m.mlen + 1, params.ctx_max_order)
        if 0 <= m.aptr < n_ctx and tok == ctx[m.aptr]:
            aptr, alen = m.aptr + 1, min(m.alen + 1, params.ctx_max_order)
        else:
            aptr, alen = -1, 0
    else:
        ptr, mlen, aptr, alen = find_context_matches(ctx, n_ctx, out, n_draft, params.ctx_min_order,
                                                     params.ctx_max_order, space[:0])
    sptr, slen = m.sptr, m.slen
    if space.shape[0] > 0 and not is_space(space, tok):  # a whitespace token leaves the spaced match as it is
        if 0 <= sptr < n_ctx and tok == ctx[sptr]:
            sptr = next_non_space(ctx, n_ctx, space, sptr + 1)
            slen = min(slen + 1, params.ctx_max_order)
        else:
            sptr, slen, _, _ = find_context_matches(ctx, n_ctx, out, n_draft, params.ctx_min_order,
                                                    params.ctx_max_order, space)
    rtok, rin = next_input_token(ctx, n_ctx, out, n_draft, classes, text, m.start)
    iptr, iagree, iinto = next_item(ctx, n_ctx, out, n_draft, m.start)
    return Matches(ptr, mlen, sptr, slen, aptr, alen, m.start, rtok, rin, word_goes_on(text, rtok, rin), iptr, iagree,
                   iinto)


@njit(cache=True)
def draft_one(ctx, n_ctx, k, table, echo, copies, params, space, classes, text, trees, weights, cal, out, out_conf,
              cand, feats, entries):
    """Draft up to ``k`` tokens after ``ctx[:n_ctx]`` into ``out``, with the draft's calibrated
    chance of full acceptance after each token in ``out_conf`` (never rising); returns how
    many.  ``cand``, ``feats``, ``entries``: scratch room."""
    n_draft = 0
    cum = 1.0
    last_q = 1.0
    m = request_matches(ctx, n_ctx, out, 0, params, space, classes, text, answer_start(ctx, n_ctx, text.header))
    while n_draft < k:
        nc = gather(ctx, n_ctx, out, n_draft, table, echo, copies, params, classes, m, entries, cand, feats)
        if nc == 0:
            break
        c, p = best_candidate(trees, weights, feats, nc)
        tok = cand[c]
        if tok < 0 or tok >= params.vocab_size:
            break
        cum *= p
        q = min(last_q, calibrated(cal, draft_bucket(cum), cum))
        if q < params.min_confidence:
            break
        out[n_draft] = tok
        out_conf[n_draft] = cum
        n_draft += 1
        last_q = q
        m = _advance(ctx, n_ctx, out, n_draft, tok, m, params, space, classes, text)
    return n_draft


@njit(cache=True)
def draft_batch(rows, lengths, token_ids, limits, table, echo, copies, params, space, classes, text, trees, weights,
                cal, out, out_len, out_conf):
    """Draft for each row index in ``rows`` (context ``token_ids[r, :lengths[r]]``, at most
    ``limits[i]`` tokens) into ``out[i]``/``out_len[i]``/``out_conf[i]``."""
    cand = np.empty(MAX_CANDIDATES, dtype=np.int64)
    feats = np.empty((MAX_CANDIDATES, NUM_FEATURES), dtype=np.float64)
    entries = np.empty(max(params.max_order, 1), dtype=np.int64)
    for i in range(rows.shape[0]):
        r = rows[i]
        out_len[i] = draft_one(token_ids[r], lengths[r], limits[i], table, echo, copies, params, space, classes, text,
                               trees, weights, cal, out[i], out_conf[i], cand, feats, entries)


@njit(cache=True)
def cut_batch(n_rows, m, out_len, out_conf, cal, cost):
    """Cut the ``m`` drafting rows' drafts (``out_len[:m]``, in place) to the lengths that
    maximise expected tokens per unit of step time, for a step of ``n_rows`` requests.
    ``cost``: (fixed, per_row, per_token, knee) of :mod:`tasc_vllm.step_timing`.  Returns the
    tokens kept."""
    fixed, per_row, per_token, knee = cost[0], cost[1], cost[2], cost[3]
    total = 0
    for i in range(m):
        total += out_len[i]
    if total == 0:
        return 0
    vals = np.empty(total, dtype=np.float64)
    owner = np.empty(total, dtype=np.int64)
    j = 0
    for i in range(m):
        last = 1.0
        for t in range(out_len[i]):
            q = min(last, calibrated(cal, draft_bucket(out_conf[i, t]), out_conf[i, t]))
            last = q
            vals[j] = q
            owner[j] = i
            j += 1
    order = np.argsort(-vals, kind="mergesort")
    base_time = fixed + per_row * n_rows
    expected = float(n_rows)
    best_d = 0
    best_rate = expected / (base_time + per_token * max(0.0, n_rows - knee))
    for d in range(1, total + 1):
        expected += vals[order[d - 1]]
        rate = expected / (base_time + per_token * max(0.0, n_rows + d - knee))
        if rate > best_rate:
            best_rate = rate
            best_d = d
    keep = np.zeros(m, dtype=np.int64)
    for d in range(best_d):
        keep[owner[order[d]]] += 1
    kept = 0
    for i in range(m):
        out_len[i] = keep[i]
        kept += keep[i]
    return kept


@njit(cache=True)
def learn_batch(rows, lengths, new_tokens, token_ids, table, echo, copies, params, space, classes, text, trees, weights,
                anchor):
    """Update the scorer on each row's last ``new_tokens[i]`` tokens: the candidates as they
    stood before each token, labelled by whether they were it.  Returns the positions used."""
    cand = np.empty(MAX_CANDIDATES, dtype=np.int64)
    feats = np.empty((MAX_CANDIDATES, NUM_FEATURES), dtype=np.float64)
    entries = np.empty(max(params.max_order, 1), dtype=np.int64)
    used = 0
    for i in range(rows.shape[0]):
        r = rows[i]
        row = token_ids[r]
        n = lengths[r]
        first = max(1, n - new_tokens[i])
        start = answer_start(row, first, text.header)
        for p in range(first, n):
            if p > first:
                start = answer_start_after(row, p, text.header, start)
            tok = row[p]
            if tok < 0:
                continue
            m = request_matches(row, p, row, 0, params, space, classes, text, start)
            nc = gather(row, p, row, 0, table, echo, copies, params, classes, m, entries, cand, feats)
            if nc:
                learn_step(trees, weights, anchor, feats, cand, nc, tok)
                used += 1
    return used
