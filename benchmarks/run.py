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
from benchmarks.harness.served_models import MODEL_KINDS, served_kinds, served_messages, served_model
from tasc_vllm.eval.models import DEFAULT_MODEL

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


def bench_task(task_name: str, args, workdir: Path, log: Path, bar, kind: str | None = None) -> dict:
    """Every method on one task and one served model (``kind``; default: the first of
    ``--model``, or "default" on a task that has no fine-tune)."""
    from transformers import AutoTokenizer

    from tasc_vllm.config import load_config
    from tasc_vllm.eval.demo import prepare_task_index
    from tasc_vllm.eval.oracle import write_oracle_file
    from tasc_vllm.eval.runner import render_prompts
    from tasc_vllm.eval.tasks import get_task

    task = get_task(task_name)
    kind = kind or served_kinds(task_name, args.model)[0]
    bar.set_description(f"{task_name}: the {kind} model")
    model = served_model(task_name, kind, args.base_model)
    tokenizer = AutoTokenizer.from_pretrained(model)

    def messages(examples):
        return served_messages(model, examples)

    cfg = load_config()
    test = task.load("test")[: args.prompts]
    train = task.load("train")[: args.train_examples or None]  # the same examples for suffix and both indexes
    index = prepare_task_index(task, tokenizer, workdir, cfg.max_order, cfg.min_count, messages, train)
    prompts = render_prompts(tokenizer, messages(test))
    task_ctx = {
        "dir": str(workdir),
        "index": str(index),
        "train_prompts": render_prompts(tokenizer, messages(train)),
        "max_tokens": task.max_tokens,
    }
    if any(tasc_variant(m)[0] == "tasc-self" for m in args.methods):
        bar.set_description(f"{task_name}: model outputs on train prompts")
        task_ctx["self_index"] = str(own_output_index(task, model, tokenizer, args.dtype, len(train),
                                                      workdir / f"{task_name}-self.tasc", log, messages))
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
                bar.set_description(f"{task_name}, {kind}: {method}" + (f" batch {batches[0]}" if len(groups) > 1 else "")
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
        r["scores"] = task.scores(test, r["texts"])  # per prompt, for paired comparisons
        r["task_score"] = sum(r["scores"]) / len(test)
        r["same_as_baseline"] = sum(x == y for x, y in zip(r["texts"], b["texts"]))
        r["speedup_requests"] = r["requests_per_second"] / b["requests_per_second"]
        r["speedup_chars"] = r["chars_per_second"] / b["chars_per_second"]
    bar.set_description(f"{task_name}, {kind}: replay estimates")
    add_replay_estimates(runs, tokenizer, prompts, args.k)
    runs.sort(key=lambda r: (r["batch_size"], methods_order(args.methods).index(r["method"]), r["repeat"]))
    return {"task": task_name, "model": kind, "base_model": args.base_model or DEFAULT_MODEL, "model_path": model,
            "num_prompts": len(test),
            "train_examples": len(train), "runs": runs}


def add_replay_estimates(runs: list[dict], tokenizer, prompts: list[list[int]], k: int) -> None:
    """Beside each TASC-spec run, what the replay (:mod:`benchmarks.harness.replay`) predicts
    for it (``replay``): the same settings and index drafting over the answers of the plain run
    of the same batch size and repeat, served as many at a time, each step priced by the
    step-time model the engine's proposer measured in that run.  The gap between the two is
    what the replay, which ranks drafting policies without an engine, does not see."""
    from benchmarks.harness.replay import replay_estimate

    plain = {(r.get("repeat", 0), r["batch_size"]): r["token_ids"] for r in runs if r["method"] == "none"}
    for r in runs:
        cost = (r.get("proposer") or {}).get("step_cost")
        answers = plain.get((r.get("repeat", 0), r["batch_size"]))
        if r.get("tasc_settings") and cost and answers:
            r["replay"] = replay_estimate(tokenizer, prompts, answers, r["tasc_settings"], k, cost, r["batch_size"])


def compare_models(entries: list[dict]) -> None:
    """Each run's requests/s relative to the first model's plain run at its batch size and
    repeat (``speedup_vs_first_model``): the whole system, model and drafter together."""
    first = {(r.get("repeat", 0), r["batch_size"]): r for r in entries[0]["runs"] if r["method"] == "none"}
    for entry in entries:
        entry["first_model"] = entries[0]["model"]
        for r in entry["runs"]:
            b = first.get((r.get("repeat", 0), r["batch_size"]))
            r["speedup_vs_first_model"] = r["requests_per_second"] / b["requests_per_second"] if b else None


def load_unfinished(path: Path, settings: dict) -> dict | None:
    """The result file of a run to resume (``complete`` tells whether anything is left); None
    when there is no file.

    Refuses (ValueError) a file that is unreadable or made with other settings, since ratios
    must compare runs made alike.  ``settings["tasks"]`` may add tasks to those the file
    holds (a finished file then has them left to measure), never drop one."""
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
    # --tasks may name more tasks than the file holds: each task is measured whole on its own
    differ = sorted(k for k in set(settings) | set(earlier)
                    if k not in ("resume", "name", "tasks") and settings.get(k) != earlier.get(k))
    if differ:
        shown = "; ".join(f"{k}: {earlier.get(k)!r} there, {settings.get(k)!r} now" for k in differ)
        raise ValueError(f"cannot resume {path}: it was measured with other settings ({shown})")
    unknown = [t for t in done if t not in settings["tasks"]]
    if unknown:
        raise ValueError(f"cannot resume {path}: it holds tasks {unknown} outside --tasks")
    out["settings"]["tasks"] = list(settings["tasks"])
    out["complete"] = out.get("complete", False) and set(settings["tasks"]) <= set(done)
    out.setdefault("seconds", 0.0)
    out.setdefault("invocations", [{"started_unix": out.get("started_unix"), "tasks": done}])
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="a small subset for development: usaddress, batch 1 and 16, 16 prompts, 128 train "
                        f"examples, methods {','.join(QUICK_METHODS)} unless --methods is given")
    p.add_argument("--tasks", default="usaddress,bfcl,humaneval")
    p.add_argument("--model", default="fine-tuned",
                   help="the model(s) served on usaddress and BFCL, comma-separated: fine-tuned (their --no-enrich "
                        "fine-tune, the default; built once and cached, about 20 min for usaddress and 45 for BFCL "
                        "here), tasc-ft (the TASC-ft model), default (the base model as it ships: see --base-model; "
                        "the default model does not do these tasks). With several, each is measured in turn and "
                        "compared with the first model's plain run: the whole system. HumanEval has too few "
                        "examples to tune on and always serves the base model as it ships")
    p.add_argument("--base-model", default=None,
                   help="the model the fine-tunes start from, and that `default` serves as it ships: a known name "
                        "(smollm2-135m-instruct, the default; gemma-3-270m) or a Hugging Face checkpoint folder")
    p.add_argument("--batches", default="1,4,16,64")
    p.add_argument("--methods", default=None,
                   help="comma-separated (default: all); tasc@NAME=V+NAME=V measures TASC-spec with other settings")
    p.add_argument("--prompts", type=int, default=64, help="held-out prompts per task")
    p.add_argument("--train-examples", type=int, default=256,
                   help="the first N train examples, the same for every method: suffix decoding is warmed on "
                        "their prompts, the tasc index holds their reference answers, the tasc-self index the "
                        "model's answers to them (0: the whole train split)")
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
        args.tasks, args.batches, args.prompts, args.train_examples = "usaddress", "1,16", 16, 128
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
    if any(m.startswith("suffix") for m in args.methods):
        import importlib.util

        if importlib.util.find_spec("arctic_inference") is None:  # vLLM's suffix method fails only at engine start
            p.error("the suffix methods need arctic-inference, which is not installed: `make bench` builds it "
                    "(or: pip install nanobind grpcio-tools && pip install --no-build-isolation arctic-inference)")
    bad = [m for m in args.model.split(",") if m not in MODEL_KINDS]
    if bad or not args.model.strip(","):
        p.error(f"--model: unknown model(s) {bad or [args.model]}; known: {', '.join(MODEL_KINDS)}")
    if args.base_model is not None:
        from tasc_vllm.errors import TascError
        from tasc_vllm.eval.models import KNOWN_MODELS, resolve_model

        try:
            resolved = resolve_model(args.base_model)
        except TascError as e:
            p.error(f"--base-model: {e}")
        # a known name stays a name (it labels the report); a folder is kept as its absolute path
        args.base_model = args.base_model.strip().lower() if args.base_model.strip().lower() in KNOWN_MODELS \
            else resolved

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

    RESULTS.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    here = machine()
    out = earlier or {"name": name, "started_unix": int(t0), "machine": here, "settings": settings,
                      "tasks": [], "seconds": 0.0}
    kept = list(dict.fromkeys(t["task"] for t in out["tasks"]))  # a task is kept whole, with every model it serves
    if earlier is None:
        log.write_text("")
    else:
        print(f"resuming {path}: keeping {', '.join(kept) or 'no task'}; measuring the rest", file=sys.stderr)
        with log.open("a") as f:
            f.write(f"\n=== resumed {time.strftime('%Y-%m-%d %H:%M:%S')}, keeping {kept} ===\n")
    out.setdefault("invocations", []).append({"started_unix": int(t0), "machine": here, "tasks": []})
    seconds_before = out["seconds"]
    todo = [task for task in args.tasks if task not in kept]
    per_model = len(args.batches) * len(methods_order(args.methods)) * args.repeats
    total = sum(len(served_kinds(t, args.model)) for t in args.tasks) * per_model
    done = sum(len(served_kinds(t, args.model)) for t in kept) * per_model

    def save(complete: bool) -> None:
        """Write what is measured so far: a long run cut short keeps its finished tasks."""
        out["seconds"] = seconds_before + time.time() - t0
        out["complete"] = complete
        for t in out["tasks"]:
            for r in t["runs"]:
                r.pop("token_ids", None)
        path.write_text(json.dumps(out, indent=1))

    with tempfile.TemporaryDirectory(prefix="tasc-bench-") as d, \
            tqdm(total=total, initial=done, unit="run") as bar:
        for task_name in todo:
            entries = [bench_task(task_name, args, Path(d), log, bar, kind)
                       for kind in served_kinds(task_name, args.model)]
            if len(entries) > 1:
                compare_models(entries)
            out["tasks"] += entries
            out["invocations"][-1]["tasks"].append(task_name)
            save(complete=False)
    out["tasks"].sort(key=lambda t: args.tasks.index(t["task"]))  # stable: a task's models keep their order
    save(complete=True)
    written = report.write_report()
    print(f"wrote {path} and {written} in {out['seconds'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
