"""The widest candidate sets an n-gram drafter of TASC-spec's two sources could choose from.

TASC-spec drafts from at most five candidates per position: the corpus's top four next
tokens after its longest known context, and the follower of the request's latest longest
match.  ``benchmarks.harness.ceilings``' "sources' ceiling" bounds every drafter that picks among
those five.  This module widens the sets as far as n-gram statistics of the same sources go,
so the bound covers any drafter of that kind:

- ``longest``: every token that followed the two longest contexts the corpus knows (corpus,
  plus what online learning has added: the earlier answers and this one so far), and every
  token that followed any earlier occurrence of the request's longest matching suffix (token
  for token, and with whitespace-only tokens skipped, as TASC-spec matches);
- ``every``: every token that followed any context of 1..``max_order`` tokens ending here, in
  the corpus or anywhere earlier in the request, matched either way.

The sets are exact (Python sets of token ids, no top-k cut); their mean size is reported
beside their hit rate, since a drafter must still pick one token out of them.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

SETS = ("longest", "every")


class ContextFollowers:
    """For every context of 1..``max_order`` tokens seen so far, the set of tokens that followed it."""

    def __init__(self, max_order: int):
        self.max_order = max_order
        self.followers: dict[tuple, set] = defaultdict(set)

    def add(self, seq, i: int) -> None:
        """Count ``seq[i]`` as a follower of the contexts ending at ``i - 1`` (within ``seq``)."""
        t = seq[i]
        for o in range(1, min(self.max_order, i) + 1):
            self.followers[tuple(seq[i - o : i])].add(t)

    def add_texts(self, tokens: np.ndarray) -> None:
        """Every text of a corpus token array (``-1`` between texts)."""
        ends = np.flatnonzero(tokens < 0).tolist() + [tokens.size]
        start = 0
        for end in ends:
            text = tokens[start:end].tolist()
            for i in range(1, len(text)):
                self.add(text, i)
            start = end + 1

    def known(self, seq, pos: int) -> list[set]:
        """The follower sets of the contexts of order 1, 2, ... ending at ``pos - 1`` that are
        known, shortest first, up to the first unknown one (as TASC-spec backs off)."""
        out = []
        for o in range(1, min(self.max_order, pos) + 1):
            f = self.followers.get(tuple(seq[pos - o : pos]))
            if not f:
                break
            out.append(f)
        return out


class RequestFollowers:
    """The request's own n-grams: for each suffix of the history, the tokens that followed its
    earlier occurrences, on the token sequence or on its subsequence without whitespace-only
    tokens (``space`` flags them; the follower is then the next token that is not whitespace)."""

    def __init__(self, max_order: int, space: np.ndarray):
        self.max_order = max_order
        self.space = space
        self.exact = ContextFollowers(max_order)
        self.spaced = ContextFollowers(max_order)
        self._kept: list[int] = []  # the history's tokens that are not whitespace-only

    def push(self, seq, i: int) -> None:
        """Make ``seq[i]`` part of the history (``seq[:i]`` already is)."""
        if i >= 1:
            self.exact.add(seq, i)
        t = seq[i]
        if not (0 <= t < self.space.shape[0] and self.space[t]):
            self._kept.append(t)
            if len(self._kept) >= 2:
                self.spaced.add(self._kept, len(self._kept) - 1)

    def sets(self, seq, pos: int) -> tuple[set, set]:
        """(followers of the longest matching suffix, token for token and whitespace skipped;
        followers of every matching suffix either way) for the history ``seq[:pos]``."""
        longest: set = set()
        every: set = set()
        for known in (self.exact.known(seq, pos), self.spaced.known(self._kept, len(self._kept))):
            if known:
                longest |= known[-1]
                for f in known:
                    every |= f
        return longest, every


def wide_hits(corpus_tokens: np.ndarray, prompts, outputs, space: np.ndarray, max_order: int) -> dict:
    """For each of :data:`SETS`: whether the set held the model's next token at every answer
    position after the first (``hits``, one list per answer, for
    :func:`benchmarks.harness.step_cost.perfect_drafts`), its share of positions (``share``) and
    mean size (``mean_size``).  The answers are taken in order and learned as TASC-spec's
    online learning does: each token joins the corpus statistics once it is generated."""
    table = ContextFollowers(max_order)
    table.add_texts(np.asarray(corpus_tokens))
    hits: dict[str, list[list[bool]]] = {s: [] for s in SETS}
    sizes = dict.fromkeys(SETS, 0)
    positions = 0
    for prompt, out in zip(prompts, outputs):
        seq = list(prompt) + list(out)
        request = RequestFollowers(max_order, space)
        for i in range(len(prompt) + 1):  # the prompt and the first answer token (from prefill)
            request.push(seq, i)
        table.add(seq, len(prompt))
        for s in SETS:
            hits[s].append([])
        for pos in range(len(prompt) + 1, len(seq)):
            known = table.known(seq, pos)
            req_longest, req_every = request.sets(seq, pos)
            wide = {
                "longest": set().union(*known[-2:], req_longest),
                "every": set().union(*known, req_every),
            }
            true = seq[pos]
            for s, cands in wide.items():
                hits[s][-1].append(true in cands)
                sizes[s] += len(cands)
            positions += 1
            request.push(seq, pos)
            table.add(seq, pos)
    return {s: {"hits": hits[s], "share": sum(map(sum, hits[s])) / max(positions, 1),
                "mean_size": sizes[s] / max(positions, 1)} for s in SETS}
