"""The two lookups both draft sources make at the end of a sequence (context plus draft so
far): the longest context the corpus table knows, and the longest earlier match of the
sequence's suffix inside the request itself."""

from __future__ import annotations

from numba import njit

from tasc_vllm.ngram_table import _SEED, finalize, lookup, mix


@njit(cache=True, inline="always")
def token_at(ctx, n_ctx, draft, i):
    if i < n_ctx:
        return ctx[i]
    return draft[i - n_ctx]


@njit(cache=True)
def longest_corpus_entry(ctx, n_ctx, draft, n_draft, slots, keys, max_order):
    """Table entry of the longest (up to ``max_order`` tokens) known context ending the
    sequence, and its order; (-1, 0) when not even the last token is known."""
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
        entry = e
        found = order
    return entry, found


@njit(cache=True)
def find_context_match(ctx, n_ctx, draft, n_draft, min_order, max_order):
    """Longest (then most recent) earlier occurrence of the sequence's suffix.

    Returns (position of the token that followed it, match length) or (-1, 0)."""
    total = n_ctx + n_draft
    if total < 2 or max_order < 1:
        return -1, 0
    last = token_at(ctx, n_ctx, draft, total - 1)
    best_pos = -1
    best_len = 0
    # candidate occurrence ends at j (inclusive); its follower ctx[j + 1] must be in ctx
    j = min(total - 2, n_ctx - 2)
    while j >= 0:
        if ctx[j] == last:
            m = 1
            while m < max_order and j - m >= 0 and ctx[j - m] == token_at(ctx, n_ctx, draft, total - 1 - m):
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
