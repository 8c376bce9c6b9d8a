"""An index of the model's own answers, as a deployed server would log them."""

from __future__ import annotations

from pathlib import Path


def own_output_index(task, model: str, tokenizer, dtype: str, prompts: int, path: Path, log: Path) -> Path:
    """An index of the model's own greedy outputs on the first ``prompts`` train prompts, as a
    deployed server would log them, written to ``path`` and tokenized for ``tokenizer``."""
    from tasc_vllm.config import load_config
    from tasc_vllm.eval.runner import render_prompts, run_in_subprocess
    from tasc_vllm.index.index_file import read_index, write_index
    from tasc_vllm.index.ngram_cache import load_tokenized

    train = task.load("train")[:prompts]
    own = run_in_subprocess({
        "model": model, "dtype": dtype, "method": "none", "batch_size": 16, "progress": False,
        "prompt_token_ids": render_prompts(tokenizer, [e.messages for e in train]),
        "max_tokens": [task.max_tokens] * len(train),
    }, log_path=log)
    write_index([t for t in own["texts"] if t.strip()] or ["-"], path,
                source=f"{task.name}:train model outputs", field="output")
    cfg = load_config()
    load_tokenized(read_index(path), tokenizer, cfg.max_order, cfg.min_count)
    return path
