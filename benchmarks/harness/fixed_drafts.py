"""A drafter that proposes a fixed number of copies of one token: what verifying a draft
costs, measured without a drafter's own choices in the way (``benchmarks.verify_cost``).

vLLM builds it by its class path, ``{"method": "custom_class", "model":
"benchmarks.harness.fixed_drafts.FixedDrafts"}``.  Its variables are not named ``TASC_*``:
that prefix belongs to TASC-spec's settings (:mod:`tasc_vllm.config` refuses unknown ones).
"""

from __future__ import annotations

import os
from pathlib import Path

CLASS_PATH = "benchmarks.harness.fixed_drafts.FixedDrafts"
LENGTH_FILE_ENV = "BENCH_FIXED_DRAFTS_FILE"  # names the file holding L
TOKEN_ENV = "BENCH_FIXED_DRAFTS_TOKEN"  # the token drafted (default: the vocabulary's last)


class FixedDrafts:
    """A ``custom_class`` drafter that proposes L copies of one token for every decoding row;
    L is read every step from the file named by ``BENCH_FIXED_DRAFTS_FILE``."""

    def __init__(self, vllm_config):
        path = os.environ.get(LENGTH_FILE_ENV)
        if not path:
            raise RuntimeError(f"FixedDrafts needs {LENGTH_FILE_ENV} to name a file holding the draft length")
        self.path = path
        self.k = int(vllm_config.speculative_config.num_speculative_tokens)
        vocab = int(vllm_config.model_config.get_vocab_size())
        self.token = int(os.environ.get(TOKEN_ENV, vocab - 1))

    def load_model(self, *args, **kwargs) -> None:
        pass

    def propose(self, sampled_token_ids, num_tokens_no_spec, token_ids_cpu, slot_mappings=None, **kwargs):
        length = min(self.k, int(Path(self.path).read_text()))
        return [[self.token] * length if len(s) else [] for s in sampled_token_ids]
