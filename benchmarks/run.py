"""TASC-spec side by side with vLLM's baselines, speed and quality, in one invocation.

    python -m benchmarks.run [--quick] [--tasks usaddress,bfcl] [--batches 1,16] [--methods ...]

Every method runs on the same held-out prompts in a fresh engine process; ratios compare
runs made in this invocation only.  ``tasc@NAME=V+NAME=V`` measures TASC-spec with other
settings (:mod:`benchmarks.harness.methods`), passed to the engine in vLLM's
``additional_config["tasc"]``. ``--resume`` continues a run that was cut short: the
tasks already measured are kept and the others run, each task's methods still side by
side. Writes ``benchmarks/results/<name>.json`` and regenerates ``benchmarks/RESULTS.md``
with its plots.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from tqdm import tqdm

from benchmarks import report
from benchmarks.harness.machine import machine
from benchmarks.harness.methods import keeps_state, methods_order, tasc_variant, unknown_methods
from benchmarks.harness.own_outputs import own_output_index
from benchmarks.harness.paths import RESULTS

ALL_METHODS = ("none", "ngram", "suffix-cold", "suffix-warm", "tasc", "tasc-self", "oracle")
QUICK_METHODS = ("none", "suffix-warm", "tasc", "oracle")  # the baseline, the strongest rival, TASC-spec, the ceiling


def run_method(method: str, common: dict, task_ctx: dict, log: Path) -> list[dict]:
    """One engine for ``method`` over ``common["batch_sizes"]``: one result per batch size."""
    from tasc_vllm.eval.runner import run_in_subprocess

    spec = dict(common)
    base, variant = tasc_variant(method)
    if method.startswith("suffix"):
        spec["method"] = "suffix"
        if method == "suffix-warm":
            spec["train_prompt_token_ids"] = task_ctx["train_prompts"]
            spec["train_max_tokens"] = task_ctx["max_tokens"]
    elif base in ("tasc", "tasc-self"):
        spec["method"] = "tasc"
        stats = Path(task_ctx["dir"]) / f"tasc-stats-{method.replace('/', '_')}.json"
        stats.unlink(missing_ok=True)
        index = task_ctx["index"] if base == "tasc" else task_ctx["self_index"]
        spec["tasc"] = {**variant, "index": index, "stats_path": str(stats)}  # additional_config["tasc"]
    elif method == "oracle":
        spec["method"] = "oracle"
        spec["env"] = {"TASC_ORACLE_FILE": task_ctx["oracle"]}
    else:
        spec["method"] = method
    runs = run_in_subprocess(spec, log_path=log)["runs"]
    for r in runs:
        r["method"] = method
        if spec["method"] == "tasc":  # the exact settings, since defaults change between versions
            from tasc_vllm.config import load_config

            r["tasc_settings"] = load_config({"tasc": spec["tasc"]}, environ=os.environ).to_dict()
    return runs


def bench_task(task_name: str, args, model: str, tokenizer, workdir: Path, log: Path, bar) -> dict:
    from tasc_vllm.config import load_config
    from tasc_vllm.eval.demo import prepare_task_index
    from tasc_vllm.eval.oracle import write_oracle_file
    from tasc_vllm.eval.runner import render_prompts
    from tasc_vllm.eval.tasks import get_task

    task = get_task(task_name)
    cfg = load_config()
    index = prepare_task_index(task, tokenizer, workdir, cfg.max_order, cfg.min_count)
    test = task.load("test")[: args.prompts]
    train = task.load("train")[: args.warm_prompts]
    prompts = render_prompts(tokenizer, [e.messages for e in test])
    task_ctx = {
        "dir": str(workdir),
        "index": str(index),
        "train_prompts": render_prompts(tokenizer, [e.messages for e in train]),
        "max_tokens": task.max_tokens,
    }
    if any(tasc_variant(m)[0] == "tasc-self" for m in args.methods):
        bar.set_description(f"{task_name}: model outputs on train prompts")
        task_ctx["self_index"] = str(own_output_index(task, model, tokenizer, args.dtype, args.self_prompts,
                                                      workdir / f"{task_name}-self.tasc", log))
    common = {
        "model": model,
        "dtype": args.dtype,
        "prompt_token_ids": prompts,
        "max_tokens": [task.max_tokens] * len(prompts),
        "batch_sizes": args.batches,
        # every engine is built alike, whatever batch sizes it measures (suffix warms faster too)
        "max_num_seqs": max(args.batches),
        "num_speculative_tokens": args.k,
        "enforce_eager": not args.compiled,
        "progress": False,
        "warmup_prompt_token_ids": render_prompts(tokenizer, [[{"role": "user", "content": "Say hello."}]])[0],
    }
    runs = []
    others = [m for m in args.methods if m != "none"]
    for rep in range(args.repeats):
        # repeats alternate the order, so a drift in the machine's speed favours no method
        for method in ["none"] + others if rep % 2 == 0 else others[::-1] + ["none"]:
            groups = [[b] for b in args.batches] if keeps_state(method) else [args.batches]
            for batches in groups:
                bar.set_description(f"{task_name}: {method}" + (f" batch {batches[0]}" if len(groups) > 1 else "")
                                    + (f" (repeat {rep + 1} of {args.repeats})" if args.repeats > 1 else ""))
                got = run_method(method, {**common, "batch_sizes": batches}, task_ctx, log)
                for r in got:
                    r["repeat"] = rep
                runs += got
                bar.update(len(got))
            if method == "none" and rep == 0:
                # the oracle proposes the baseline's own continuation (at any batch size; they may differ in bf16)
                oracle = workdir / f"oracle-{task_name}.json"
                write_oracle_file(oracle, [(p, o) for r in runs for p, o in zip(prompts, r["token_ids"])])
                task_ctx["oracle"] = str(oracle)
    base = {(r["repeat"], r["batch_size"]): r for r in runs if r["method"] == "none"}
    for r in runs:
        b = base[(r["repeat"], r["batch_size"])]
        r["task_score"] = sum(task.score(e, t) for e, t in zip(test, r["texts"])) / len(test)
        r["same_as_baseline"] = sum(x == y for x, y in zip(r["texts"], b["texts"]))
        r["speedup_requests"] = r["requests_per_second"] / b["requests_per_second"]
        r["speedup_chars"] = r["chars_per_second"] / b["chars_per_second"]
    runs.sort(key=lambda r: (r["batch_size"], methods_order(args.methods).index(r["method"]), r["repeat"]))
    return {"task": task_name, "num_prompts": len(test), "runs": runs}


def load_unfinished(path: Path, settings: dict) -> dict | None:
    """The result file of a run to resume (``complete`` tells whether anything is left); None
    when there is no file.

    Refuses (ValueError) a file that is unreadable or made with other settings, since ratios
    must compare runs made alike."""
    if not path.exists():
        return None
    try:
        out = json.loads(path.read_text())
        earlier, tasks = dict(out["settings"]), list(out["tasks"])
        done = [t["task"] for t in tasks]
        if not all(isinstance(t["runs"], list) for t in tasks):
            raise TypeError("a task's runs are not a list")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"cannot resume from {path}: not a benchmarks.run result file "
                         f"({type(e).__name__}: {e})") from None
    earlier.setdefault("repeats", 1)  # files from before --repeats measured once
    differ = sorted(k for k in set(settings) | set(earlier) if k not in ("resume", "name") and settings.get(k) != earlier.get(k))
    if differ:
        shown = "; ".join(f"{k}: {earlier.get(k)!r} there, {settings.get(k)!r} now" for k in differ)
        raise ValueError(f"cannot resume {path}: it was measured with other settings ({shown})")
    unknown = [t for t in done if t not in settings["tasks"]]
    if unknown:
        raise ValueError(f"cannot resume {path}: it holds tasks {unknown} outside --tasks")
    out.setdefault("seconds", 0.0)
    out.setdefault("invocations", [{"started_unix": out.get("started_unix"), "tasks": done}])
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="a small subset for development, under 10 minutes here: usaddress, batch 1 and 16, "
                        f"12 prompts, methods {','.join(QUICK_METHODS)} unless --methods is given")
    p.add_argument("--tasks", default="usaddress,bfcl,humaneval")
    p.add_argument("--batches", default="1,4,16,64")
    p.add_argument("--methods", default=None,
                   help="comma-separated (default: all); tasc@NAME=V+NAME=V measures TASC-spec with other settings")
    p.add_argument("--prompts", type=int, default=64, help="held-out prompts per task")
    p.add_argument("--warm-prompts", type=int, default=64, help="train prompts that warm suffix decoding")
    p.add_argument("--self-prompts", type=int, default=256, help="train prompts whose model outputs form the tasc-self index")
    p.add_argument("--k", type=int, default=16)
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--compiled", action="store_true",
                   help="engines as `vllm serve` starts them by default (torch.compile; about 1 min more per "
                        "engine start) instead of enforce_eager")
    p.add_argument("--repeats", type=int, default=1,
                   help="measure every method this many times per task, the order reversed on every other "
                        "repeat; each ratio compares runs of one repeat, and the report gives their median "
                        "and range")
    p.add_argument("--name", default=None, help="result file name (default: quick or full)")
    p.add_argument("--resume", action="store_true",
                   help="continue a run that was cut short: keep the tasks its result file already holds "
                        "(same settings required) and measure the rest; each task's methods still run "
                        "side by side in one invocation")
    args = p.parse_args(argv)
    if args.quick:
        args.tasks, args.batches, args.prompts, args.warm_prompts, args.self_prompts = "usaddress", "1,16", 12, 32, 96
        args.methods = args.methods or ",".join(QUICK_METHODS)
    args.methods = args.methods or ",".join(ALL_METHODS)
    args.tasks = [t for t in args.tasks.split(",") if t]
    args.batches = [int(b) for b in args.batches.split(",") if b]
    args.methods = [m for m in args.methods.split(",") if m]
    try:
        unknown = unknown_methods(args.methods, ALL_METHODS)
    except ValueError as e:
        p.error(str(e))
    if unknown:
        p.error(f"unknown method(s) {sorted(set(unknown))}; known: {', '.join(ALL_METHODS)} "
                "(tasc and tasc-self take settings: tasc@threshold=0.2+calibrate=0)")
    if args.repeats < 1:
        p.error(f"--repeats must be at least 1 (got {args.repeats})")

    name = args.name or ("quick" if args.quick else "full")
    path = RESULTS / f"{name}.json"
    log = RESULTS / f"{name}-engines.log"
    settings = {k: v for k, v in vars(args).items() if k != "resume"}
    try:
        earlier = load_unfinished(path, settings) if args.resume else None
    except ValueError as e:
        p.error(str(e))
    if earlier is not None and earlier.get("complete"):
        print(f"{path} holds a finished run with these settings: nothing to resume (drop --resume to measure "
              "again)", file=sys.stderr)
        return 0

    from transformers import AutoTokenizer

    from tasc_vllm.eval.models import materialize

    model = str(materialize())
    tokenizer = AutoTokenizer.from_pretrained(model)
    RESULTS.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    here = machine()
    out = earlier or {"name": name, "started_unix": int(t0), "machine": here, "settings": settings,
                      "tasks": [], "seconds": 0.0}
    kept = [t["task"] for t in out["tasks"]]
    if earlier is None:
        log.write_text("")
    else:
        print(f"resuming {path}: keeping {', '.join(kept) or 'no task'}; measuring the rest", file=sys.stderr)
        with log.open("a") as f:
            f.write(f"\n=== resumed {time.strftime('%Y-%m-%d %H:%M:%S')}, keeping {kept} ===\n")
    out.setdefault("invocations", []).append({"started_unix": int(t0), "machine": here, "tasks": []})
    seconds_before = out["seconds"]
    todo = [task for task in args.tasks if task not in kept]
    per_task = len(args.batches) * len(methods_order(args.methods)) * args.repeats

    def save(complete: bool) -> None:
        """Write what is measured so far: a long run cut short keeps its finished tasks."""
        out["seconds"] = seconds_before + time.time() - t0
        out["complete"] = complete
        for t in out["tasks"]:
            for r in t["runs"]:
                r.pop("token_ids", None)
        path.write_text(json.dumps(out, indent=1))

    with tempfile.TemporaryDirectory(prefix="tasc-bench-") as d, \
            tqdm(total=len(args.tasks) * per_task, initial=(len(args.tasks) - len(todo)) * per_task, unit="run") as bar:
        for task_name in todo:
            out["tasks"].append(bench_task(task_name, args, model, tokenizer, Path(d), log, bar))
            out["invocations"][-1]["tasks"].append(task_name)
            save(complete=False)
    out["tasks"].sort(key=lambda t: args.tasks.index(t["task"]))
    save(complete=True)
    written = report.write_report()
    print(f"wrote {path} and {written} in {out['seconds'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
