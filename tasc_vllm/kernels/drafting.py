"""The compiled drafting loop: mixes the corpus n-gram model with n-gram matches inside the
request's own context (prompt and output so far), one draft token at a time.

For each draft position both sources propose:

- the corpus: the ``TOP_K`` next tokens after the longest context (up to ``max_order``
  tokens) found in the corpus table, with probability ``count / (total + alpha)``;
- the context: the token that followed the most recent earlier occurrence of the longest
  suffix (``ctx_min_order``..``ctx_max_order`` tokens) of the request, with probability
  ``m / (m + gamma)`` for a match of ``m`` tokens; matched token for token and with
  whitespace-only tokens skipped, the longer match giving the guess.

Both probabilities go through the online calibration (:mod:`tasc_vllm.kernels.calibration`): once
the proposer has seen how often each kind of guess is right on this task, it uses that rate.

Each candidate scores ``1 - (1 - wc * pc) * (1 - wx * px)`` (either source may vouch for
it), the scores are normalised when they conflict, and drafting stops as soon as the running
product of the chosen tokens' confidences (the chance the whole draft so far is accepted)
falls under ``threshold`` or, with a step cost, stops paying for its verification: long
drafts where the statistics are sharp, none where they are not. The draft may switch source
at any position.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from tasc_vllm.kernels.calibration import calibrated, context_bucket, corpus_bucket, draft_bucket, spaced_bucket
from tasc_vllm.kernels.lookups import find_context_match, is_space, longest_corpus_entry, next_non_space, takes_spaced
from tasc_vllm.kernels.ngram_table import TOP_K


@njit(cache=True)
def draft_one(ctx, n_ctx, k, table, params, space, cal, out, out_conf):
    """Draft up to ``k`` tokens after ``ctx[:n_ctx]`` into ``out``, with the draft's running
    confidence after each token in ``out_conf``; returns how many. ``table``: the corpus
    table's arrays (:class:`tasc_vllm.kernels.ngram_table.TableView`); ``params``: the scalars
    (:class:`tasc_vllm.kernels.params.DraftParams`). ``cal``: the calibration
    score (:func:`tasc_vllm.kernels.calibration.new_calibration`).  ``space``: one flag per token id,
    set for whitespace-only tokens; when it is not empty, the request is also matched with
    those tokens skipped (:func:`tasc_vllm.kernels.lookups.find_context_match`), and that match's
    guess is the request's when it is the longer one.

    With ``step_cost`` > 0 (a step's cost per row, in verified tokens) a token is drafted only
    while it raises the draft's expected yield per unit of cost: its chance of acceptance
    must beat ``expected tokens so far / (step_cost + tokens drafted so far)``.  The first
    token's bar is ``1 / step_cost``; later ones must beat the draft's running average.
    The first ``free_draft`` tokens cost nothing (the engine verifies that many at the price
    of none): they need only ``threshold``, and only the tokens past them count as cost."""
    slots, keys, nexts, counts, totals = table
    max_order, ctx_min_order, ctx_max_order = params.max_order, params.ctx_min_order, params.ctx_max_order
    w_corpus, w_context, alpha, gamma = params.w_corpus, params.w_context, params.alpha, params.gamma
    threshold, step_cost, free_draft, vocab_size = params.threshold, params.step_cost, params.free_draft, params.vocab_size
    n_draft = 0
    cum = 1.0
    expected = 1.0  # tokens the step yields: the verified token plus the draft's expected accepted ones
    cand_tok = np.empty(TOP_K + 1, dtype=np.int64)
    cand_score = np.empty(TOP_K + 1, dtype=np.float64)
    spaced = space.shape[0] > 0
    exact = space[:0]  # no token skipped
    ptr, mlen = find_context_match(ctx, n_ctx, out, 0, ctx_min_order, ctx_max_order, exact)
    sptr, slen = -1, 0
    if spaced:
        sptr, slen = find_context_match(ctx, n_ctx, out, 0, ctx_min_order, ctx_max_order, space)
    while n_draft < k:
        # ---- corpus: longest context with statistics
        entry, order = longest_corpus_entry(ctx, n_ctx, out, n_draft, slots, keys, max_order)
        # ---- context: follower of the longest earlier match, whitespace skipped or not
        x_tok = -1
        px = 0.0
        if spaced and takes_spaced(n_ctx, ptr, mlen, sptr, slen):
            x_tok = ctx[sptr]
            px = calibrated(cal, spaced_bucket(slen), slen / (slen + gamma))
        elif ptr >= 0 and ptr < n_ctx:
            x_tok = ctx[ptr]
            px = calibrated(cal, context_bucket(mlen), mlen / (mlen + gamma))
        # ---- mix the candidates
        nc = 0
        if entry >= 0:
            denom = totals[entry] + alpha
            for s in range(TOP_K):
                t = nexts[entry, s]
                if t < 0:
                    break
                pc = counts[entry, s] / denom
                pc = calibrated(cal, corpus_bucket(order, pc), pc)
                sx = w_context * px if t == x_tok else 0.0
                cand_tok[nc] = t
                cand_score[nc] = 1.0 - (1.0 - w_corpus * pc) * (1.0 - sx)
                nc += 1
        if x_tok >= 0:
            seen = False
            for c in range(nc):
                if cand_tok[c] == x_tok:
                    seen = True
            if not seen:
                cand_tok[nc] = x_tok
                cand_score[nc] = w_context * px
                nc += 1
        if nc == 0:
            break
        best = 0
        ssum = 0.0
        for c in range(nc):
            ssum += cand_score[c]
            if cand_score[c] > cand_score[best]:
                best = c
        conf = cand_score[best]
        if ssum > 1.0:
            conf = conf / ssum
        cum *= conf
        t_best = cand_tok[best]
        q = calibrated(cal, draft_bucket(cum), cum)
        need = threshold
        if step_cost > 0.0 and n_draft >= free_draft:
            need = max(threshold, expected / (step_cost + n_draft - free_draft))
        if q < need or t_best < 0 or t_best >= vocab_size:
            break
        expected += q
        out[n_draft] = t_best
        out_conf[n_draft] = cum
        n_draft += 1
        # ---- advance the context matches, or search again when the draft left them
        if ptr >= 0 and ptr < n_ctx and t_best == ctx[ptr]:
            ptr += 1
            mlen = min(mlen + 1, ctx_max_order)
        else:
            ptr, mlen = find_context_match(ctx, n_ctx, out, n_draft, ctx_min_order, ctx_max_order, exact)
        if spaced and not is_space(space, t_best):  # a whitespace token leaves the spaced match as it is
            if sptr >= 0 and sptr < n_ctx and t_best == ctx[sptr]:
                sptr = next_non_space(ctx, n_ctx, space, sptr + 1)
                slen = min(slen + 1, ctx_max_order)
            else:
                sptr, slen = find_context_match(ctx, n_ctx, out, n_draft, ctx_min_order, ctx_max_order, space)
    return n_draft


@njit(cache=True)
def draft_batch(rows, lengths, token_ids, limits, table, params, space, cal, out, out_len, out_conf):
    """Draft for each row index in ``rows`` (context ``token_ids[r, :lengths[r]]``, at most
    ``limits[i]`` tokens) into ``out[i]``/``out_len[i]``/``out_conf[i]``."""
    for i in range(rows.shape[0]):
        r = rows[i]
        out_len[i] = draft_one(token_ids[r], lengths[r], limits[i], table, params, space, cal, out[i], out_conf[i])
