"""The drafting kernels' scalar parameters, one named tuple (Numba passes it as one typed
argument), built from the settings once per step."""

from __future__ import annotations

from typing import NamedTuple


class DraftParams(NamedTuple):
    max_order: int  # longest corpus context, in tokens
    ctx_min_order: int  # shortest in-request match used
    ctx_max_order: int  # longest in-request match tried
    w_corpus: float  # trust in the corpus source
    w_context: float  # trust in the request source
    alpha: float  # corpus smoothing: count / (total + alpha)
    gamma: float  # request confidence: m / (m + gamma)
    threshold: float  # the confidence floor (the first token's bar under the "first" rule)
    step_cost: float  # a step's cost per row in verified tokens (0: the "yield" rule is off)
    free_draft: float  # drafted tokens per row that verify at no extra cost
    vocab_size: int  # token ids at or past this are never drafted


def draft_params(cfg, rows: int, vocab_size: int) -> DraftParams:
    """The parameters for a step of ``rows`` requests under settings ``cfg``
    (:class:`tasc_vllm.config.TascConfig`); every field cast to its type, so the kernels
    compile once."""
    return DraftParams(
        int(cfg.max_order), int(cfg.context_min_order), int(cfg.context_max_order),
        float(cfg.corpus_weight), float(cfg.context_weight), float(cfg.alpha), float(cfg.gamma),
        float(cfg.threshold_for(rows)), float(cfg.step_cost(rows)), float(cfg.free_per_row(rows)),
        int(vocab_size),
    )
