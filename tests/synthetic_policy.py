"""A drafting policy trained on a synthetic task: for the tests that check what one source
of candidates lets the trained scorer draft."""

from __future__ import annotations

import numpy as np

from tasc_vllm.kernels.candidates import MAX_CANDIDATES, NUM_FEATURES, PolicyParams, gather
from tasc_vllm.kernels.learned_drafting import request_matches
from tasc_vllm.kernels.ngram_table import build_table
from tasc_vllm.kernels.scorer import best_candidate

NO_SPACE = np.zeros(0, np.uint8)
ORDER = 4


class SyntheticPolicy:
    """The scorer trained on ``answers`` (each after its prompt), over a vocabulary of
    ``vocab`` tokens of the given ``classes``; ``text`` says where an answer starts."""

    def __init__(self, prompts, answers, vocab: int, classes: np.ndarray, text):
        from tasc_vllm.index.policy import train_scorer

        corpus = np.concatenate([np.r_[a, -1] for a in answers]).astype(np.int32)
        params = PolicyParams(ORDER, 1, 8, 0, 0.0, vocab)
        self.classes, self.text = classes, text
        self.trees, self.weights, self.echo, self.copies, self.info = train_scorer(
            corpus, [np.asarray(p, np.int32) for p in prompts], params, NO_SPACE, classes, text, 0)
        self.table = build_table(corpus, ORDER, classes=classes)
        self.params = params._replace(corpus_entries=int(self.table.keys.shape[0]))
        self.cand = np.empty(MAX_CANDIDATES, dtype=np.int64)
        self.feats = np.empty((MAX_CANDIDATES, NUM_FEATURES))
        self.entries = np.empty(ORDER, dtype=np.int64)

    def matches(self, ctx: np.ndarray, start: int):
        """The request's guesses after ``ctx``, whose answer begins at ``start``."""
        return request_matches(ctx, len(ctx), ctx[:0], 0, self.params, NO_SPACE, self.classes, self.text, start)

    def choose(self, ctx: np.ndarray, matches, echo=None, copies=None) -> tuple[np.ndarray, np.ndarray, int]:
        """The candidates after ``ctx``, their feature rows, and the token the scorer drafts
        (-1 for none), with the request's ``matches``, the echo table ``echo`` and the copy
        table ``copies`` (None: the trained ones)."""
        echo = self.echo if echo is None else echo
        copies = self.copies if copies is None else copies
        nc = gather(ctx, len(ctx), ctx[:0], 0, self.table.view, echo, copies, self.params, self.classes, matches,
                    self.entries, self.cand, self.feats)
        best = int(self.cand[best_candidate(self.trees, self.weights, self.feats, nc)[0]]) if nc else -1
        return self.cand[:nc], self.feats[:nc], best
