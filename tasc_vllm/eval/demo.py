"""``make demo``: the default model, fine-tuned on the default task, served by vLLM without and
with TASC-spec on held-out prompts, with the task score beside the speed."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tasc_vllm.errors import TascError
from tasc_vllm.paths import cache_dir


def _step(msg: str) -> None:
    print(f"\n== {msg}", flush=True)


def prepare_task_index(task, tokenizer, out_dir: Path, max_order: int, min_count: int = 1, messages=None,
                       train=None) -> Path:
    """Index of the task's train-split reference outputs (or of the examples ``train``) with
    their prompts (each example's chat messages as text: ``messages(examples)`` when given,
    else the task's own), tokenized for ``tokenizer``."""
    from tasc_vllm.index.corpus import prompt_text
    from tasc_vllm.index.index_file import read_index, write_index
    from tasc_vllm.index.ngram_cache import load_tokenized

    path = out_dir / f"{task.name}-train.tasc"
    train = task.load("train") if train is None else train
    write_index([e.reference for e in train], path, source=f"{task.name}:train", field="output",
                prompts=[prompt_text(m) for m in (messages(train) if messages else [e.messages for e in train])])
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


def finetune_flags(steps: int) -> list[str]:
    """The demo's fine-tune: the task's train split, the model's own vocabulary
    (``--no-enrich``), one round of ``steps`` steps at a peak learning rate of 5e-4 (five
    times the tool's default, so a short fine-tune learns the task) under bfloat16 autocast.
    100 steps take 6 to 8 minutes on 2 CPU cores and reach 0.06 to 0.16 exact match on
    usaddress, by the CPU (the tool's 300 steps at 1e-4: 0.53)."""
    return ["--no-enrich", "--rounds", "1", "--steps-per-round", str(steps), "--lr", "5e-4", "--bf16"]


def summary_rows(rows: list[dict], model: str) -> list[dict]:
    """What ``tasc-vllm demo --json`` writes: per row its method, model, tokens/s, speed-up
    and task score."""
    return [{"method": r["method"], "model": model, "tokens_per_second": r["tokens/s"],
             "speed_up": r["speed-up"], "task_score": r["task score"]} for r in rows]


def run_demo(num_prompts: int = 32, k: int = 8, batch_size: int = 1, task_name: str = "usaddress",
             finetune_steps: int = 100, json_path: str | None = None) -> dict:
    """Fine-tune the default model on the task's train split (once; cached), then serve the
    task's held-out prompts with vLLM without and with TASC-spec, and score both."""
    from transformers import AutoTokenizer

    from tasc_vllm.config import load_config
    from tasc_vllm.eval.finetunes import finetune
    from tasc_vllm.eval.models import DEFAULT_MODEL, materialize
    from tasc_vllm.eval.runner import render_prompts, run_in_subprocess
    from tasc_vllm.eval.tasks import get_task

    if finetune_steps < 1:
        raise TascError(f"--finetune-steps must be at least 1 (got {finetune_steps})")
    t_start = time.perf_counter()
    work = cache_dir("demo")
    task = get_task(task_name)
    _step("1/5 default model")
    print(materialize())
    _step(f"2/5 the default model fine-tuned on {task.name}'s train split ({finetune_steps} steps; "
          "built on first use, then cached)")
    model = str(finetune(task.name, finetune_flags(finetune_steps), f"demo-s{finetune_steps}"))
    model_name = f"{DEFAULT_MODEL} fine-tuned on {task.name} ({finetune_steps} steps)"
    print(model)
    tokenizer = AutoTokenizer.from_pretrained(model)

    _step(f"3/5 task {task.name}: index of the train outputs")
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
    _step(f"4/5 vLLM without speculation (batch {batch_size}); engine log: {log}")
    base = run_in_subprocess({**common, "method": "none"}, log_path=log)
    print(f"{base['tokens_per_second']:.1f} tokens/s")
    _step(f"5/5 vLLM with TASC-spec (k={k})")
    tasc = run_in_subprocess({**common, "method": "tasc", "tasc": {"index": str(index)}}, log_path=log)
    print(f"{tasc['tokens_per_second']:.1f} tokens/s")

    runs = {"vLLM": base, "vLLM + TASC-spec": tasc}
    scores = {name: task.scores(test, r["texts"]) for name, r in runs.items()}
    rows = [comparison_row(name, r, base) for name, r in runs.items()]
    for r in rows:
        r["task score"] = sum(scores[r["method"]]) / len(test)

    answers, tasc_scores = tasc["texts"], scores["vLLM + TASC-spec"]
    for label, want in (("one it answers right", True), ("one it gets wrong", False)):
        i = next((i for i, sc in enumerate(tasc_scores) if (sc == 1.0) == want), None)
        if i is not None:
            print(f"\nHeld-out example, {label}: {test[i].prompt}")
            print(f"  reference:        {test[i].reference}")
            print(f"  vLLM + TASC-spec: {answers[i].strip()}")
    print(f"\nTASC demo: {task.name} ({task.description}), {len(test)} held-out prompts, batch {batch_size}, "
          f"k={k}, {model_name}, bf16; {time.perf_counter() - t_start:.0f} s in all")
    print_table(rows)
    result = {"rows": rows, "task": task.name, "model": model_name, "model_path": model, "k": k,
              "batch_size": batch_size, "prompts": len(test),
              "outputs": {name: r["texts"] for name, r in runs.items()}}
    (work / "demo-result.json").write_text(json.dumps(result, indent=2))
    if json_path:
        Path(json_path).write_text(json.dumps({"task": task.name, "prompts": len(test), "batch_size": batch_size,
                                               "k": k, "rows": summary_rows(rows, model_name)}, indent=2) + "\n")
        print(f"summary written to {json_path}")
    return result
