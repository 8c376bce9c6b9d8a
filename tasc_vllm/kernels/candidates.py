"""The candidates for the next token and what is known about each: the learned drafting
policy's inputs.

At the end of a sequence (the request's context plus the draft so far) the candidates are

- the ``TOP_K`` followers of each of the three longest contexts the corpus table knows (the
  longest, and the two next shorter: a long context seen once and a shorter one seen often
  disagree in useful ways), with what online learning added to the table;
- the request's own guesses: the follower of its longest earlier match, token for token
  (:func:`tasc_vllm.kernels.lookups.find_context_matches`), with whitespace-only tokens
  skipped, and the follower of the longest earlier match that disagrees with the first;
- the input's next token where the answer reads its input
  (:mod:`tasc_vllm.kernels.input_reading`): a value's first word after a label, or the
  value's next word;
- the ``TOP_K`` followers of the longest context that skips the last run of word and digit
  tokens (a value, a name: :mod:`tasc_vllm.kernels.ngram_table`): ``",`` after a street
  name the corpus never saw, or the key after it;
- the ``TOP_K`` tokens the corpus's answers wrote next where their request's match went on as
  this one's does (:mod:`tasc_vllm.kernels.echoes`): ``": "`` after a parameter's name whose
  schema says ``"type": "string"``;
- the prompt's next item where the answer walks through a list its prompt holds
  (:mod:`tasc_vllm.kernels.next_items`): the parameter after the one the answer wrote last;
- the prompt's token where the corpus's answers copied from after the same answer tokens
  (:mod:`tasc_vllm.kernels.prompt_copies`): a call's first parameter, after the schema's
  ``"properties": {"``.

Each distinct candidate token gets one row of :data:`NUM_FEATURES` numbers (which sources
propose it and how strongly, the contexts' order and size, the token's class); the scorer
(:mod:`tasc_vllm.kernels.scorer`) turns a row into the chance that the model emits that
token next.  Candidate and feature extraction are the same code when drafting, when learning
online and when training on the corpus, so the scorer sees at serving time exactly what it was
trained on.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from tasc_vllm.kernels.echoes import echo_entry, echo_key
from tasc_vllm.kernels.lookups import DIGIT, PUNCT, SPACE, WORD, corpus_entries, run_skipping_entry
from tasc_vllm.kernels.next_items import INTO, MAX_AGREEMENT
from tasc_vllm.kernels.ngram_table import MAX_RUN, TOP_K
from tasc_vllm.kernels.prompt_copies import ORDER as COPY_ORDER
from tasc_vllm.kernels.prompt_copies import copy_guess
from tasc_vllm.kernels.token_classes import JOIN, MIXED, is_content, is_joiner

LEVELS = 3  # corpus contexts used: the longest known and the next shorter ones
MAX_CANDIDATES = (LEVELS + 2) * TOP_K + 6

FEATURES = (
    "bias",
    "share of the longest context",  # count / total among its followers
    "follows the longest context",
    "top follower of the longest context",
    "longest context's order",  # / max_order
    "longest context's size",  # log1p(total) / 8
    "share of the next shorter context",
    "share of the third longest context",
    "longest context learned while serving",
    "request's guess",
    "request's match length",  # / context_max_order
    "request's guess, whitespace skipped",
    "request's match length, whitespace skipped",
    "request's second guess",
    "request's second match length",
    "share of the longest context, also the request's guess",
    "whitespace token",
    "digit token",
    "punctuation token",
    "count in the longest context",  # log1p(count) / 8
    # the main sources again for digit tokens: a digit is copied from the input, where the
    # corpus's counts of digits mislead
    "share of the longest context, digit",
    "count in the longest context, digit",
    "request's guess, digit",
    "request's guess, whitespace skipped, digit",
    "the input's next word, after a copied value",
    "the input's next token, inside a copied value",
    "the input's next token, digit",
    # where the request's match lies: a match in the answer so far repeats the answer's own
    # structure, one in the prompt may run on past the part the answer copies
    "request's guess, matched in the answer",
    "request's guess, whitespace skipped, matched in the answer",
    "request's guess, unknown to every corpus context",  # x the longest context's size
    # the context that skips the last value (run of word and digit tokens)
    "share of the context skipping the last value",
    "order of the context skipping the last value",  # / max_order, for its followers
    "length of the last value",  # / MAX_RUN
    "the input's word goes on",  # inside a value copied from the input, in the middle of a word
    "merged token",  # letters or digits joined to punctuation (TASC-ft's vocabulary)
    # where the value may go on (``calculate`` + ``_``) or close: the closers apart
    "share of the closers of the context skipping the last value",  # among its top followers that close
    "that share, where the request's match closes the value too",
    # what the answers wrote next where their request's match went on as this one's does
    "share of the echo",
    "count in the echo",  # log1p(count) / 8
    # the item after the one the answer wrote last, in a list the prompt holds
    "the prompt's next item",
    "the prompt's next item, leading tokens that agree",  # / MAX_AGREEMENT
    "the prompt's next item, tokens into it",  # / (INTO + 1), 1 / (INTO + 1) for its first token
    # the token after the prompt's anchor that the answers copied from after the same tokens
    "share of the prompt copy",  # of the answers' context
    "the prompt copy's context length",  # / COPY_ORDER
    "the prompt copy's context size",  # log1p(count) / 8
    # the strongest other candidate, by the same measures: a candidate scored alone cannot see
    # that another one is certain (a long request match past a value, where the corpus knows
    # what comes after every value)
    "the best rival's share of the longest context",
    "the best rival's share of the context skipping the last value",
    "the best rival's request match length",
)
NUM_FEATURES = len(FEATURES)
FEATURE_SET = "v1:" + "|".join(FEATURES)  # names a scorer's feature set: a scorer of another set is retrained


class PolicyParams(NamedTuple):
    """The learned policy's scalars, one typed argument."""

    max_order: int  # longest corpus context, in tokens
    ctx_min_order: int  # shortest in-request match used
    ctx_max_order: int  # longest in-request match tried
    corpus_entries: int  # table entries from the index; the ones past it were learned while serving
    min_confidence: float  # drafting stops when the draft's chance of full acceptance falls under this
    vocab_size: int  # token ids at or past this are never drafted


class Matches(NamedTuple):
    """The request's earlier matches at the end of the sequence (position of the guessed token
    and match length, -1 and 0 for none)."""

    ptr: int
    mlen: int
    sptr: int
    slen: int
    aptr: int
    alen: int
    start: int  # the answer's first position (-1: unknown)
    rtok: int  # the input's next token (:func:`tasc_vllm.kernels.input_reading.next_input_token`), -1 for none
    rin: int  # 1 when the answer is inside the value it copies
    rgo: int  # 1 when, inside it, the input's word goes on (``rtok`` continues it)
    iptr: int  # the prompt's next item (:func:`tasc_vllm.kernels.next_items.next_item`): its guessed token, -1 for none
    iagree: int  # leading tokens that agree with the last item's
    iinto: int  # tokens into the item


@njit(cache=True, inline="always")
def _add_unique(cand, nc, t):
    """``t`` appended to ``cand[:nc]`` unless it is there or is no token; the new count."""
    if t < 0:
        return nc
    for c in range(nc):
        if cand[c] == t:
            return nc
    cand[nc] = t
    return nc + 1


@njit(cache=True, inline="always")
def _share_of(e, tok, nexts, counts, totals):
    """``tok``'s share of context ``e``'s followers (0 when it is not among its top ones)."""
    if e < 0 or totals[e] <= 0:
        return 0.0
    for s in range(TOP_K):
        t = nexts[e, s]
        if t < 0:
            break
        if t == tok:
            return counts[e, s] / totals[e]
    return 0.0


@njit(cache=True, inline="always")
def _closes(classes, tok):
    """Whether ``tok`` ends a value rather than going on with it (neither content nor a joiner)."""
    return tok >= 0 and not is_content(classes, tok) and not is_joiner(classes, tok)


@njit(cache=True, inline="always")
def _closing_total(e, nexts, counts, totals, classes):
    """How often context ``e``'s value was closed: its total less its top followers that go on
    with the value (0 for no context)."""
    if e < 0:
        return 0.0
    total = float(totals[e])
    for s in range(TOP_K):
        t = nexts[e, s]
        if t < 0:
            break
        if not _closes(classes, t):
            total -= counts[e, s]
    return total


@njit(cache=True, inline="always")
def _rival_max(feats, nc, src, dst):
    """``feats[c, dst]``: the largest ``feats[., src]`` among the candidates other than ``c``."""
    best = second = 0.0
    at = -1
    for c in range(nc):
        v = feats[c, src]
        if v > best:
            second = best
            best = v
            at = c
        elif v > second:
            second = v
    for c in range(nc):
        feats[c, dst] = second if c == at else best


@njit(cache=True)
def gather(ctx, n_ctx, draft, n_draft, table, echo, copies, params, classes, matches, entries, cand, feats):
    """The distinct candidate tokens after the sequence ``ctx[:n_ctx] + draft[:n_draft]`` into
    ``cand`` and their feature rows into ``feats``; returns how many (at most
    :data:`MAX_CANDIDATES`).  ``echo``: the echo table
    (:class:`tasc_vllm.kernels.echoes.EchoTable`); ``copies``: the copy table
    (:class:`tasc_vllm.kernels.prompt_copies.CopyTable`); ``matches``: the request's guesses
    (:class:`Matches`); ``classes``: one class per token id (may be empty); ``entries``:
    scratch room for ``max_order`` table entries."""
    slots, keys, nexts, counts, totals = table
    found = corpus_entries(ctx, n_ctx, draft, n_draft, slots, keys, params.max_order, entries)[1]
    e1 = entries[found - 1] if found >= 1 else -1
    e2 = entries[found - 2] if found >= 2 else -1
    e3 = entries[found - 3] if found >= 3 else -1
    ec, c_order, run = run_skipping_entry(ctx, n_ctx, draft, n_draft, slots, keys, params.max_order, classes)
    x_tok = ctx[matches.ptr] if 0 <= matches.ptr < n_ctx else -1
    s_tok = ctx[matches.sptr] if 0 <= matches.sptr < n_ctx else -1
    a_tok = ctx[matches.aptr] if 0 <= matches.aptr < n_ctx else -1
    i_tok = ctx[matches.iptr] if 0 <= matches.iptr < n_ctx else -1
    i_agree = matches.iagree / MAX_AGREEMENT
    i_into = (matches.iinto + 1) / (INTO + 1)
    c_ptr, c_share, c_len, c_count = copy_guess(ctx, n_ctx, draft, n_draft, matches.start, copies)
    c_tok = ctx[c_ptr] if 0 <= c_ptr < n_ctx else -1
    c_len_f = c_len / COPY_ORDER
    c_size = np.log1p(c_count) / 8.0
    closing = _closing_total(ec, nexts, counts, totals, classes)
    match_closes = 1.0 if _closes(classes, x_tok) or _closes(classes, s_tok) else 0.0
    nc = 0
    for e in (e1, e2, e3, ec):
        if e < 0:
            continue
        for s in range(TOP_K):
            if nexts[e, s] < 0:
                break
            nc = _add_unique(cand, nc, nexts[e, s])
    for t in (x_tok, s_tok, a_tok, matches.rtok, i_tok, c_tok):
        nc = _add_unique(cand, nc, t)
    ee = echo_entry(echo, echo_key(ctx, n_ctx, matches.ptr))
    e_first = echo.first[ee] if ee >= 0 else 0
    e_last = echo.first[ee + 1] if ee >= 0 else 0
    for j in range(e_first, e_last):
        nc = _add_unique(cand, nc, echo.tokens[j])
    e_total = float(echo.totals[ee]) if ee >= 0 else 0.0
    inv_order = 1.0 / max(params.max_order, 1)
    inv_match = 1.0 / max(params.ctx_max_order, 1)
    size = np.log1p(totals[e1]) / 8.0 if e1 >= 0 else 0.0
    learned = 1.0 if e1 >= params.corpus_entries else 0.0
    # whether the request's matches lie in the answer so far (0 when its start is unknown)
    x_in_answer = 1.0 if 0 <= matches.start <= matches.ptr else 0.0
    s_in_answer = 1.0 if 0 <= matches.start <= matches.sptr else 0.0
    n_classes = classes.shape[0]
    for c in range(nc):
        t = cand[c]
        f = feats[c]
        s1 = 0.0
        top = 0.0
        count1 = 0.0
        if e1 >= 0:
            for s in range(TOP_K):
                if nexts[e1, s] < 0:
                    break
                if nexts[e1, s] == t:
                    s1 = counts[e1, s] / max(totals[e1], 1)
                    count1 = np.log1p(counts[e1, s]) / 8.0
                    top = 1.0 if s == 0 else 0.0
                    break
        x = 1.0 if t == x_tok else 0.0
        sp = 1.0 if t == s_tok else 0.0
        al = 1.0 if t == a_tok else 0.0
        cls = classes[t] if 0 <= t < n_classes else WORD
        f[0] = 1.0
        f[1] = s1
        f[2] = 1.0 if count1 > 0.0 else 0.0
        f[3] = top
        f[4] = found * inv_order
        f[5] = size
        f[6] = _share_of(e2, t, nexts, counts, totals)
        f[7] = _share_of(e3, t, nexts, counts, totals)
        f[8] = learned
        f[9] = x
        f[10] = x * matches.mlen * inv_match
        f[11] = sp
        f[12] = sp * matches.slen * inv_match
        f[13] = al
        f[14] = al * matches.alen * inv_match
        f[15] = s1 * max(x, sp)
        f[16] = 1.0 if cls == SPACE else 0.0
        f[17] = 1.0 if cls == DIGIT else 0.0
        f[18] = 1.0 if cls == PUNCT or cls == JOIN else 0.0
        f[19] = count1
        digit = 1.0 if cls == DIGIT else 0.0
        f[20] = s1 * digit
        f[21] = count1 * digit
        f[22] = x * digit
        f[23] = sp * digit
        rd = 1.0 if t == matches.rtok else 0.0
        f[24] = rd * (1 - matches.rin)
        f[25] = rd * matches.rin
        f[26] = rd * digit
        f[27] = x * x_in_answer
        f[28] = sp * s_in_answer
        known = s1 > 0.0 or f[6] > 0.0 or f[7] > 0.0
        f[29] = 0.0 if known else max(x, sp) * size
        closes = _share_of(ec, t, nexts, counts, totals)
        f[30] = closes
        f[31] = c_order * inv_order if closes > 0.0 else 0.0
        f[32] = min(run, MAX_RUN) / MAX_RUN
        f[33] = float(matches.rgo)
        f[34] = 1.0 if cls == MIXED else 0.0
        closer = closes * totals[ec] / closing if closing > 0.0 and _closes(classes, t) else 0.0
        f[35] = closer
        f[36] = closer * match_closes
        f[37] = 0.0
        f[38] = 0.0
        for j in range(e_first, e_last):
            if echo.tokens[j] == t:
                f[37] = echo.counts[j] / e_total
                f[38] = np.log1p(echo.counts[j]) / 8.0
                break
        it = 1.0 if t == i_tok else 0.0
        f[39] = it
        f[40] = it * i_agree
        f[41] = it * i_into
        ct = 1.0 if t == c_tok else 0.0
        f[42] = ct * c_share
        f[43] = ct * c_len_f
        f[44] = ct * c_size
    _rival_max(feats, nc, 1, 45)
    _rival_max(feats, nc, 30, 46)
    _rival_max(feats, nc, 10, 47)
    return nc
