"""Where an answer reads its input: the input's next word after the last value the answer
copied from it.

Extraction and function-call answers copy words of their input, mostly in order, with
labels or argument names between them (``{"AddressNumber": "9912", "StreetName": "Avenue",
...`` for ``9912 S. Avenue H``).  The request's suffix matches (:mod:`tasc_vllm.kernels.lookups`)
cannot guess a value's first word: the suffix before it is a label the input does not hold.
This source can: it finds the answer's most recent run of word and digit tokens that spells
a run of whole words of the input, and guesses the input's next word.

Runs are compared by their text with whitespace removed (:class:`InputText`), because
byte-level BPE writes a word differently after a quote than after a space (``"Avenue`` is
``A venue``, `` Avenue`` one token).  A value's first word is guessed in the form it takes
after punctuation (``InputText.bare``); inside a value, the input's next token as it is.
Inside a value, the answer may stop in the middle of an input word it writes with other
tokens (``A`` of `` Avenue``): the next of those tokens is guessed (``InputText.bare`` holds
the first :data:`BARE_TOKENS`).  The input is the sequence before the answer (found by the chat template's generation prompt,
``InputText.header``); without one, everything before the run.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from tasc_vllm.kernels.lookups import token_at
from tasc_vllm.kernels.token_classes import is_content
TEXT_WIDTH = 24  # characters kept per token (longer tokens are never matched)
RUN_CHARS = 64  # the longest run of the answer compared with the input, in characters
READ_WINDOW = 32  # how far back from the end the answer's runs are looked for, in tokens
READ_RUNS = 4  # runs tried there, the most recent first
READ_SKIP = 4  # tokens skipped (punctuation, whitespace) to the input's next word
HEADER_LOOKBACK = 8192  # how far back the answer's start is looked for, in tokens
BARE_TOKENS = 4  # tokens kept of each word's form after punctuation


class InputText(NamedTuple):
    """What the reading position needs to know of each token id (arrays of the model's
    vocabulary size) and of the chat template."""

    chars: np.ndarray  # uint8[size, TEXT_WIDTH]: the token's text without whitespace (one byte per character)
    length: np.ndarray  # uint8[size]: how many of ``chars``; 0: the token is never matched
    lead: np.ndarray  # uint8[size]: 1 when the token's text starts with whitespace
    bare: np.ndarray  # int32[size, BARE_TOKENS]: the text without its leading whitespace as tokens (-1 after them)
    header: np.ndarray  # int64[h]: the tokens right before an answer (empty: unknown)


def no_input_text(size: int = 0) -> InputText:
    """An :class:`InputText` that matches nothing (a tokenizer that cannot decode single ids)."""
    return InputText(np.zeros((size, TEXT_WIDTH), np.uint8), np.zeros(size, np.uint8), np.zeros(size, np.uint8),
                     np.full((size, BARE_TOKENS), -1, np.int32), np.zeros(0, np.int64))


@njit(cache=True, inline="always")
def _header_ends_at(ctx, e, header):
    """Whether ``header`` (not empty) ends at ``ctx[e]``; ``e >= len(header) - 1``."""
    h = header.shape[0]
    if ctx[e] != header[h - 1]:
        return False
    for j in range(h - 1):
        if ctx[e - h + 1 + j] != header[j]:
            return False
    return True


@njit(cache=True)
def answer_start(ctx, n_ctx, header):
    """The position right after the last occurrence of ``header`` in ``ctx[:n_ctx]`` (looked
    for at most :data:`HEADER_LOOKBACK` tokens back), or -1."""
    h = header.shape[0]
    if h == 0:
        return -1
    lo = max(h - 1, n_ctx - HEADER_LOOKBACK)
    for e in range(n_ctx - 1, lo - 1, -1):
        if _header_ends_at(ctx, e, header):
            return e + 1
    return -1


@njit(cache=True)
def answer_start_after(ctx, n_ctx, header, before):
    """:func:`answer_start` of ``ctx[:n_ctx]`` from ``before``, that of ``ctx[:n_ctx - 1]``,
    in constant time: for callers that walk a sequence one position at a time."""
    h = header.shape[0]
    if h == 0:
        return -1
    lo = max(h - 1, n_ctx - HEADER_LOOKBACK)
    if n_ctx - 1 >= lo and _header_ends_at(ctx, n_ctx - 1, header):
        return n_ctx
    return before if before >= 0 and before - 1 >= lo else -1


@njit(cache=True)
def _run_text(ctx, n_ctx, draft, s, e, text, buf):
    """The text of the sequence's tokens ``s..e`` (whitespace removed) into ``buf``; its
    length, or -1 when a token has no usable text or the run is too long."""
    n = 0
    for i in range(s, e + 1):
        t = token_at(ctx, n_ctx, draft, i)
        if t < 0 or t >= text.length.shape[0]:
            return -1
        m = text.length[t]
        if m == 0 or n + m > buf.shape[0]:
            return -1
        for c in range(m):
            buf[n + c] = text.chars[t, c]
        n += m
    return n


@njit(cache=True)
def _spells(ctx, q, hi, buf, n, classes, text, partial):
    """If the words and digits of ``ctx[q:hi]`` from ``q`` on spell ``buf[:n]``: (the position
    after them, 0) when they end where a word ends; with ``partial``, also when the word goes
    on, and (the position of the token ``buf`` ends inside, the characters of it spelled) when
    it ends inside a token.  (-1, 0) otherwise."""
    i = 0
    p = q
    while i < n:
        if p >= hi:
            return -1, 0
        t = ctx[p]
        if not is_content(classes, t) or t >= text.length.shape[0]:
            return -1, 0
        m = text.length[t]
        if m == 0:
            return -1, 0
        if i + m > n:
            if not partial:
                return -1, 0
            for c in range(n - i):
                if text.chars[t, c] != buf[i + c]:
                    return -1, 0
            return p, n - i
        for c in range(m):
            if text.chars[t, c] != buf[i + c]:
                return -1, 0
        i += m
        p += 1
    if not partial and p < hi and is_content(classes, ctx[p]) and text.lead[ctx[p]] == 0:
        return -1, 0  # the word goes on in the input: the run spells only part of it
    return p, 0


@njit(cache=True)
def _bare_after(text, tok, chars):
    """The token of ``tok``'s form after punctuation that follows its first ``chars``
    characters, or -1 when they do not end at one of its tokens."""
    if tok >= text.bare.shape[0]:
        return -1
    seen = 0
    for j in range(text.bare.shape[1]):
        b = text.bare[tok, j]
        if b < 0 or b >= text.length.shape[0]:
            return -1
        if seen == chars:
            return b
        seen += text.length[b]
        if seen > chars or text.length[b] == 0:
            return -1
    return -1


@njit(cache=True)
def next_input_token(ctx, n_ctx, draft, n_draft, classes, text, start):
    """The input's token the answer reads next, after the sequence ``ctx[:n_ctx] + draft``:
    (token, 1) inside a value copied from the input (the input's next token, when the value
    goes on there), (token, 0) after a copied value (the input's next word, as a value's first
    token is written), or (-1, 0).  ``start``: the answer's first position
    (:func:`answer_start`; -1: unknown)."""
    total = n_ctx + n_draft
    if classes.shape[0] == 0 or text.length.shape[0] == 0:
        return -1, 0
    lo = max(max(start, 0), total - READ_WINDOW)
    buf = np.empty(RUN_CHARS, dtype=np.uint8)
    runs = 0
    i = total - 1
    while i >= lo and runs < READ_RUNS:
        if not is_content(classes, token_at(ctx, n_ctx, draft, i)):
            i -= 1
            continue
        e = i
        s = i
        while s - 1 >= lo and is_content(classes, token_at(ctx, n_ctx, draft, s - 1)):
            s -= 1
        runs += 1
        inside = e == total - 1  # the answer is inside this run: it may stop in the middle of a word
        n = _run_text(ctx, n_ctx, draft, s, e, text, buf)
        hi = min(start if start >= 0 else n_ctx, s, n_ctx)  # the input: before the answer, before the run
        if n > 0:
            for q in range(hi - 1, -1, -1):  # the latest occurrence: the request's own message comes last
                t = ctx[q]
                if t < 0 or t >= text.length.shape[0] or text.length[t] == 0 or text.chars[t, 0] != buf[0]:
                    continue
                if q > 0 and text.lead[t] == 0 and is_content(classes, ctx[q - 1]):
                    continue  # not the start of a word
                p, part = _spells(ctx, q, hi, buf, n, classes, text, inside)
                if p < 0:
                    continue
                if inside:
                    if part > 0:  # in the middle of a word, written as after punctuation
                        b = _bare_after(text, ctx[p], part)
                        if b < 0:
                            continue  # not written that way: another word that starts alike, say
                        return b, 1
                    if p < hi and is_content(classes, ctx[p]):
                        return ctx[p], 1
                    return -1, 0
                for r in range(p, min(p + READ_SKIP, hi)):
                    if is_content(classes, ctx[r]):
                        b = text.bare[ctx[r], 0] if ctx[r] < text.bare.shape[0] else -1
                        return (b if b >= 0 else ctx[r]), 0
                return -1, 0
        i = s - 1
    return -1, 0


@njit(cache=True, inline="always")
def word_goes_on(text, rtok, rin):
    """1 when :func:`next_input_token` found the answer inside a value (``rin``) whose input
    word goes on: its next token ``rtok`` does not start a new word; else 0."""
    if rin == 1 and 0 <= rtok < text.lead.shape[0] and text.lead[rtok] == 0:
        return 1
    return 0
