"""The lookups the draft sources make at the end of a sequence (context plus draft so far):
the longest context the corpus table knows, the longest one that skips the last value, and
the longest earlier match of the sequence's suffix inside the request itself."""

from __future__ import annotations

import numpy as np
from numba import njit

from tasc_vllm.kernels.ngram_table import _SEED, MAX_RUN, MAX_TAIL, RUN_MARK, finalize, lookup, mix
from tasc_vllm.kernels.token_classes import DIGIT, PUNCT, SPACE, WORD, is_content  # noqa: F401 (re-exported)
from tasc_vllm.kernels.token_classes import is_joiner


@njit(cache=True, inline="always")
def token_at(ctx, n_ctx, draft, i):
    if i < n_ctx:
        return ctx[i]
    return draft[i - n_ctx]


@njit(cache=True)
def first_occurrence(ctx, needle, lo, hi):
    """The first position ``q`` in ``lo..hi - len(needle)`` where ``ctx[q:q + len(needle)]``
    holds ``needle``, or -1."""
    length = needle.shape[0]
    for q in range(lo, hi - length + 1):
        same = True
        for i in range(length):
            if ctx[q + i] != needle[i]:
                same = False
                break
        if same:
            return q
    return -1


@njit(cache=True)
def corpus_entries(ctx, n_ctx, draft, n_draft, slots, keys, max_order, entries):
    """The table entries of the contexts of order 1, 2, ... ending the sequence, up to the
    first one the table does not know (into ``entries[0..]`` when it has room; it may be
    empty).  Returns (the longest one's entry, its order), or (-1, 0) when not even the last
    token is known."""
    total = n_ctx + n_draft
    entry = -1
    found = 0
    h = _SEED
    for order in range(1, min(max_order, total) + 1):
        tok = token_at(ctx, n_ctx, draft, total - order)
        if tok < 0:
            break
        h = mix(h, tok)
        e = lookup(slots, keys, finalize(h, order))
        if e == -1:
            break
        if found < entries.shape[0]:
            entries[found] = e
        entry = e
        found = order
    return entry, found


@njit(cache=True)
def run_skipping_entry(ctx, n_ctx, draft, n_draft, slots, keys, max_order, classes):
    """The table entry of the longest known context that skips the sequence's last run of
    word and digit tokens, joiners such as ``_`` between them included
    (:mod:`tasc_vllm.kernels.ngram_table`): the tokens before the run, the wildcard, and the
    tokens after it, when the sequence ends at most :data:`MAX_TAIL` tokens after the run.
    Returns (entry, the order of the part before the run, the run's length); (-1, 0, run
    length) when none is known."""
    total = n_ctx + n_draft
    e = total - 1
    while e >= 0 and total - 1 - e <= MAX_TAIL and not is_content(classes, token_at(ctx, n_ctx, draft, e)):
        if token_at(ctx, n_ctx, draft, e) < 0:
            return -1, 0, 0
        e -= 1
    tail = total - 1 - e
    if e < 0 or tail > MAX_TAIL:
        return -1, 0, 0
    s = e - 1  # s: the position before the run (a joiner counts in it only between content tokens)
    while s >= 0 and e - s <= MAX_RUN:
        if is_content(classes, token_at(ctx, n_ctx, draft, s)):
            s -= 1
        elif s >= 1 and is_joiner(classes, token_at(ctx, n_ctx, draft, s)) \
                and is_content(classes, token_at(ctx, n_ctx, draft, s - 1)):
            s -= 2
        else:
            break
    run = e - s
    if run > MAX_RUN or s < 0:
        return -1, 0, run
    h = _SEED
    for q in range(total - 1, e, -1):
        h = mix(h, token_at(ctx, n_ctx, draft, q))
    h = mix(h, RUN_MARK)
    entry = -1
    found = 0
    for order in range(1, min(max_order, s + 1) + 1):
        tok = token_at(ctx, n_ctx, draft, s - order + 1)
        if tok < 0:
            break
        h = mix(h, tok)
        x = lookup(slots, keys, finalize(h, order + 1 + tail))
        if x == -1:
            break
        entry = x
        found = order
    return entry, found, run


@njit(cache=True)
def longest_corpus_entry(ctx, n_ctx, draft, n_draft, slots, keys, max_order):
    """Table entry of the longest (up to ``max_order`` tokens) known context ending the
    sequence, and its order; (-1, 0) when not even the last token is known."""
    return corpus_entries(ctx, n_ctx, draft, n_draft, slots, keys, max_order, np.empty(0, dtype=np.int64))


@njit(cache=True, inline="always")
def is_space(space, tok):
    """Whether ``tok`` is a whitespace-only token (``space``: one flag per token id)."""
    return tok >= 0 and tok < space.shape[0] and space[tok] != 0


@njit(cache=True)
def next_non_space(ctx, n_ctx, space, p):
    """The first position from ``p`` on in ``ctx[:n_ctx]`` that holds no whitespace-only
    token, or ``n_ctx``."""
    while p < n_ctx and is_space(space, ctx[p]):
        p += 1
    return p


@njit(cache=True)
def find_context_matches(ctx, n_ctx, draft, n_draft, min_order, max_order, space):
    """Longest (then most recent) earlier occurrence of the sequence's suffix, with the tokens
    ``space`` flags (whitespace only) skipped on both sides: matched that way, an answer that
    lays out with newlines and indents what its prompt holds on one line still finds it.
    ``space`` empty (``space[:0]``): token for token.  Also the longest (then most recent)
    earlier occurrence whose follower differs from that one's: the request's second guess.

    Returns (position of the first unskipped token that followed the match, match length in
    unskipped tokens, the same for the second guess); (-1, 0) for a guess there is not."""
    total = n_ctx + n_draft
    end = total - 1
    while end >= 0 and is_space(space, token_at(ctx, n_ctx, draft, end)):
        end -= 1
    if end < 1 or max_order < 1:
        return -1, 0, -1, 0
    last = token_at(ctx, n_ctx, draft, end)
    best_pos = -1
    best_len = 0
    alt_pos = -1
    alt_len = 0
    # candidate occurrence ends at j (inclusive); its follower must be in ctx
    j = min(end - 1, n_ctx - 2)
    while j >= 0:
        if ctx[j] == last:
            m = 1
            a = j - 1
            b = end - 1
            while m < max_order:
                while a >= 0 and is_space(space, ctx[a]):
                    a -= 1
                while b >= 0 and is_space(space, token_at(ctx, n_ctx, draft, b)):
                    b -= 1
                if a < 0 or b < 0 or ctx[a] != token_at(ctx, n_ctx, draft, b):
                    break
                m += 1
                a -= 1
                b -= 1
            if m > alt_len:
                f = next_non_space(ctx, n_ctx, space, j + 1)
                if f < n_ctx:
                    if m > best_len:
                        if best_pos >= 0 and ctx[best_pos] != ctx[f]:
                            alt_pos, alt_len = best_pos, best_len
                        elif alt_pos >= 0 and ctx[alt_pos] == ctx[f]:
                            alt_pos, alt_len = -1, 0
                        best_len = m
                        best_pos = f
                        if m >= max_order:
                            break
                    elif ctx[f] != ctx[best_pos]:
                        alt_pos, alt_len = f, m
        j -= 1
    if best_len < min_order:
        return -1, 0, -1, 0
    if alt_len < min_order:
        alt_pos, alt_len = -1, 0
    return best_pos, best_len, alt_pos, alt_len


@njit(cache=True)
def find_context_match(ctx, n_ctx, draft, n_draft, min_order, max_order, space):
    """The request's first guess of :func:`find_context_matches`: (position of its token,
    match length) or (-1, 0)."""
    pos, m, _, _ = find_context_matches(ctx, n_ctx, draft, n_draft, min_order, max_order, space)
    return pos, m


@njit(cache=True, inline="always")
def takes_spaced(n_ctx, ptr, mlen, sptr, slen):
    """Whether the request's guess comes from the spaced match (``sptr``, ``slen``) rather than
    the token-for-token one (``ptr``, ``mlen``): it has a follower and is the longer match."""
    exact = mlen if 0 <= ptr < n_ctx else 0
    return 0 <= sptr < n_ctx and slen > exact


@njit(cache=True)
def request_guess(seq, n, min_order, max_order, space):
    """The request's guess for the token after ``seq[:n]``, as the drafting loop makes it:
    (position of the guessed token, match length, whether whitespace was skipped), or
    (-1, 0, False).  ``space`` empty: token for token only."""
    ptr, m = find_context_match(seq, n, seq, 0, min_order, max_order, space[:0])
    if space.shape[0] > 0:
        sptr, sm = find_context_match(seq, n, seq, 0, min_order, max_order, space)
        if takes_spaced(n, ptr, m, sptr, sm):
            return sptr, sm, True
    return ptr, m, False
