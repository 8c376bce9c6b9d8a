"""Online: ``vllm serve`` with each method, driven by vLLM's own ``vllm bench serve``.

    python -m benchmarks.online [--tasks usaddress,bfcl] [--model fine-tuned|tasc-ft|default]
                                [--methods none,ngram,suffix,tasc,tasc-static]
                                [--concurrency 1,4,16] [--prompts 24] [--k 16] [--compiled]

``--model`` is the model served on usaddress and BFCL, as in ``benchmarks.run``: their
``--no-enrich`` fine-tune by default (built once and cached), the TASC-ft model, or the default
model as it ships (which does not do these tasks).  A task without a fine-tune (HumanEval)
serves the default model.

``tasc@NAME=V+NAME=V`` in ``--methods`` serves TASC-spec with other settings, as in
``benchmarks.run``: TASC-spec's settings reach the server as ``--additional-config
'{"tasc": {...}}'``.

For every method a fresh server starts (bf16 by default), answers one warm-up request, and
is then driven at each concurrency in turn by ``vllm bench serve`` with a custom dataset of
held-out task prompts (in the served model's own format, rendered with its chat template;
greedy; ``max_tokens`` the task's budget).  Each concurrency level gets its own slice of the
test split, the same slice for every method: ``suffix`` learns from what it serves, so reusing
prompts would hand it the answers.  It starts cold, as a freshly deployed server does; so
does TASC-spec's online learning (``tasc``), and ``tasc-static`` is TASC-spec with learning
off.

Per level: requests/s, output tokens/s, TTFT, TPOT, ITL and end-to-end latency (median and
p99, from ``vllm bench serve``), vLLM's speculative-decoding counters (from ``/metrics``),
the task score of the outputs and how many equal the baseline's.  Writes
``benchmarks/results/<name>.json`` and regenerates ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import report
from benchmarks.harness.machine import machine
from benchmarks.harness.methods import tasc_variant, unknown_methods
from benchmarks.harness.paths import RESULTS
from benchmarks.harness.served_models import MODEL_KINDS, served_kinds, served_messages, served_model
from benchmarks.harness.server import counter_delta, spec_counters, vllm_bin, vllm_server
from tasc_vllm.prompt_format import render_chat

METHODS = ("none", "ngram", "suffix", "tasc", "tasc-static")
# short names for TASC-spec variants: tasc-static is TASC-spec without online learning, to show
# what learning while serving adds
ALIASES = {"tasc-static": "tasc@learn_entries=0"}
METRICS = ("ttft", "tpot", "itl", "e2el")


def write_dataset(path: Path, tokenizer, messages: list[list[dict]], max_tokens: int) -> Path:
    """The custom dataset of ``vllm bench serve``: each request's chat messages rendered with
    the served model's template, one JSON per line."""
    with open(path, "w", encoding="utf-8") as f:
        for m in messages:
            text = render_chat(tokenizer, m)
            f.write(json.dumps({"prompt": text, "output_tokens": max_tokens}) + "\n")
    return path


def bench_serve(base: str, model: str, dataset: Path, n: int, concurrency: int, max_tokens: int,
                folder: Path, log) -> dict:
    """One ``vllm bench serve`` run; returns its saved result (with the generated texts)."""
    name = f"c{concurrency}-{time.monotonic_ns()}.json"
    cmd = [vllm_bin(), "bench", "serve", "--backend", "vllm", "--base-url", base, "--endpoint", "/v1/completions",
           "--model", model, "--tokenizer", model, "--dataset-name", "custom", "--dataset-path", str(dataset),
           "--skip-chat-template", "--disable-shuffle", "--custom-output-len", str(max_tokens),
           "--num-prompts", str(n), "--max-concurrency", str(concurrency), "--request-rate", "inf",
           "--temperature", "0", "--seed", "0", "--percentile-metrics", ",".join(METRICS),
           "--metric-percentiles", "50,99", "--save-result", "--save-detailed", "--result-dir", str(folder),
           "--result-filename", name, "--disable-tqdm"]
    done = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise RuntimeError(f"vllm bench serve failed with exit code {done.returncode}; see {log.name}")
    return json.loads((folder / name).read_text())


def summarize(raw: dict, spec: dict) -> dict:
    """The figures kept from one ``vllm bench serve`` result and the spec-decode counters."""
    keep = {k: raw[k] for k in ("duration", "completed", "failed", "total_input_tokens", "total_output_tokens",
                                "request_throughput", "output_throughput")}
    for m in METRICS:
        for stat in ("mean", "median", "p99"):
            keep[f"{stat}_{m}_ms"] = raw.get(f"{stat}_{m}_ms")
    drafts = spec.get("num_drafts", 0)
    keep["spec_decode"] = {
        **spec,
        # as vLLM logs it: 1 + accepted tokens per draft
        "mean_acceptance_length": 1 + spec.get("num_accepted_tokens", 0) / drafts if drafts else None,
    }
    keep["errors"] = [e for e in raw.get("errors", []) if e]
    return keep


def server_config(method: str, k: int, index: Path) -> tuple[dict | None, dict | None]:
    """``vllm serve``'s ``--speculative-config`` and ``--additional-config`` for ``method``:
    TASC-spec (and its variants) gets its index and settings under ``"tasc"``, the others no
    additional config."""
    from tasc_vllm.eval.runner import speculative_config

    base_method, settings = tasc_variant(ALIASES.get(method, method))
    extra = {"tasc": {"index": str(index), **settings}} if base_method == "tasc" else None
    return speculative_config(base_method, k), extra


def run_method(method: str, args, model: str, levels: list[dict], index: Path, folder: Path, log) -> list[dict]:
    """Start a server for ``method``; measure every concurrency level on it in turn."""
    import httpx

    spec, extra = server_config(method, args.k, index)
    runs = []
    with vllm_server(model, folder / f"server-{method}.log", spec=spec, dtype=args.dtype,
                     max_model_len=args.max_model_len, max_num_seqs=max(args.concurrency),
                     additional_config=extra, compiled=args.compiled) as srv:
        httpx.post(f"{srv['base']}/v1/completions", timeout=600,
                   json={"model": model, "prompt": "Say hello.", "max_tokens": 8, "temperature": 0})
        for level in levels:
            before = spec_counters(srv["base"])
            raw = bench_serve(srv["base"], model, level["dataset"], level["n"], level["concurrency"],
                              level["max_tokens"], folder, log)
            after = spec_counters(srv["base"])
            run = {"method": method, "concurrency": level["concurrency"],
                   **summarize(raw, counter_delta(before, after)), "texts": raw["generated_texts"]}
            runs.append(run)
            level["bar"].update()
    return runs


def bench_task(task_name: str, args, folder: Path, log, bar) -> dict:
    """Every method on one task, served by the ``--model`` kind of model for it."""
    from transformers import AutoTokenizer

    from tasc_vllm.config import load_config
    from tasc_vllm.eval.demo import prepare_task_index
    from tasc_vllm.eval.tasks import get_task

    task = get_task(task_name)
    kind = served_kinds(task_name, args.model)[0]
    bar.set_description(f"{task_name}: the {kind} model")
    model = served_model(task_name, kind)
    tokenizer = AutoTokenizer.from_pretrained(model)

    def messages(examples):
        return served_messages(model, examples)

    cfg = load_config()
    index = prepare_task_index(task, tokenizer, folder, cfg.max_order, cfg.min_count, messages)
    test = task.load("test")
    levels = []
    for i, c in enumerate(args.concurrency):
        part = test[i * args.prompts : (i + 1) * args.prompts]
        if len(part) < args.prompts:
            raise SystemExit(f"{task_name} has {len(test)} test prompts: too few for {args.prompts} per level "
                             f"at {len(args.concurrency)} levels")
        levels.append({"concurrency": c, "n": len(part), "examples": part, "max_tokens": task.max_tokens, "bar": bar,
                       "dataset": write_dataset(folder / f"{task_name}-c{c}.jsonl", tokenizer, messages(part),
                                                task.max_tokens)})
    runs = []
    for method in args.methods:
        bar.set_description(f"{task_name}: {method}")
        runs += run_method(method, args, model, levels, index, folder, log)
    for level in levels:
        base = next(r for r in runs if r["method"] == "none" and r["concurrency"] == level["concurrency"])
        for r in (r for r in runs if r["concurrency"] == level["concurrency"]):
            r["task_score"] = sum(task.scores(level["examples"], r["texts"])) / level["n"]
            r["same_as_baseline"] = sum(a == b for a, b in zip(r["texts"], base["texts"]))
            r["num_requests"] = level["n"]
            r["speedup_requests"] = r["request_throughput"] / base["request_throughput"]
            # bf16 outputs of two runs can differ in length: tokens/s corrects for that
            r["speedup_tokens"] = r["output_throughput"] / base["output_throughput"]
            r["tpot_ratio"] = (r["median_tpot_ms"] / base["median_tpot_ms"]) if base["median_tpot_ms"] else None
    return {"task": task_name, "model": kind, "model_path": model, "prompts_per_level": args.prompts, "runs": runs}


def methods_to_run(methods: list[str]) -> list[str]:
    """``none`` first, then the named methods in ``METHODS`` order, then ``tasc@...`` variants as
    given; each once.  An unknown method, setting or value raises ``ValueError`` naming it."""
    unknown = unknown_methods(methods, METHODS, ALIASES)
    if unknown:
        raise ValueError(f"unknown method {unknown[0]!r}; known: {', '.join(METHODS)} "
                         "(tasc takes settings: tasc@threshold=0.2+calibrate=0)")
    variants = [m for m in methods if m not in METHODS]
    return ["none"] + [m for m in METHODS[1:] if m in methods] + list(dict.fromkeys(variants))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default="usaddress,bfcl")
    p.add_argument("--methods", default=",".join(METHODS),
                   help=f"from {', '.join(METHODS)}; none always runs; tasc@NAME=V+NAME=V serves TASC-spec "
                        "with other settings")
    p.add_argument("--model", default="fine-tuned", choices=MODEL_KINDS,
                   help="the model served on usaddress and BFCL: fine-tuned (their --no-enrich fine-tune, built "
                        "once and cached), tasc-ft (the TASC-ft model) or default (the default model as it ships, "
                        "which does not do these tasks); HumanEval always serves the default model")
    p.add_argument("--concurrency", default="1,4,16")
    p.add_argument("--prompts", type=int, default=24, help="held-out prompts per concurrency level")
    p.add_argument("--k", type=int, default=16)
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--max-model-len", type=int, default=2048)
    p.add_argument("--compiled", action="store_true",
                   help="servers as `vllm serve` starts them by default (torch.compile; about 1 min more per "
                        "server start) instead of --enforce-eager")
    p.add_argument("--name", default="online")
    args = p.parse_args(argv)
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    try:
        args.methods = methods_to_run([m for m in args.methods.split(",") if m])
    except ValueError as e:
        p.error(str(e))
    if min(args.concurrency) < 1 or args.prompts < 1:
        p.error("--concurrency and --prompts must be positive")
    if "suffix" in args.methods:
        try:
            import arctic_inference  # noqa: F401
        except ImportError:
            p.error("the suffix method needs arctic-inference (make bench builds it); leave it out with --methods")

    from tqdm import tqdm

    tasks = [t for t in args.tasks.split(",") if t]
    result = {"name": args.name, "kind": "online", "started_unix": int(time.time()), "machine": machine(),
              "settings": {**{k: v for k, v in vars(args).items() if k != "tasks"}, "tasks": tasks},
              "tasks": [], "complete": False}
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{args.name}.json"
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="tasc-online-") as tmp, \
            open(RESULTS / f"{args.name}-servers.log", "w") as log, \
            tqdm(total=len(tasks) * len(args.methods) * len(args.concurrency), unit="run") as bar:
        for task_name in tasks:
            folder = Path(tmp) / task_name
            folder.mkdir()
            result["tasks"].append(bench_task(task_name, args, folder, log, bar))
            result["seconds"] = time.time() - t0
            result["complete"] = task_name == tasks[-1]
            out.write_text(json.dumps(result, indent=1))  # saved per task: a run cut short keeps its tasks
            for server_log in folder.glob("server-*.log"):  # the servers' own logs, for the record
                log.write(f"==== {task_name} {server_log.name}\n{server_log.read_text()}\n")
    report.write_report()
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
