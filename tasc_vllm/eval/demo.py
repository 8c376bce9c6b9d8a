"""``make demo``: vLLM without and with TASC-spec on held-out prompts of the default task."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tasc_vllm.paths import cache_dir


def _step(msg: str) -> None:
    print(f"\n== {msg}", flush=True)


def prepare_task_index(task, tokenizer, out_dir: Path, max_order: int, min_count: int = 1) -> Path:
    """Index of the task's train-split reference outputs, tokenized for ``tokenizer``."""
    from tasc_vllm.index.index_file import read_index, write_index
    from tasc_vllm.index.ngram_cache import load_tokenized

    path = out_dir / f"{task.name}-train.tasc"
    texts = [e.reference for e in task.load("train")]
    write_index(texts, path, source=f"{task.name}:train", field="output")
    load_tokenized(read_index(path), tokenizer, max_order, min_count, progress=True)
    return path


def comparison_row(name: str, run: dict, base: dict) -> dict:
    same = sum(a == b for a, b in zip(run["texts"], base["texts"]))
    sm = run.get("spec_metrics", {})
    return {
        "method": name,
        "tokens/s": run["tokens_per_second"],
        "requests/s": run["requests_per_second"],
        "speed-up": run["requests_per_second"] / base["requests_per_second"],
        "accept len": sm.get("mean_acceptance_length"),
        "same as base": f"{same}/{len(base['texts'])}",
    }


def print_table(rows: list[dict]) -> None:
    headers = list(rows[0])
    cells = [[_fmt(r[h]) for h in headers] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    print("  ".join(h.rjust(w) for h, w in zip(headers, widths)))
    for c in cells:
        print("  ".join(v.rjust(w) for v, w in zip(c, widths)))


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.2f}"
    return str(v)


def run_demo(num_prompts: int = 32, k: int = 8, batch_size: int = 1, task_name: str = "usaddress") -> dict:
    from transformers import AutoTokenizer

    from tasc_vllm.config import load_config
    from tasc_vllm.eval.models import materialize
    from tasc_vllm.eval.runner import render_prompts, run_in_subprocess
    from tasc_vllm.eval.tasks import get_task

    t_start = time.perf_counter()
    work = cache_dir("demo")
    _step("1/4 default model")
    model = str(materialize())
    print(model)
    tokenizer = AutoTokenizer.from_pretrained(model)

    _step(f"2/4 task {task_name}: index of the train outputs")
    task = get_task(task_name)
    cfg = load_config()
    index = prepare_task_index(task, tokenizer, work, cfg.max_order, cfg.min_count)
    test = task.load("test")[:num_prompts]
    prompts = render_prompts(tokenizer, [e.messages for e in test])
    print(f"{index}; {len(test)} held-out prompts")

    common = {
        "model": model,
        "prompt_token_ids": prompts,
        "max_tokens": [task.max_tokens] * len(prompts),
        "batch_size": batch_size,
        "num_speculative_tokens": k,
        "warmup_prompt_token_ids": render_prompts(tokenizer, [[{"role": "user", "content": "Say hello."}]])[0],
    }
    log = work / "demo-engines.log"
    log.write_text("")
    _step(f"3/4 vLLM without speculation (batch {batch_size}); engine log: {log}")
    base = run_in_subprocess({**common, "method": "none"}, log_path=log)
    print(f"{base['tokens_per_second']:.1f} tokens/s")
    _step(f"4/4 vLLM with TASC-spec (k={k})")
    tasc = run_in_subprocess({**common, "method": "tasc", "tasc": {"index": str(index)}}, log_path=log)
    print(f"{tasc['tokens_per_second']:.1f} tokens/s")

    rows = [comparison_row("vLLM", base, base), comparison_row("vLLM + TASC-spec", tasc, base)]
    quality = {
        name: sum(task.score(e, t) for e, t in zip(test, r["texts"])) / len(test)
        for name, r in (("vLLM", base), ("vLLM + TASC-spec", tasc))
    }
    for r in rows:
        r["task score"] = quality[r["method"]]
    print(f"\nTASC demo: {task_name}, {len(test)} held-out prompts, batch {batch_size}, k={k}, "
          f"default model (bf16, CPU); {time.perf_counter() - t_start:.0f} s in all")
    print_table(rows)
    result = {"rows": rows, "task": task_name, "k": k, "batch_size": batch_size, "prompts": len(test),
              "outputs": {"vLLM": base["texts"], "vLLM + TASC-spec": tasc["texts"]}}
    (work / "demo-result.json").write_text(json.dumps(result, indent=2))
    return result
