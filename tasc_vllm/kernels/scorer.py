"""The learned scorer: "the model emits this candidate next", from the candidate's feature row
(:mod:`tasc_vllm.kernels.candidates`).

The score is a small ensemble of regression trees (gradient boosting, trained by
:mod:`tasc_vllm.index.policy` with scikit-learn) plus a linear term, through a sigmoid.  The
trees catch what a linear model over the same features cannot: which source to trust depends
on the others (a long request match that runs past the value the answer copies loses to a
corpus context that has seen the value end; a digit follows the input, a label the corpus).
On the three tasks' folds they cut the positions where the best-scored candidate is wrong by
about a quarter against a logistic model on the same features.  Evaluating them is a walk of
at most five nodes per tree (about 150 a candidate), compiled here with the rest of the hot
path.

The linear term is the online part: it starts at zero (or at the prior weights when the
corpus was too small to train trees) and, while serving, every token a request gains moves it
by one stochastic-gradient step (:func:`learn_step`), so the scorer follows the served model
where it departs from the corpus.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

ONLINE_RATE = 0.02  # the online step size
ONLINE_DECAY = 1e-5  # L2 pull of the online steps towards the trained weights


class Trees(NamedTuple):
    """A tree ensemble in flat arrays: node ``i`` splits on ``feature[i]`` (left when the
    value is at most ``threshold[i]``) into ``left[i]`` and ``right[i]``, or is a leaf
    (``left[i] == -1``) worth ``value[i]``; tree ``t`` starts at node ``roots[t]``; the raw
    score is ``base`` plus one leaf's value per tree."""

    feature: np.ndarray  # int64
    threshold: np.ndarray  # float64
    left: np.ndarray  # int64
    right: np.ndarray  # int64
    value: np.ndarray  # float64
    roots: np.ndarray  # int64
    base: float


def no_trees() -> Trees:
    """An empty ensemble: the score is the linear term alone."""
    i, f = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    return Trees(i, f, i, i, f, i, 0.0)


@njit(cache=True, inline="always")
def raw_score(trees, weights, f):
    """The log-odds of candidate row ``f``."""
    z = trees.base
    for t in range(trees.roots.shape[0]):
        node = trees.roots[t]
        while trees.left[node] >= 0:
            if f[trees.feature[node]] <= trees.threshold[node]:
                node = trees.left[node]
            else:
                node = trees.right[node]
        z += trees.value[node]
    for j in range(weights.shape[0]):
        z += weights[j] * f[j]
    return z


@njit(cache=True, inline="always")
def probability(trees, weights, f):
    z = raw_score(trees, weights, f)
    if z > 30.0:
        return 1.0
    if z < -30.0:
        return 0.0
    return 1.0 / (1.0 + np.exp(-z))


@njit(cache=True)
def raw_scores(trees, weights, X):
    """:func:`raw_score` of every row of ``X``."""
    out = np.empty(X.shape[0], dtype=np.float64)
    for i in range(X.shape[0]):
        out[i] = raw_score(trees, weights, X[i])
    return out


@njit(cache=True)
def best_candidate(trees, weights, feats, nc):
    """(index of the likeliest candidate, its probability)."""
    best = -1
    best_p = -1.0
    for c in range(nc):
        p = probability(trees, weights, feats[c])
        if p > best_p:
            best_p = p
            best = c
    return best, best_p


@njit(cache=True)
def learn_step(trees, weights, anchor, feats, cand, nc, true_tok):
    """One stochastic-gradient step of the log loss on a position's candidates, the one equal
    to ``true_tok`` labelled 1 and the others 0, on the linear term, with an L2 pull towards
    ``anchor`` (its trained value)."""
    for c in range(nc):
        y = 1.0 if cand[c] == true_tok else 0.0
        g = y - probability(trees, weights, feats[c])
        for j in range(weights.shape[0]):
            weights[j] += ONLINE_RATE * (g * feats[c, j] - ONLINE_DECAY * (weights[j] - anchor[j]))
