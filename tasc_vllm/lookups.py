"""The two lookups both draft sources make at the end of a sequence (context plus draft so
far): the longest context the corpus table knows, and the longest earlier match of the
sequence's suffix inside the request itself, compared as text (so a prompt and an answer
that tokenize the same text differently still match) or as token ids."""

from __future__ import annotations

from numba import njit

from tasc_vllm.ngram_table import _SEED, finalize, lookup, mix

# A text match counts as one token per this many bytes it spans (at least the tokens it
# touches), so ``{"name": "`` matched as one fused token weighs like the three it spells.
BYTES_PER_TOKEN = 3


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
def find_token_match(ctx, n_ctx, draft, n_draft, min_order, max_order):
    """Longest (then most recent) earlier occurrence of the sequence's suffix, token by token.

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


@njit(cache=True, inline="always")
def _has_text(starts, t):
    return t >= 0 and t + 1 < starts.shape[0] and starts[t + 1] > starts[t]


@njit(cache=True)
def _text_match(ctx, n_ctx, draft, total, j, starts, data, max_order):
    """Bytes shared by the text ending with token ``ctx[j]`` and the text ending the sequence
    (compared backwards, across token boundaries), and the sequence tokens that match touches;
    stops after ``max_order`` whole sequence tokens."""
    a_tok = total - 1
    ta = token_at(ctx, n_ctx, draft, a_tok)
    a_start = starts[ta]
    a_pos = starts[ta + 1] - 1
    b_tok = j
    tb = ctx[b_tok]
    b_start = starts[tb]
    b_pos = starts[tb + 1] - 1
    nbytes = 0
    whole = 0
    in_token = 0  # bytes matched inside the current sequence token
    while data[a_pos] == data[b_pos]:
        nbytes += 1
        in_token += 1
        if a_pos == a_start:
            whole += 1
            in_token = 0
            a_tok -= 1
            if whole >= max_order or a_tok < 0:
                break
            ta = token_at(ctx, n_ctx, draft, a_tok)
            if not _has_text(starts, ta):
                break
            a_start = starts[ta]
            a_pos = starts[ta + 1] - 1
        else:
            a_pos -= 1
        if b_pos == b_start:
            b_tok -= 1
            if b_tok < 0:
                break
            tb = ctx[b_tok]
            if not _has_text(starts, tb):
                break
            b_start = starts[tb]
            b_pos = starts[tb + 1] - 1
        else:
            b_pos -= 1
    return nbytes, whole + (1 if in_token > 0 else 0), whole


@njit(cache=True)
def find_text_match(ctx, n_ctx, draft, n_draft, min_order, max_order, starts, data, min_bytes):
    """Longest (in bytes, then most recent) earlier occurrence of the sequence's suffix text
    that ends where a token of ``ctx`` ends, so its follower is a whole token.

    The match may cross token boundaries on either side and cover only the end of the
    sequence's last token (``", "arguments": {"`` matches the prompt's ``s": {"``), as long
    as it spans ``min_bytes`` bytes or a whole token.  Returns (position of the follower,
    match length in tokens: those it touches, or one per ``BYTES_PER_TOKEN`` bytes if more)
    or (-1, 0)."""
    total = n_ctx + n_draft
    if total < 2 or max_order < 1:
        return -1, 0
    last = token_at(ctx, n_ctx, draft, total - 1)
    if not _has_text(starts, last):
        return find_token_match(ctx, n_ctx, draft, n_draft, min_order, max_order)
    last_byte = data[starts[last + 1] - 1]
    best_pos = -1
    best_bytes = 0
    best_len = 0
    j = min(total - 2, n_ctx - 2)
    while j >= 0:
        t = ctx[j]
        if _has_text(starts, t) and data[starts[t + 1] - 1] == last_byte:
            nbytes, touched, whole = _text_match(ctx, n_ctx, draft, total, j, starts, data, max_order)
            if nbytes > best_bytes and touched >= min_order and (whole >= 1 or nbytes >= min_bytes):
                best_bytes = nbytes
                best_len = max(touched, nbytes // BYTES_PER_TOKEN) if whole >= 1 else 0
                best_pos = j + 1
                if whole >= max_order:
                    break
        j -= 1
    return best_pos, best_len


@njit(cache=True)
def find_context_match(ctx, n_ctx, draft, n_draft, min_order, max_order, starts, data, min_bytes):
    """The in-request match: by text when ``starts`` holds the vocabulary's byte table
    (:mod:`tasc_vllm.token_text`), else by token ids."""
    if starts.shape[0] == 0:
        return find_token_match(ctx, n_ctx, draft, n_draft, min_order, max_order)
    return find_text_match(ctx, n_ctx, draft, n_draft, min_order, max_order, starts, data, min_bytes)
