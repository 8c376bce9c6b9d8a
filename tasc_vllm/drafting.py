"""The compiled drafting loop: mixes the corpus n-gram model with n-gram matches inside the
request's own context (prompt and output so far), one draft token at a time.

For each draft position both sources propose:

- the corpus: the ``TOP_K`` next tokens after the longest context (up to ``max_order``
  tokens) found in the corpus table, with probability ``count / (total + alpha)``;
- the context: the token that followed the most recent earlier occurrence of the longest
  suffix (``ctx_min_order``..``ctx_max_order`` tokens) of the request, with probability
  ``m / (m + gamma)`` for a match of ``m`` tokens.

Each candidate scores ``1 - (1 - wc * pc) * (1 - wx * px)`` (either source may vouch for
it), the scores are normalised when they conflict, and drafting stops as soon as the running
product of the chosen tokens' confidences falls under ``threshold``: long drafts where the
statistics are sharp, none where they are not. The draft may switch source at any position.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from tasc_vllm.ngram_table import TOP_K, _SEED, finalize, lookup, mix


@njit(cache=True, inline="always")
def _token_at(ctx, n_ctx, draft, i):
    if i < n_ctx:
        return ctx[i]
    return draft[i - n_ctx]


@njit(cache=True)
def _find_context_match(ctx, n_ctx, draft, n_draft, min_order, max_order):
    """Longest (then most recent) earlier occurrence of the sequence's suffix.

    Returns (position of the token that followed it, match length) or (-1, 0)."""
    total = n_ctx + n_draft
    if total < 2 or max_order < 1:
        return -1, 0
    last = _token_at(ctx, n_ctx, draft, total - 1)
    best_pos = -1
    best_len = 0
    # candidate occurrence ends at j (inclusive); its follower ctx[j + 1] must be in ctx
    j = min(total - 2, n_ctx - 2)
    while j >= 0:
        if ctx[j] == last:
            m = 1
            while m < max_order and j - m >= 0 and ctx[j - m] == _token_at(ctx, n_ctx, draft, total - 1 - m):
                m += 1
            if m > best_len:
                best_len = m
                best_pos = j + 1
                if m >= max_order:
                    break
        j -= 1
    if best_len < min_order:
        return -1, 0
    return best_pos, best_len


@njit(cache=True)
def draft_one(
    ctx,
    n_ctx,
    k,
    slots,
    keys,
    nexts,
    counts,
    totals,
    max_order,
    ctx_min_order,
    ctx_max_order,
    w_corpus,
    w_context,
    alpha,
    gamma,
    threshold,
    vocab_size,
    out,
):
    """Draft up to ``k`` tokens after ``ctx[:n_ctx]`` into ``out``; returns how many."""
    n_draft = 0
    cum = 1.0
    cand_tok = np.empty(TOP_K + 1, dtype=np.int64)
    cand_score = np.empty(TOP_K + 1, dtype=np.float64)
    ptr, mlen = _find_context_match(ctx, n_ctx, out, 0, ctx_min_order, ctx_max_order)
    while n_draft < k:
        total_len = n_ctx + n_draft
        # ---- corpus: longest context with statistics
        entry = -1
        h = _SEED
        lim = min(max_order, total_len)
        for order in range(1, lim + 1):
            tok = _token_at(ctx, n_ctx, out, total_len - order)
            if tok < 0:
                break
            h = mix(h, tok)
            e = lookup(slots, keys, finalize(h, order))
            if e == -1:
                break
            entry = e
        # ---- context: follower of the longest earlier match
        x_tok = -1
        px = 0.0
        if ptr >= 0 and ptr < n_ctx:
            x_tok = ctx[ptr]
            px = mlen / (mlen + gamma)
        # ---- mix the candidates
        nc = 0
        if entry >= 0:
            denom = totals[entry] + alpha
            for s in range(TOP_K):
                t = nexts[entry, s]
                if t < 0:
                    break
                pc = counts[entry, s] / denom
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
        if cum < threshold or t_best < 0 or t_best >= vocab_size:
            break
        out[n_draft] = t_best
        n_draft += 1
        # ---- advance the context match, or search again when the draft left it
        if x_tok >= 0 and t_best == x_tok:
            ptr += 1
            mlen = min(mlen + 1, ctx_max_order)
        else:
            ptr, mlen = _find_context_match(ctx, n_ctx, out, n_draft, ctx_min_order, ctx_max_order)
    return n_draft


@njit(cache=True)
def draft_batch(
    rows,
    lengths,
    token_ids,
    limits,
    slots,
    keys,
    nexts,
    counts,
    totals,
    max_order,
    ctx_min_order,
    ctx_max_order,
    w_corpus,
    w_context,
    alpha,
    gamma,
    threshold,
    vocab_size,
    out,
    out_len,
):
    """Draft for each row index in ``rows`` (context ``token_ids[r, :lengths[r]]``, at most
    ``limits[i]`` tokens) into ``out[i]``/``out_len[i]``."""
    for i in range(rows.shape[0]):
        r = rows[i]
        out_len[i] = draft_one(
            token_ids[r],
            lengths[r],
            limits[i],
            slots,
            keys,
            nexts,
            counts,
            totals,
            max_order,
            ctx_min_order,
            ctx_max_order,
            w_corpus,
            w_context,
            alpha,
            gamma,
            threshold,
            vocab_size,
            out[i],
        )
