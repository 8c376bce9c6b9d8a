"""The rivals of TASC-spec in a replay (:func:`benchmarks.harness.replay.replay`): vLLM's
``suffix`` method and the oracle, drafting over recorded answers as they draft in an engine.

Each has ``propose_rows(sampled, lengths, token_ids, requests)``: vLLM's ``propose``
arguments plus, per row, ``(request number, prompt length)``, which vLLM gives its built-in
drafters and not a ``custom_class`` one.

- :class:`SuffixDrafter` is vLLM 0.32's ``SuffixDecodingProposer`` with its default settings,
  around the same ArcticInference ``SuffixDecodingCache`` (imported, not copied, so the replay
  drafts what the engine would).  Warmed (:meth:`SuffixDrafter.warm`) with the model's
  answers to the train prompts, as ``benchmarks.run``'s ``suffix-warm`` is warmed by serving
  them first.
- :class:`OracleDrafter` drafts the answer itself, ``k`` tokens at a time: the ceiling.

Two bounds show what a better choice could still gain from the drafts a drafter makes
(``benchmarks.replay --bounds``):

- :class:`OracleCut` cuts each of a drafter's drafts to the part the model accepts: the best
  any draft length rule could do with those tokens;
- :class:`BestOf` puts, at each step and row, the drafter whose draft the model accepts
  furthest, cut the same way: the best any choice between those drafters could do.
"""

from __future__ import annotations

import numpy as np

from benchmarks.harness.replay import accepted_length

# vLLM 0.32's SpeculativeConfig defaults for the suffix method
SUFFIX_MAX_TREE_DEPTH = 24
SUFFIX_MAX_CACHED_REQUESTS = 10000
SUFFIX_MAX_SPEC_FACTOR = 1.0
SUFFIX_MIN_TOKEN_PROB = 0.1


class SuffixDrafter:
    """vLLM's ``suffix`` method over a replay's rows."""

    def __init__(self, k: int, max_model_len: int = 8192):
        try:
            from arctic_inference.suffix_decoding import SuffixDecodingCache
        except ImportError as e:
            raise RuntimeError("replaying the suffix method needs arctic-inference (`make bench` builds it; "
                               "or: make .venv/.tasc-arctic-inference)") from e
        self.k = k
        self.max_model_len = max_model_len
        self.cache = SuffixDecodingCache(max_tree_depth=SUFFIX_MAX_TREE_DEPTH,
                                         max_cached_requests=SUFFIX_MAX_CACHED_REQUESTS)

    def warm(self, prompt_ids: list[list[int]], output_ids: list[list[int]]) -> SuffixDrafter:
        """Cache these answers, as an engine that served their prompts first holds them."""
        for i, (prompt, out) in enumerate(zip(prompt_ids, output_ids)):
            key = ("warm", i)
            self.cache.start_request(key, np.asarray(prompt, dtype=np.int32))
            self.cache.add_active_response(key, np.asarray(out, dtype=np.int32))
            self.cache.stop_request(key)
        return self

    def propose_rows(self, sampled, lengths, token_ids, requests) -> list[list[int]]:
        drafts = []
        for i, (req, prompt_len) in enumerate(requests):
            n = int(lengths[i])
            if req not in self.cache.active_requests:
                self.cache.start_request(req, np.ascontiguousarray(token_ids[i, :prompt_len], dtype=np.int32))
            self.cache.add_active_response(req, np.asarray(sampled[i], dtype=np.int32))
            pattern = np.ascontiguousarray(token_ids[i, max(0, n - SUFFIX_MAX_TREE_DEPTH):n], dtype=np.int32)
            draft = self.cache.speculate(req, pattern, max_spec_tokens=min(self.k, self.max_model_len - n - 1),
                                         max_spec_factor=SUFFIX_MAX_SPEC_FACTOR, min_token_prob=SUFFIX_MIN_TOKEN_PROB)
            drafts.append(list(draft.token_ids))
        for req in set(self.cache.active_requests) - {r for r, _ in requests}:
            self.cache.stop_request(req)  # requests that left the batch
        return drafts


class OracleDrafter:
    """Drafts each request's recorded answer: every drafted token is accepted."""

    def __init__(self, k: int, prompt_ids: list[list[int]], output_ids: list[list[int]]):
        self.k = k
        self.seqs = [p + o for p, o in zip(prompt_ids, output_ids)]

    def propose_rows(self, sampled, lengths, token_ids, requests) -> list[list[int]]:
        return [self.seqs[req][int(n):int(n) + self.k] for (req, _), n in zip(requests, lengths)]


def drafts_of(drafter, sampled, lengths, token_ids, requests) -> list[list[int]]:
    """``drafter``'s drafts for these rows: a rival's ``propose_rows``, or TASC-spec's
    ``propose`` (which is given no request numbers)."""
    if hasattr(drafter, "propose_rows"):
        return drafter.propose_rows(sampled, lengths, token_ids, requests)
    return drafter.propose(sampled, lengths, token_ids)


class OracleCut:
    """``drafter``'s drafts, each cut to the part the model accepts."""

    def __init__(self, drafter, prompt_ids: list[list[int]], output_ids: list[list[int]]):
        self.drafter = drafter
        self.k = drafter.k
        self.seqs = [p + o for p, o in zip(prompt_ids, output_ids)]

    def propose_rows(self, sampled, lengths, token_ids, requests) -> list[list[int]]:
        drafts = drafts_of(self.drafter, sampled, lengths, token_ids, requests)
        return [d[:accepted_length(d, self.seqs[req], int(n))] for d, (req, _), n in zip(drafts, requests, lengths)]


class BestOf:
    """At each step and row, the draft of ``drafters`` that the model accepts furthest, cut
    to that part.  Every drafter drafts at every step, so each keeps its own state."""

    def __init__(self, drafters: list, prompt_ids: list[list[int]], output_ids: list[list[int]]):
        if not drafters:
            raise ValueError("BestOf needs at least one drafter")
        self.drafters = drafters
        self.k = max(d.k for d in drafters)
        self.seqs = [p + o for p, o in zip(prompt_ids, output_ids)]

    def propose_rows(self, sampled, lengths, token_ids, requests) -> list[list[int]]:
        every = [drafts_of(d, sampled, lengths, token_ids, requests) for d in self.drafters]
        best = []
        for i, ((req, _), n) in enumerate(zip(requests, lengths)):
            drafts = [ds[i] for ds in every]
            accepted = [accepted_length(d, self.seqs[req], int(n)) for d in drafts]
            j = max(range(len(drafts)), key=accepted.__getitem__)
            best.append(drafts[j][:accepted[j]])
        return best
