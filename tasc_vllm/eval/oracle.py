"""OracleProposer: a ``custom_class`` drafter that knows each prompt's true continuation
(the baseline's own output) and proposes it; the speed ceiling for a maximum draft length.

It reads ``TASC_ORACLE_FILE``: JSON ``[[prompt_ids, output_ids], ...]``. A prompt may come
more than once (e.g. the baseline's outputs at several batch sizes, which can differ in a
few greedy tokens); the oracle follows whichever continuation the output so far agrees with.
"""

from __future__ import annotations

import json
import os

import numpy as np

from tasc_vllm.errors import TascError


def write_oracle_file(path, pairs) -> None:
    """Write the ``TASC_ORACLE_FILE`` that :class:`OracleProposer` reads: ``pairs`` of
    (prompt token ids, output token ids)."""
    with open(path, "w") as f:
        json.dump([[list(p), list(o)] for p, o in pairs], f)


class OracleProposer:
    def __init__(self, vllm_config):
        path = os.environ.get("TASC_ORACLE_FILE")
        if not path or not os.path.isfile(path):
            raise TascError(f"OracleProposer needs TASC_ORACLE_FILE to name a JSON file (got {path!r})")
        with open(path) as f:
            pairs = json.load(f)
        self.k = int(vllm_config.speculative_config.num_speculative_tokens)
        self.max_model_len = int(vllm_config.model_config.max_model_len)
        self.by_prompt: dict[int, dict[bytes, list[np.ndarray]]] = {}
        for prompt, output in pairs:
            p = np.asarray(prompt, dtype=np.int64)
            seqs = self.by_prompt.setdefault(len(p), {}).setdefault(p.tobytes(), [])
            seqs.append(np.asarray(list(prompt) + list(output), dtype=np.int64))
        self.lengths = sorted(self.by_prompt)

    def load_model(self, *args, **kwargs) -> None:
        pass

    def _find(self, ctx: np.ndarray) -> np.ndarray | None:
        """The known sequence that starts with ``ctx`` and continues past it, if any."""
        ctx = ctx.astype(np.int64, copy=False)
        n = len(ctx)
        for plen in self.lengths:
            if plen > n:
                break
            for seq in self.by_prompt[plen].get(ctx[:plen].tobytes(), ()):
                if len(seq) > n and np.array_equal(seq[:n], ctx):
                    return seq
        return None

    def propose(self, sampled_token_ids, num_tokens_no_spec, token_ids_cpu, slot_mappings=None, **kwargs):
        drafts: list[list[int]] = []
        for i, sampled in enumerate(sampled_token_ids):
            n = int(num_tokens_no_spec[i])
            limit = min(self.k, self.max_model_len - n - 1)
            if not len(sampled) or limit <= 0:
                drafts.append([])
                continue
            ctx = token_ids_cpu[i, :n]
            seq = self._find(ctx)
            if seq is None:
                drafts.append([])
                continue
            drafts.append(seq[n : n + limit].tolist())
        return drafts
