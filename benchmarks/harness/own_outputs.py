"""An index of the model's own answers, as a deployed server would log them."""

from __future__ import annotations

from pathlib import Path


def own_output_index(task, model: str, tokenizer, dtype: str, prompts: int, path: Path, log: Path,
                     messages=None) -> Path:
    """An index of the model's own greedy outputs on the first ``prompts`` train prompts, with
    those prompts, as a deployed server would log them, written to ``path`` and tokenized for
    ``tokenizer``.  ``messages(examples)``: the chat messages served (default: the task's)."""
    from tasc_vllm.eval.runner import render_prompts, run_in_subprocess

    train = task.load("train")[:prompts]
    conversations = messages(train) if messages else [e.messages for e in train]
    own = run_in_subprocess({
        "model": model, "dtype": dtype, "method": "none", "batch_size": 16, "progress": False,
        "prompt_token_ids": render_prompts(tokenizer, conversations),
        "max_tokens": [task.max_tokens] * len(train),
    }, log_path=log)
    return write_own_index(task.name, conversations, own["texts"], path, tokenizer)


def write_own_index(task_name: str, conversations: list, answers: list[str], path: Path, tokenizer) -> Path:
    """An index of the model's ``answers`` to ``conversations`` (empty answers left out) at
    ``path``, tokenized for ``tokenizer``."""
    from tasc_vllm.config import load_config
    from tasc_vllm.index.corpus import prompt_text
    from tasc_vllm.index.index_file import read_index, write_index
    from tasc_vllm.index.ngram_cache import load_tokenized

    kept = [(c, t) for c, t in zip(conversations, answers) if t.strip()] or [(conversations[0], "-")]
    write_index([t for _, t in kept], path, source=f"{task_name}:train model outputs", field="output",
                prompts=[prompt_text(c) for c, _ in kept])
    cfg = load_config()
    load_tokenized(read_index(path), tokenizer, cfg.max_order, cfg.min_count)
    return path
