"""Mining output n-grams in token space, scored by the tokens they save.

The outputs are token sequences under the current tokenizer.  One pick is the n-gram
(2 <= n <= ``max_n`` tokens) whose non-overlapping occurrences save the most tokens,
``count * (n - 1)``; it is then merged into a single new symbol everywhere and the counts
are taken again, so the next pick sees the corpus as the grown vocabulary would encode it
(a later pick may contain an earlier one).  Counting is vectorised with numpy: a pick costs
one ``np.unique`` per order over the corpus, never a Python loop over it; a candidate that
``accept`` refuses costs no recount, since the counts change only when a pick is merged.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

SEP = -1  # between texts and in place of tokens that may not be part of an n-gram


@dataclass(frozen=True)
class Candidate:
    text: str  # the string the new token stands for
    ids: tuple[int, ...]  # its tokens under the tokenizer the mining started from
    count: int  # non-overlapping occurrences in the corpus when it was picked
    saving: int  # tokens it saved then: count * (len(pick) - 1)


def _concat(sequences: Sequence[Sequence[int]], excluded: set[int]) -> np.ndarray:
    parts: list[np.ndarray] = []
    for seq in sequences:
        arr = np.asarray(seq, dtype=np.int64)
        parts.append(arr)
        parts.append(np.array([SEP], dtype=np.int64))
    flat = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    if excluded:
        flat[np.isin(flat, np.fromiter(excluded, dtype=np.int64))] = SEP
    return flat


def _non_overlapping(starts: np.ndarray, n: int) -> np.ndarray:
    """Greedy left-to-right subset of sorted match ``starts`` with no two closer than ``n``."""
    if n <= 1 or starts.size <= 1 or np.all(np.diff(starts) >= n):
        return starts
    keep: list[int] = []
    last = -(n + 1)
    for s in starts.tolist():
        if s >= last + n:
            keep.append(s)
            last = s
    return np.asarray(keep, dtype=starts.dtype)


def _matches(flat: np.ndarray, gram: np.ndarray) -> np.ndarray:
    n = gram.size
    windows = np.lib.stride_tricks.sliding_window_view(flat, n)
    return np.flatnonzero(np.all(windows == gram, axis=1))


def _count_order(flat: np.ndarray, n: int):
    """Every n-gram of order ``n`` (no separator inside) with its overlapping count, most
    frequent first, as ``(grams, counts)``; None when there is none."""
    if flat.size < n:
        return None
    windows = np.lib.stride_tricks.sliding_window_view(flat, n)
    valid = np.all(windows != SEP, axis=1)
    if not valid.any():
        return None
    grams, counts = np.unique(windows[valid], axis=0, return_counts=True)
    order = np.argsort(-counts, kind="stable")
    return grams[order], counts[order]


def _best_of_order(flat: np.ndarray, n: int, banned: set[tuple[int, ...]], min_count: int, counted, exact: dict):
    """The n-gram of order ``n`` with the largest non-overlapping count, as (count, gram),
    or None.  Overlapping counts (``counted``, from :func:`_count_order` on this ``flat``)
    bound the exact ones from above, so exact counts are taken only until no remaining
    candidate can beat the best; ``exact`` keeps them (gram -> count) while ``flat`` stays
    the same.  Returns ``(best, skipped)``: ``skipped`` are the indices into ``counted`` of
    banned grams passed over, for the caller to drop so the next search does not meet them."""
    if counted is None:
        return None, []
    grams, counts = counted
    best = None
    skipped: list[int] = []
    for i in range(counts.size):
        if counts[i] < min_count or (best is not None and counts[i] <= best[0]):
            break
        gram = tuple(int(x) for x in grams[i])
        if gram in banned:
            skipped.append(i)
            continue
        if gram not in exact:
            # Overlapping counts overstate self-overlapping n-grams ("a a a"): count exactly.
            exact[gram] = _non_overlapping(_matches(flat, grams[i]), n).size
        if exact[gram] >= min_count and (best is None or exact[gram] > best[0]):
            best = (exact[gram], gram)
    return best, skipped


def _occurrences(corpus: str, text: str):
    """Start of every (possibly overlapping) occurrence of ``text`` in ``corpus``."""
    i = corpus.find(text)
    while i >= 0:
        yield i
        i = corpus.find(text, i + 1)


def keeps_words_whole(corpus_text: str, is_word: Callable[[str], bool] = str.isalnum) -> Callable[[str], bool]:
    """An ``accept`` rule for :func:`mine`: a pick may not cut a run of word characters
    (``is_word``: letters and digits by default) in two anywhere in ``corpus_text`` (e.g.
    ``'{"AddressNumber": "1'`` before ``"600"``, or ``'", "Occupancy'`` before ``"Type"``),
    so no token forces an odd split of a value or a word onto the model."""

    def accept(text: str) -> bool:
        n = len(corpus_text)
        return not any(
            (is_word(text[0]) and i > 0 and is_word(corpus_text[i - 1]))
            or (is_word(text[-1]) and i + len(text) < n and is_word(corpus_text[i + len(text)]))
            for i in _occurrences(corpus_text, text)
        )

    return accept


def leaves_values_to_the_input(examples: Sequence[tuple[str, str]]) -> Callable[[str], bool]:
    """An ``accept`` rule for :func:`mine` over ``(input, output)`` pairs: a pick may not
    hold a word (a run of letters or digits, any case) that the input of an example whose
    output contains the pick also holds.  Such words are values the model copies from its
    prompt (``"Chicago"``, ``"IL"``, ``"60603"``); a token that bakes them in next to a key
    invites the model to write the frequent value instead of the one in front of it.  Keys,
    punctuation and boilerplate, which no input contains, stay eligible."""
    word = re.compile(r"[^\W_]+")
    pairs = [(frozenset(w.lower() for w in word.findall(i)), o) for i, o in examples]

    def accept(text: str) -> bool:
        words = {w.lower() for w in word.findall(text)}
        return not words or not any(words & ins for ins, out in pairs if text in out)

    return accept


# a JSON string (and the colon after it, when it is a key) or a bare number or literal
_JSON_LEXEME = re.compile(
    r'(?P<str>"(?:[^"\\]|\\.)*")(?P<key>\s*:)?'
    r"|(?P<lit>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null)"
)


def json_value_mask(text: str) -> list[bool] | None:
    """Which characters of ``text`` belong to a JSON value: a string's contents (not its
    quotes) when the string is not a key, a number, ``true``/``false``/``null``.  None when
    ``text`` is not JSON: then it has no values to protect."""
    try:
        json.loads(text)
    except ValueError:
        return None
    mask = [False] * len(text)
    for m in _JSON_LEXEME.finditer(text):
        if m.group("str") is not None:
            if m.group("key") is None:
                a, b = m.span("str")
                mask[a + 1 : b - 1] = [True] * (b - a - 2)
        else:
            a, b = m.span("lit")
            mask[a:b] = [True] * (b - a)
    return mask


def keeps_json_values_out(outputs: Sequence[str]) -> Callable[[str], bool]:
    """An ``accept`` rule for :func:`mine`: a pick may not hold any character of a JSON value
    (a string's contents, a number, ``true``/``false``/``null``) anywhere it occurs in the
    outputs that are JSON.  Keys, quotes and punctuation stay eligible
    (``'", "arguments": {"'``, ``'"}}'``); a value fused with the structure around it
    (``'": 5}}'``, ``'year": 2020'``, ``'", "PlaceName": "Chicago'``) does not, since such a
    token lets the frequent value stand in for the one the prompt gives.  Outputs that are
    not JSON constrain nothing."""
    corpus = "\n".join(outputs)
    flags: list[bool] = []
    for i, out in enumerate(outputs):
        if i:
            flags.append(False)
        flags.extend(json_value_mask(out) or [False] * len(out))
    # values_before[j]: value characters in corpus[:j], so a span is checked in O(1)
    values_before = np.concatenate([[0], np.cumsum(np.asarray(flags, dtype=np.int64))])

    def accept(text: str) -> bool:
        return not any(values_before[i + len(text)] > values_before[i] for i in _occurrences(corpus, text))

    return accept


def leaves_alone(texts: Sequence[str]) -> Callable[[str], bool]:
    """An ``accept`` rule for :func:`mine`: a pick may occur in none of ``texts`` and share no
    word with them.  Mining the prompts with the answers as ``texts``, the answers keep every
    token they had (an answer's ``", "`` stays its own), and what an answer copies from the
    prompt (a key, a function name) keeps the same tokens in the prompt: no pick swallows
    ``location`` into ``'{"location": {"type": "string", "description": "The city'``."""
    corpus = "\0".join(texts)
    words = set(re.findall(r"\w+", corpus))
    return lambda text: text not in corpus and not words.intersection(re.findall(r"\w+", text))


def all_of(*rules: Callable[[str], bool]) -> Callable[[str], bool]:
    """An ``accept`` rule that holds when every one of ``rules`` does."""
    return lambda text: all(rule(text) for rule in rules)


def mine(
    sequences: Sequence[Sequence[int]],
    num_tokens: int,
    decode: Callable[[list[int]], str],
    *,
    max_n: int = 8,
    min_count: int = 2,
    excluded: set[int] | frozenset[int] = frozenset(),
    accept: Callable[[str], bool] = lambda text: True,
    progress=None,
) -> list[Candidate]:
    """Pick up to ``num_tokens`` n-grams that save the most tokens in ``sequences``.

    ``decode`` turns token ids (of the tokenizer the sequences came from) into text;
    ``excluded`` ids (special tokens) never join an n-gram; a pick whose text ``accept``
    rejects (e.g. one that splits a UTF-8 character) is skipped.  ``progress`` is an optional
    callable taking the number of picks made so far.
    """
    flat = _concat(sequences, set(excluded))
    next_symbol = int(max(flat.max(initial=0), 0)) + 1
    expansion: dict[int, tuple[int, ...]] = {}  # merged symbol -> original token ids
    banned: set[tuple[int, ...]] = set()
    picks: list[Candidate] = []

    def expand(gram: tuple[int, ...]) -> tuple[int, ...]:
        out: list[int] = []
        for t in gram:
            out.extend(expansion.get(t, (t,)))
        return tuple(out)

    # until flat changes: order -> _count_order(flat, order) less the banned grams met, and
    # exact non-overlapping counts, so a refused pick costs no recount
    counted: dict[int, tuple | None] = {}
    exact: dict[tuple[int, ...], int] = {}
    while len(picks) < num_tokens:
        best = None
        for n in range(2, max_n + 1):
            if n not in counted:
                counted[n] = _count_order(flat, n)
            found, skipped = _best_of_order(flat, n, banned, min_count, counted[n], exact)
            if skipped:
                grams, counts = counted[n]
                counted[n] = (np.delete(grams, skipped, axis=0), np.delete(counts, skipped))
            if found is not None and (best is None or found[0] * (n - 1) > best[0]):
                best = (found[0] * (n - 1), found[0], found[1])
        if best is None:
            break
        saving, count, gram = best
        ids = expand(gram)
        text = decode(list(ids))
        if "\ufffd" in text or not text or not accept(text):
            banned.add(gram)
            continue
        starts = _non_overlapping(_matches(flat, np.asarray(gram, dtype=np.int64)), len(gram))
        keep = np.ones(flat.size, dtype=bool)
        for offset in range(1, len(gram)):
            keep[starts + offset] = False
        flat[starts] = next_symbol
        flat = flat[keep]
        counted.clear()
        exact.clear()
        expansion[next_symbol] = ids
        next_symbol += 1
        picks.append(Candidate(text=text, ids=ids, count=count, saving=saving))
        if progress is not None:
            progress(len(picks))
    return picks
