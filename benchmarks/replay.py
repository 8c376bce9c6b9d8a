"""Replay TASC-spec's drafting over recorded greedy outputs, without an engine.

    python -m benchmarks.replay [--task usaddress] [--model fine-tuned] [--prompts 64]
                                [--set policy=learned,formula ...] [--cost 17,0,1,6]

Greedy verification accepts a draft's longest prefix that equals the model's own
continuation, so with the model's greedy outputs recorded once (one plain vLLM run, cached in
``benchmarks/results/replay-greedy-<task>[-<model>].json``), every proposer setting can be
scored in seconds: steps, drafted and accepted tokens per request, exactly as an engine would
see them at batch 1 (:mod:`benchmarks.harness.replay`).  A step's cost is modelled as
``FIXED + PER_TOKEN * max(0, verified tokens - KNEE)`` (``--cost``, by default this CPU's
batch-1 step in units of one verified token); the learned policy drafts by that same model.
The engine benchmarks remain the measure of record (``benchmarks.run`` prints the replay's
estimate beside each TASC-spec run at batch 1); this only ranks settings before engine time is
spent on them.  The index holds the same train examples as ``benchmarks.run``'s.  Prints a
table; writes no result file.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from dataclasses import replace

from benchmarks.harness.paths import RESULTS
from benchmarks.harness.replay import BATCH1_COST, greedy_outputs, replay, standalone_proposer


def main(argv=None) -> int:
    from transformers import AutoTokenizer

    from benchmarks.harness.served_models import served_messages, served_model
    from tasc_vllm.config import load_config
    from tasc_vllm.errors import TascError
    from tasc_vllm.eval.demo import prepare_task_index
    from tasc_vllm.eval.tasks import TASKS, get_task
    from tasc_vllm.step_timing import parse_cost_model

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="usaddress", choices=sorted(TASKS))
    p.add_argument("--model", default="default", choices=("default", "fine-tuned", "tasc-ft"),
                   help="the model whose answers are replayed, as benchmarks.run serves it (the fine-tunes are "
                        "built once and cached)")
    p.add_argument("--base-model", default=None, help="as benchmarks.run's: the model the fine-tunes start from")
    p.add_argument("--prompts", type=int, default=64)
    p.add_argument("--train-examples", type=int, default=256, help="the index's train examples (0: all)")
    p.add_argument("--k", type=int, default=16)
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--cost", default=",".join(f"{c:g}" for c in BATCH1_COST),
                   help="FIXED,PER_ROW,PER_TOKEN,KNEE: a step verifying N tokens costs FIXED + PER_ROW + "
                        "PER_TOKEN * max(0, N - KNEE) (default: a batch-1 step here, in units of one verified token)")
    p.add_argument("--set", action="append", default=[], metavar="NAME=V1,V2",
                   help="TASC setting values to try (grid over all --set); e.g. policy=learned,formula")
    args = p.parse_args(argv)
    if args.prompts < 1 or args.k < 1 or args.train_examples < 0:
        p.error("--prompts and --k must be at least 1, --train-examples at least 0")
    base_cfg = load_config()
    grid = {}
    for item in args.set:  # checked before any model is built or engine started
        name, _, values = item.partition("=")
        if name not in base_cfg.__dataclass_fields__ or not values:
            p.error(f"--set {item!r}: expected NAME=V1,V2 with a TASC setting's name")
        try:
            grid[name] = [type(getattr(base_cfg, name))(v) for v in values.split(",")]
        except ValueError as e:
            p.error(f"--set {item!r}: {e}")
    try:
        cost = tuple(parse_cost_model(args.cost))
        model = served_model(args.task, args.model, args.base_model)
    except (TascError, ValueError) as e:
        p.error(str(e))
    tokenizer = AutoTokenizer.from_pretrained(model)
    task = get_task(args.task)

    def messages(examples):
        return served_messages(model, examples)

    label = "" if args.model == "default" and args.base_model is None else \
        "-".join(x for x in (args.model, args.base_model and args.base_model.replace("/", "_")) if x)
    data = greedy_outputs(args.task, args.prompts, model, tokenizer, args.dtype, messages, label)
    prompts, outputs = data["prompt_ids"][: args.prompts], data["output_ids"][: args.prompts]
    folder = RESULTS / "replay-work"
    folder.mkdir(exist_ok=True)
    train = task.load("train")[: args.train_examples or None]
    index = prepare_task_index(task, tokenizer, folder, base_cfg.max_order, base_cfg.min_count, messages, train)
    base_cfg = replace(base_cfg, index=str(index), stats_path="", learned_path="")
    print(f"{args.task}, {args.model} model: {len(prompts)} prompts, {sum(map(len, outputs))} greedy output tokens, "
          f"k={args.k}, step cost {args.cost}")
    print("setting | steps | drafted | accepted | accepted/drafted | mean accepted length | modelled speed-up")
    for combo in itertools.product(*grid.values()) if grid else [()]:
        cfg = replace(base_cfg, **dict(zip(grid, combo)))
        r = replay(standalone_proposer(tokenizer, cfg, args.k, cost=cost), prompts, outputs, cost)
        label = ", ".join(f"{k}={v}" for k, v in zip(grid, combo)) or "defaults"
        drafts_acc = r["accepted"] / max(1, r["drafted"])
        print(f"{label} | {r['steps']} | {r['drafted']} | {r['accepted']} | {drafts_acc:.2f} | "
              f"{1 + r['accepted'] / max(1, r['drafts']):.2f} | {r['plain_time'] / r['time']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
