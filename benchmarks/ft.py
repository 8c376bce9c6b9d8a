"""TASC-ft against its ``--no-enrich`` baseline fine-tune, with and without TASC-spec.

    python -m benchmarks.ft [--task usaddress] [--prompts 24]
                            [--base-model gemma-3-270m | --enriched DIR --baseline DIR]

Without ``--enriched``/``--baseline`` both checkpoints are built first with ``tools.enrich``
from ``--base-model`` (default: the default model; same data, steps and seed; they are cached
under ``~/.cache/tasc-vllm/ft/``).  Then, in one
invocation:

- quality on the whole test split for both fine-tunes (greedy, batch 32): task score, output
  tokens and characters per answer, and the two compared prompt by prompt
  (:mod:`benchmarks.harness.paired`);
- speed at batch 1 on ``--prompts`` test prompts: baseline fine-tune, enriched fine-tune,
  each without and with TASC-spec (the index of the train outputs, tokenized at engine
  start with each model's own tokenizer).  Requests/s is the headline: the vocabularies
  differ, so tokens/s is not comparable across them;
- for each fine-tune, the ceilings of drafting from TASC-spec's sources over its plain
  answers (``benchmarks.headroom``'s measures, :mod:`benchmarks.harness.ceilings`, no
  engine): the right one of TASC-spec's own candidates every time, or of the wider n-gram
  candidate sets of :mod:`benchmarks.harness.followers`, or the whole answer (the oracle),
  priced by the engine costs fitted to that fine-tune's runs
  (:mod:`benchmarks.harness.step_cost`; it needs two speculative methods, e.g. the default
  ``tasc`` and ``oracle``).

Writes ``benchmarks/results/ft-<task>.json`` (``seconds``: the measurement;
``build_seconds``: building the checkpoints, when not given or cached) and regenerates
``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from tqdm import tqdm

from benchmarks import report
from benchmarks.harness.ceilings import drafting_ceilings
from benchmarks.harness.machine import machine
from benchmarks.harness.methods import tasc_variant, unknown_methods
from benchmarks.harness.paired import paired_difference
from benchmarks.harness import served_models
from benchmarks.harness.paths import RESULTS

# each fine-tune at batch 1: plain, with TASC-spec, and with the oracle drafter (its own plain
# answers proposed in full: the ceiling of any drafter at this k)
SPEED_METHODS = ("none", "tasc", "oracle")


def build_checkpoints(task_name: str, args) -> tuple[Path, Path]:
    """The TASC-ft checkpoint and its ``--no-enrich`` baseline of ``--base-model`` with this
    script's building settings (:func:`benchmarks.harness.served_models.build_checkpoints`:
    built once, cached)."""
    return served_models.build_checkpoints(task_name, served_models.BuildSettings(
        rounds=args.rounds, steps_per_round=args.steps_per_round, tokens_per_round=args.tokens_per_round,
        new_token_lr_scale=args.new_token_lr_scale, length_group=args.length_group, bf16=args.bf16,
        json_values_out=args.json_values_out, prompt_tokens=args.prompt_tokens), base=args.base_model)


def default_name(task_name: str, base_model: str | None) -> str:
    """The result file's name: ``ft-TASK`` on the default model, ``ft-TASK-MODEL`` on another
    (its known name, or its checkpoint folder's name)."""
    return f"ft-{task_name}" + (f"-{Path(base_model).name}" if base_model else "")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="usaddress")
    p.add_argument("--enriched", default=None, help="TASC-ft checkpoint (default: build it)")
    p.add_argument("--baseline", default=None, help="its --no-enrich fine-tune (default: build it)")
    p.add_argument("--base-model", default=None,
                   help="when building: the model both are fine-tuned from, a known name (tasc-vllm model) "
                        "or a checkpoint folder (default: the default model)")
    p.add_argument("--rounds", type=int, default=2, help="when building: enrichment rounds")
    p.add_argument("--steps-per-round", type=int, default=150, help="when building: steps per round")
    p.add_argument("--tokens-per-round", type=int, default=32, help="when building: new tokens per round")
    p.add_argument("--new-token-lr-scale", type=float, default=10.0,
                   help="when building: learning-rate scale of the new token rows (default 10)")
    p.add_argument("--length-group", type=int, default=16, help="when building: tools.enrich --length-group")
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True,
                   help="when building: train under bfloat16 autocast (default: on)")
    p.add_argument("--json-values-out", action=argparse.BooleanOptionalAction, default=True,
                   help="when building: mine keys and punctuation only, tools.enrich --json-values-out (default: on)")
    p.add_argument("--prompt-tokens", type=int, default=served_models.BuildSettings.prompt_tokens,
                   help="when building: tools.enrich --prompt-tokens (default: %(default)s)")
    p.add_argument("--prompts", type=int, default=24, help="test prompts for the batch-1 speed runs")
    p.add_argument("--quality-prompts", type=int, default=0, help="test prompts for quality (default: all)")
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--compiled", action="store_true",
                   help="engines as vllm.LLM builds them by default (torch.compile; about 1 min more per engine "
                        "start) instead of enforce_eager")
    p.add_argument("--methods", default=",".join(SPEED_METHODS),
                   help="speculation per fine-tune, comma-separated (default: %(default)s); "
                        "tasc@NAME=V+NAME=V measures TASC-spec with other settings")
    p.add_argument("--name", default=None,
                   help="result file name (default: ft-TASK, or ft-TASK-MODEL with --base-model)")
    args = p.parse_args(argv)
    run_name = args.name or default_name(args.task, args.base_model)
    methods = list(dict.fromkeys(m for m in args.methods.split(",") if m))
    try:
        unknown = sorted(unknown_methods(methods, SPEED_METHODS))
    except ValueError as e:
        p.error(str(e))
    if unknown or "none" not in methods:
        p.error(f"--methods: need none and known methods ({', '.join(SPEED_METHODS)}, tasc@NAME=V); got {unknown or methods}")

    from transformers import AutoTokenizer

    from tasc_vllm.config import load_config
    from tasc_vllm.eval.demo import prepare_task_index
    from tasc_vllm.eval.oracle import write_oracle_file
    from tasc_vllm.eval.runner import render_prompts, run_in_subprocess
    from tasc_vllm.eval.tasks import get_task

    task = get_task(args.task)
    if bool(args.enriched) != bool(args.baseline):
        p.error("give both --enriched and --baseline, or neither")
    if args.enriched and args.base_model:
        p.error("--base-model names the model to build from: give it without --enriched and --baseline")
    t_build = time.time()
    if args.enriched:
        enriched, baseline = Path(args.enriched), Path(args.baseline)
    else:
        enriched, baseline = build_checkpoints(args.task, args)
    build_seconds = time.time() - t_build  # a few seconds when both are cached
    models = {"baseline-ft": baseline, "tasc-ft": enriched}
    ft_info = {name: json.loads((path / "tasc_ft.json").read_text()) for name, path in models.items()}
    test = task.load("test")
    quality_set = test[: args.quality_prompts] if args.quality_prompts else test
    speed_set = test[: args.prompts]
    RESULTS.mkdir(parents=True, exist_ok=True)
    log = RESULTS / f"{run_name}-engines.log"
    log.write_text("")
    cfg = load_config()
    t0 = time.time()
    out = {"name": run_name, "kind": "tasc-ft", "started_unix": int(t0), "machine": machine(),
           "settings": vars(args) | {"enriched": str(enriched), "baseline": str(baseline)},
           "task": args.task, "build_seconds": build_seconds, "fine_tunes": {}, "speed": [], "ceilings": {}}
    runs = len(models) * (1 + len(methods))
    with tempfile.TemporaryDirectory(prefix="tasc-ft-bench-") as d, tqdm(total=runs, unit="run") as bar:
        for name, path in models.items():
            tok = AutoTokenizer.from_pretrained(path)
            index = prepare_task_index(task, tok, Path(d), cfg.max_order, cfg.min_count)
            bar.set_description(f"{name}: quality on {len(quality_set)} test prompts")
            q = run_in_subprocess({
                "model": str(path), "dtype": args.dtype, "method": "none", "batch_size": 32, "progress": False,
                "enforce_eager": not args.compiled,
                "prompt_token_ids": render_prompts(tok, served_models.served_messages(str(path), quality_set)),
                "max_tokens": [task.max_tokens] * len(quality_set),
            }, log_path=log)
            bar.update(1)
            scores = task.scores(quality_set, q["texts"])
            out["fine_tunes"][name] = {
                "path": str(path),
                "vocab_size": ft_info[name]["vocab_size"],
                "tokens_added": len(ft_info[name]["tokens_added"]),
                "training_steps": ft_info[name]["total_steps"],
                "enrich_settings": ft_info[name]["settings"],
                "task_score": sum(scores) / len(quality_set),
                "scores": scores,  # per prompt, for the paired comparison
                "output_tokens_per_answer": q["output_tokens"] / len(quality_set),
                "output_chars_per_answer": q["output_chars"] / len(quality_set),
                "reference_tokens_per_answer": sum(
                    len(tok.encode(e.reference, add_special_tokens=False)) for e in quality_set) / len(quality_set),
                "num_prompts": len(quality_set),
            }
            prompts = render_prompts(tok, served_models.served_messages(str(path), speed_set))
            oracle = Path(d) / f"oracle-{name}.json"
            plain_ids: list[list[int]] = []
            for method in sorted(methods, key=lambda m: m != "none"):  # the plain run writes the oracle file
                bar.set_description(f"{name}: batch 1, {method}")
                kind, settings = tasc_variant(method)
                spec = {"model": str(path), "dtype": args.dtype, "method": kind, "batch_size": 1,
                        "enforce_eager": not args.compiled,
                        "num_speculative_tokens": args.k, "progress": False, "prompt_token_ids": prompts,
                        "max_tokens": [task.max_tokens] * len(prompts),
                        "warmup_prompt_token_ids": render_prompts(tok, [[{"role": "user", "content": "Say hello."}]])[0]}
                if kind == "tasc":  # vLLM's additional_config["tasc"]
                    spec["tasc"] = {"index": str(index), **settings}
                elif kind == "oracle":  # this fine-tune's own plain continuation: the ceiling at this k
                    spec["env"] = {"TASC_ORACLE_FILE": str(oracle)}
                r = run_in_subprocess(spec, log_path=log)
                r["model"] = name
                r["method"] = method
                r["task_score"] = sum(task.scores(speed_set, r["texts"])) / len(speed_set)
                if method == "none":
                    write_oracle_file(oracle, zip(prompts, r["token_ids"]))
                    plain_ids = r["token_ids"]
                r.pop("token_ids", None)
                out["speed"].append(r)
                bar.update(1)
            bar.set_description(f"{name}: drafting ceilings")
            out["ceilings"][name] = drafting_ceilings(
                tok, replace(cfg, index=str(index)), prompts, plain_ids, args.k,
                [r for r in out["speed"] if r["model"] == name], run_name)
    out["quality_difference"] = paired_difference(out["fine_tunes"]["baseline-ft"]["scores"],
                                                  out["fine_tunes"]["tasc-ft"]["scores"])
    base = next(r for r in out["speed"] if r["model"] == "baseline-ft" and r["method"] == "none")
    for r in out["speed"]:
        r["speedup_requests"] = r["requests_per_second"] / base["requests_per_second"]
        r["speedup_chars"] = r["chars_per_second"] / base["chars_per_second"]
    out["seconds"] = time.time() - t0
    path = RESULTS / f"{run_name}.json"
    path.write_text(json.dumps(out, indent=1))
    report.write_report()
    print(f"wrote {path} in {out['seconds'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
