"""What verifying a draft costs on this machine: a decoding step's time by the number of
drafted tokens it verifies, measured directly.

    python -m benchmarks.verify_cost [--task bfcl] [--prompts 16] [--tokens 96] [--chunks 4]
                                     [--lengths 0,1,2,4,6,8,12,16] [--batches 1,16] [--repeats 2]

One engine (eager, bf16, k = the longest length) serves held-out prompts of a task (at
batch B, the first ``--chunks`` groups of B of them that the prompts allow) with a
drafter that proposes exactly L copies of one token after every step
(:class:`benchmarks.harness.fixed_drafts.FixedDrafts`).
The drafts are wrong almost always, so every step verifies ``1 + L`` tokens per row and
yields one; vLLM's own counters give the accepted drafts, so a step is counted as output
tokens minus accepted ones, as in :mod:`benchmarks.harness.step_cost`. L changes between
measurements through a file the drafter reads every step, so every length is measured in
the same engine; the lengths are measured in turn, in reverse order on every other repeat.
Every answer runs to ``--tokens`` (end of sequence ignored), and a first pass over the
prompts fills vLLM's prefix cache, so prompt processing adds almost nothing to the steps.

:mod:`benchmarks.harness.step_cost` fits a cost per step and per drafted token to whole runs of
different drafters; this measures the same curve, point by point, without a drafter's own
choices in the way, and fits both a line and a knee (flat up to some L, then linear) to it:
the knee is what TASC-spec's ``free_draft`` setting describes to the proposer. Writes
``benchmarks/results/verify-cost.json`` and regenerates ``benchmarks/RESULTS.md``, which
draws ``verify-cost.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import report
from benchmarks.harness.fixed_drafts import CLASS_PATH, LENGTH_FILE_ENV
from benchmarks.harness.machine import machine
from benchmarks.harness.paths import RESULTS


def fit_line(lengths, ms) -> tuple[float, float]:
    """Least-squares ``ms = step + per_token * L``: (step, per_token)."""
    x = np.asarray(lengths, dtype=float)
    y = np.asarray(ms, dtype=float)
    if x.size < 2 or np.unique(x).size < 2:
        raise ValueError("need at least two different draft lengths to fit a line")
    per_token, step = np.polyfit(x, y, 1)
    return float(step), float(per_token)


def fit_knee(lengths, ms) -> tuple[int, float, float]:
    """Least-squares ``ms = flat + per_token * max(0, L - knee)``, the knee tried at every
    measured length but the longest: (knee, flat, per_token).  A step's time stays flat while
    the tokens it verifies fit the kernels' smallest unit of work, then grows with each one."""
    x = np.asarray(lengths, dtype=float)
    y = np.asarray(ms, dtype=float)
    knees = np.unique(x)[:-1]
    if knees.size < 1:
        raise ValueError("need at least two different draft lengths to fit a knee")
    best = None
    for knee in knees:
        a = np.column_stack([np.ones_like(x), np.maximum(0.0, x - knee)])
        coef, *_ = np.linalg.lstsq(a, y, rcond=None)
        sse = float(np.sum((a @ coef - y) ** 2))
        if best is None or sse < best[0] - 1e-9:
            best = (sse, int(knee), float(coef[0]), float(coef[1]))
    return best[1], best[2], best[3]


def summarize(points: list[dict]) -> list[dict]:
    """Per batch size: the median ms per step at each length, and the line and the knee fitted
    to every repeat's points."""
    out = []
    for batch in sorted({p["batch_size"] for p in points}):
        rows = [p for p in points if p["batch_size"] == batch]
        lengths = sorted({p["length"] for p in rows})
        medians = {L: float(np.median([p["ms_per_step"] for p in rows if p["length"] == L])) for L in lengths}
        xs, ys = [p["length"] for p in rows], [p["ms_per_step"] for p in rows]
        step, per_token = fit_line(xs, ys)
        knee, flat, past_knee = fit_knee(xs, ys)
        out.append({"batch_size": batch, "median_ms_per_step": {str(L): medians[L] for L in lengths},
                    "fit_step_ms": step, "fit_ms_per_drafted_token": per_token,
                    "knee_length": knee, "knee_flat_ms": flat, "knee_ms_per_drafted_token": past_knee,
                    "fit_ms_per_drafted_token_per_row": per_token / batch,
                    "relative_to_no_draft": {str(L): medians[L] / medians[lengths[0]] for L in lengths}})
    return out


def measure(args) -> dict:
    """Check the arguments, then measure with the draft length in a file that is removed after."""
    lengths = sorted({int(x) for x in args.lengths.split(",")})
    batches = sorted({int(x) for x in args.batches.split(",")})
    if lengths[0] < 0 or len(lengths) < 2:
        raise SystemExit("--lengths needs at least two lengths >= 0")
    if batches[0] < 1 or batches[-1] > args.prompts:
        raise SystemExit(f"--batches must lie in 1..--prompts ({args.prompts})")
    with tempfile.TemporaryDirectory(prefix="tasc-verify-cost-") as workdir:
        length_file = Path(workdir) / "length"
        length_file.write_text("0")
        os.environ[LENGTH_FILE_ENV] = str(length_file)
        return _measure(args, lengths, batches, length_file)


def _measure(args, lengths: list[int], batches: list[int], length_file: Path) -> dict:
    """One engine, every (repeat, batch, length) in turn; the drafter reads L from ``length_file``."""
    from vllm import LLM, SamplingParams

    from tasc_vllm.eval.models import resolve_model
    from tasc_vllm.eval.runner import SPEC_DECODE, _counters, render_prompts
    from tasc_vllm.eval.tasks import get_task

    t_start, started_unix = time.perf_counter(), int(time.time())
    llm = LLM(resolve_model(None), dtype=args.dtype, gpu_memory_utilization=0.3, enforce_eager=True,
              max_model_len=2048, max_num_seqs=max(batches), seed=0,
              speculative_config={"method": "custom_class", "model": CLASS_PATH,
                                  "num_speculative_tokens": max(lengths)})
    task = get_task(args.task)
    examples = task.load("test")[: args.prompts]
    prompts = [{"prompt_token_ids": p} for p in render_prompts(llm.get_tokenizer(), [e.messages for e in examples])]
    params = SamplingParams(temperature=0.0, max_tokens=args.tokens, ignore_eos=True)
    llm.generate(prompts, SamplingParams(temperature=0.0, max_tokens=2), use_tqdm=False)  # fill the prefix cache

    def accepted() -> int:
        (spec,) = _counters(llm, SPEC_DECODE)
        return int(spec.get("num_accepted_tokens", 0))

    points = []
    plan = [(rep, b, L) for rep in range(args.repeats) for b in batches
            for L in (lengths if rep % 2 == 0 else lengths[::-1])]
    from tqdm import tqdm

    for rep, batch, L in tqdm(plan, desc="verify cost", unit="length"):
        length_file.write_text(str(L))
        acc0 = accepted()
        t0 = time.perf_counter()
        tokens = 0
        for i in range(0, min(args.chunks * batch, len(prompts) - batch + 1), batch):
            outs = llm.generate(prompts[i: i + batch], params, use_tqdm=False)
            tokens += sum(len(o.outputs[0].token_ids) for o in outs)
        seconds = time.perf_counter() - t0
        acc = accepted() - acc0
        steps = (tokens - acc) / batch
        points.append({"repeat": rep, "batch_size": batch, "length": L, "seconds": seconds, "output_tokens": tokens,
                       "accepted": acc, "steps": steps, "ms_per_step": 1000 * seconds / steps})
    return {"kind": "verify-cost", "name": args.name, "started_unix": started_unix, "machine": machine(),
            "settings": {"task": args.task, "prompts": len(prompts), "tokens": args.tokens, "lengths": lengths,
                         "batches": batches, "repeats": args.repeats, "dtype": args.dtype, "engines": "eager"},
            "points": points, "summary": summarize(points), "seconds": time.perf_counter() - t_start}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="bfcl")
    p.add_argument("--prompts", type=int, default=16)
    p.add_argument("--tokens", type=int, default=96, help="tokens per answer (end of sequence ignored)")
    p.add_argument("--lengths", default="0,1,2,4,6,8,12,16", help="drafted tokens per row to measure")
    p.add_argument("--batches", default="1,16")
    p.add_argument("--chunks", type=int, default=4, help="batches of prompts served per measurement (as many as the prompts allow)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--name", default="verify-cost")
    args = p.parse_args(argv)
    if args.prompts < 1 or args.tokens < 2 or args.repeats < 1 or args.chunks < 1:
        raise SystemExit("--prompts, --chunks and --repeats must be >= 1, --tokens >= 2")
    res = measure(args)
    out = RESULTS / f"{args.name}.json"
    out.write_text(json.dumps(res, indent=1))
    report.write_report()  # draws the plot too
    for row in res["summary"]:
        print(f"batch {row['batch_size']}: " + ", ".join(f"L={L} {v:.1f} ms" for L, v in row["median_ms_per_step"].items())
              + f"; line {row['fit_step_ms']:.1f} ms + {row['fit_ms_per_drafted_token']:.2f} ms per drafted token"
              + f"; knee {row['knee_flat_ms']:.1f} ms up to L={row['knee_length']}, then "
              f"{row['knee_ms_per_drafted_token']:.2f} ms per drafted token")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
