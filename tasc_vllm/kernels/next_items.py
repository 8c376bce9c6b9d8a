"""The request's next item: where the answer walks through a list its prompt holds (a
schema's parameters, a list's elements, a form's fields), the item after the one the
answer wrote last.

The answer's last :data:`SEPARATOR` tokens (``, "`` after ``"mass1": 20``) were written
before, in this answer; the item that followed them then (``mass1``) is looked up in the
prompt, at its first occurrence; the prompt's next item is the next place after it where
the same :data:`ANCHOR` tokens lead in (``{"`` before ``mass1`` in the schema, so the
parameter after it, ``temperature1``).  Its first token is the guess; :data:`INTO` more
positions into the item, its next tokens, where the answer has written its first ones.  No
other source guesses this: the request's match finds the item the answer wrote last, or any
earlier one, and the corpus does not know the request's list.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from tasc_vllm.kernels.lookups import first_occurrence, token_at

SEPARATOR = 2  # tokens that must repeat, in the answer, before the next item
ANCHOR = 2  # tokens that must lead into an item in the prompt as into the last one
MAX_ITEM = 3  # the last item's first tokens looked up in the prompt (longest first)
MAX_AGREEMENT = 4  # how far back the leading tokens are compared, for the guess's strength
INTO = 1  # positions into the item that the guess goes on for (0: its first token only)
LOOKBACK = 256  # answer tokens searched back for the separator


@njit(cache=True)
def _guess(ctx, n_ctx, draft, n_draft, start, into):
    """:func:`next_item` for an answer ``into`` tokens into the item it writes."""
    total = n_ctx + n_draft
    sep = total - into - SEPARATOR  # the current separator's first position
    # the separator's latest earlier occurrence in the answer, ending at j, with an item after it
    j = sep - 2
    lo = max(start + SEPARATOR - 1, total - LOOKBACK)
    while j >= lo:
        same = True
        for i in range(SEPARATOR):
            if token_at(ctx, n_ctx, draft, j - i) != token_at(ctx, n_ctx, draft, sep + SEPARATOR - 1 - i):
                same = False
                break
        if same:
            break
        j -= 1
    if j < lo:
        return -1, 0
    item = j + 1
    needle = np.empty(MAX_ITEM, ctx.dtype)
    for i in range(min(MAX_ITEM, sep - item)):
        needle[i] = token_at(ctx, n_ctx, draft, item + i)
    for length in range(MAX_ITEM, 0, -1):
        if item + length > sep:
            continue
        q = first_occurrence(ctx, needle[:length], ANCHOR, start)
        if q < 0:
            continue
        # the next place after the item that the same tokens lead into, and that begins as
        # the answer's current item does
        for g in range(q + length + ANCHOR, start - into):
            same = True
            for i in range(1, ANCHOR + 1):
                if ctx[g - i] != ctx[q - i]:
                    same = False
                    break
            for i in range(into):
                if not same:
                    break
                if ctx[g + i] != token_at(ctx, n_ctx, draft, total - into + i):
                    same = False
            if same:
                agree = ANCHOR
                while agree < MAX_AGREEMENT and q - agree - 1 >= 0 and ctx[g - agree - 1] == ctx[q - agree - 1]:
                    agree += 1
                return g + into, agree
        return -1, 0
    return -1, 0


@njit(cache=True)
def next_item(ctx, n_ctx, draft, n_draft, start):
    """The prompt's next item at the end of the sequence ``ctx[:n_ctx] + draft[:n_draft]``,
    whose answer begins at ``start`` (-1: unknown, so no guess): (position in ``ctx`` of the
    guessed token, how many tokens before the item agree with those before the last one, from
    :data:`ANCHOR` to :data:`MAX_AGREEMENT`, tokens into the item), or (-1, 0, 0)."""
    if start <= ANCHOR:
        return -1, 0, 0
    for into in range(INTO + 1):
        g, agree = _guess(ctx, n_ctx, draft, n_draft, start, into)
        if g >= 0:
            return g, agree, into
    return -1, 0, 0
