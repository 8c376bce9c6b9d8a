"""The learned scorer: a logistic model of "the model emits this candidate next" over the
candidate's feature row (:mod:`tasc_vllm.kernels.candidates`).

A logistic model is enough here: the features already hold the sources' statistics, it
trains in well under a second with Newton steps (:mod:`tasc_vllm.index.policy`), and it
costs one dot product per candidate in the hot path.  While serving, every token a request
gains updates the weights by one stochastic-gradient step (:func:`learn_step`), so the
scorer follows the served model where it departs from the corpus.
"""

from __future__ import annotations

import numpy as np
from numba import njit

ONLINE_RATE = 0.02  # the online step size
ONLINE_DECAY = 1e-5  # L2 pull of the online steps towards the trained weights


@njit(cache=True, inline="always")
def probability(weights, f):
    z = 0.0
    for j in range(weights.shape[0]):
        z += weights[j] * f[j]
    if z > 30.0:
        return 1.0
    if z < -30.0:
        return 0.0
    return 1.0 / (1.0 + np.exp(-z))


@njit(cache=True)
def best_candidate(weights, feats, nc):
    """(index of the likeliest candidate, its probability)."""
    best = -1
    best_p = -1.0
    for c in range(nc):
        p = probability(weights, feats[c])
        if p > best_p:
            best_p = p
            best = c
    return best, best_p


@njit(cache=True)
def learn_step(weights, anchor, feats, cand, nc, true_tok):
    """One stochastic-gradient step of the log loss on a position's candidates, the one equal
    to ``true_tok`` labelled 1 and the others 0, with an L2 pull towards ``anchor`` (the
    trained weights)."""
    for c in range(nc):
        y = 1.0 if cand[c] == true_tok else 0.0
        g = y - probability(weights, feats[c])
        for j in range(weights.shape[0]):
            weights[j] += ONLINE_RATE * (g * feats[c, j] - ONLINE_DECAY * (weights[j] - anchor[j]))
