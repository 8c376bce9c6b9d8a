"""The token classes the kernels tell apart (one per token id, made by
:func:`tasc_vllm.index.ngram_cache.token_classes`)."""

from __future__ import annotations

from numba import njit

WORD, SPACE, DIGIT, PUNCT = 0, 1, 2, 3  # a word; whitespace only; holding a digit; punctuation only
MIXED = 4  # letters or digits joined to punctuation: a merged token of TASC-ft's vocabulary (``", "arguments": {"``)
JOIN = 5  # one punctuation character that joins the parts of a word: ``_``, ``-``, ``.``, ``@``, ``/``


@njit(cache=True, inline="always")
def is_content(classes, tok):
    """Whether ``tok`` is a word or digit token (the tokens a value is written with)."""
    if tok < 0 or tok >= classes.shape[0]:
        return False
    c = classes[tok]
    return c == WORD or c == DIGIT


@njit(cache=True, inline="always")
def is_joiner(classes, tok):
    """Whether ``tok`` can join two word or digit tokens into one value (``calculate_area``,
    ``2022-03-11``, ``j@x.com``)."""
    return 0 <= tok < classes.shape[0] and classes[tok] == JOIN
