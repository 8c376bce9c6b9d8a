"""Replay TASC-spec's drafting over recorded greedy outputs, without an engine.

    python -m benchmarks.replay [--task usaddress] [--prompts 64] [--set threshold=0.1,0.3 ...]

Greedy verification accepts a draft's longest prefix that equals the model's own
continuation, so with the model's greedy outputs recorded once (one plain vLLM run, cached in
``benchmarks/results/replay-greedy-<task>.json``), every proposer setting can be scored in
seconds: steps, drafted and accepted tokens per request, exactly as an engine would see them
at batch 1 (:mod:`benchmarks.harness.replay`).  A step's cost is modelled as ``overhead +
verified tokens`` (``--overhead``, in units of one verified token); the engine benchmarks
remain the measure of record, this only ranks settings before spending engine time on them.
Prints a table; writes no result file.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from dataclasses import replace

from benchmarks.harness.paths import RESULTS
from benchmarks.harness.replay import greedy_outputs, modelled_speedup, replay, standalone_proposer


def main(argv=None) -> int:
    from transformers import AutoTokenizer

    from tasc_vllm.config import load_config
    from tasc_vllm.eval.demo import prepare_task_index
    from tasc_vllm.eval.models import materialize
    from tasc_vllm.eval.tasks import get_task

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="usaddress")
    p.add_argument("--prompts", type=int, default=64)
    p.add_argument("--k", type=int, default=16)
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--overhead", type=float, default=12.0,
                   help="a step's fixed cost in verified tokens (12 matched engine runs at batch 1 here)")
    p.add_argument("--set", action="append", default=[], metavar="NAME=V1,V2",
                   help="TASC setting values to try (grid over all --set); e.g. threshold=0.1,0.3")
    args = p.parse_args(argv)
    model = str(materialize())
    tokenizer = AutoTokenizer.from_pretrained(model)
    data = greedy_outputs(args.task, args.prompts, model, tokenizer, args.dtype)
    prompts, outputs = data["prompt_ids"][: args.prompts], data["output_ids"][: args.prompts]
    folder = RESULTS / "replay-work"
    folder.mkdir(exist_ok=True)
    index = prepare_task_index(get_task(args.task), tokenizer, folder, 8)
    base_cfg = replace(load_config(), index=str(index))
    grid = {}
    for item in args.set:
        name, _, values = item.partition("=")
        grid[name] = [type(getattr(base_cfg, name))(v) for v in values.split(",")]
    print(f"{args.task}: {len(prompts)} prompts, {sum(map(len, outputs))} greedy output tokens, k={args.k}")
    print("setting | steps | drafted | accepted | accepted/drafted | mean accepted length | modelled speed-up")
    for combo in itertools.product(*grid.values()) if grid else [()]:
        cfg = replace(base_cfg, **dict(zip(grid, combo)))
        proposer = standalone_proposer(tokenizer, cfg, args.k)
        r = replay(proposer, prompts, outputs)
        label = ", ".join(f"{k}={v}" for k, v in zip(grid, combo)) or "defaults"
        drafts_acc = r["accepted"] / max(1, r["drafted"])
        print(f"{label} | {r['steps']} | {r['drafted']} | {r['accepted']} | {drafts_acc:.2f} | "
              f"{r['tokens'] / r['steps']:.2f} | {modelled_speedup(r, args.overhead):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
