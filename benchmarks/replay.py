"""Replay TASC-spec's drafting, and its rivals', over recorded greedy outputs, without an engine.

    python -m benchmarks.replay [--task usaddress] [--model fine-tuned] [--prompts 64]
                                [--batch 1,16] [--rivals suffix-warm,oracle]
                                [--set policy=learned,formula ...] [--cost 17.4,0.5,1,5]
                                [--index references|own] [--bounds]

Greedy verification accepts a draft's longest prefix that equals the model's own
continuation, so with the model's greedy outputs recorded once (one plain vLLM run, cached in
``benchmarks/results/replay-greedy-<task>[-<model>].json``), every proposer setting can be
scored in seconds: steps, drafted and accepted tokens, exactly as an engine would see them,
with the requests served ``--batch`` at a time (:mod:`benchmarks.harness.replay`).  A step
that verifies ``N`` tokens for ``R`` requests is modelled as ``FIXED + PER_ROW * R + PER_TOKEN
* max(0, N - KNEE)`` (``--cost``, by default this CPU's step in units of one verified token);
the learned policy drafts by that same model.

``--rivals`` drafts the same answers with vLLM's warm ``suffix`` method (ArcticInference's
cache with vLLM's defaults, warmed with the model's answers to the train prompts, which one
more plain run records) and with the oracle, so each TASC-spec setting is shown against warm
``suffix`` and as a share of the oracle's gain, in seconds instead of engine hours.  The
engine benchmarks remain the measure of record (``benchmarks.run`` prints the replay's
estimate beside each TASC-spec run); this only ranks settings before engine time is spent
on them.  The index holds the same train examples as ``benchmarks.run``'s.  Prints a table;
writes no result file.

``--bounds`` adds, for each TASC-spec setting, what better choices could still gain from the
same sources (:mod:`benchmarks.harness.replay_drafters`): its drafts cut by the oracle to the
part the model accepts (the best draft length rule), and, beside warm ``suffix``, the draft of
the two that the model accepts furthest at each step, cut the same way (the best choice
between the two drafters).  When those rows fall short of a target, no stop rule and no
choice between these drafts reaches it: the drafts' tokens must change.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import itertools
import sys
from dataclasses import replace

from benchmarks.harness.own_outputs import write_own_index
from benchmarks.harness.paths import RESULTS
from benchmarks.harness.replay import CPU_COST, greedy_outputs, replay, standalone_proposer
from benchmarks.harness.replay_drafters import BestOf, OracleCut, OracleDrafter, SuffixDrafter

RIVALS = ("suffix-warm", "oracle")


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
    p.add_argument("--index", default="references", choices=("references", "own"),
                   help="what the index holds for the train prompts: the task's reference answers (as benchmarks.run's "
                        "tasc), or the model's own answers, the ones that warm suffix (as its tasc-self)")
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--cost", default=",".join(f"{c:g}" for c in CPU_COST),
                   help="FIXED,PER_ROW,PER_TOKEN,KNEE: a step verifying N tokens for R requests costs FIXED + "
                        "PER_ROW * R + PER_TOKEN * max(0, N - KNEE) (default: a step on this CPU, in units of one "
                        "verified token)")
    p.add_argument("--batch", default="1", help="batch sizes, comma-separated: requests served at a time")
    p.add_argument("--rivals", default="suffix-warm,oracle",
                   help="rival drafters replayed beside TASC-spec, comma-separated, of: " + ", ".join(RIVALS)
                        + " ('' for none)")
    p.add_argument("--bounds", action="store_true",
                   help="also replay each TASC setting with its drafts cut by the oracle, and the better of its and "
                        "warm suffix's draft at each step (cut the same way): what better draft lengths, or a better "
                        "choice between the two drafters, could still gain")
    p.add_argument("--set", action="append", default=[], metavar="NAME=V1,V2",
                   help="TASC setting values to try (grid over all --set); e.g. policy=learned,formula")
    args = p.parse_args(argv)
    if args.prompts < 1 or args.k < 1 or args.train_examples < 0:
        p.error("--prompts and --k must be at least 1, --train-examples at least 0")
    try:
        batches = [int(b) for b in args.batch.split(",")]
    except ValueError:
        batches = []
    if not batches or min(batches) < 1:
        p.error(f"--batch {args.batch!r}: expected batch sizes of at least 1, comma-separated")
    rivals = [r for r in args.rivals.split(",") if r]
    if set(rivals) - set(RIVALS):
        p.error(f"--rivals {args.rivals!r}: expected names of {', '.join(RIVALS)}")
    if "suffix-warm" in rivals and importlib.util.find_spec("arctic_inference") is None:
        p.error("the suffix-warm rival needs arctic-inference (make .venv/.tasc-arctic-inference builds it); "
                "leave it out with --rivals oracle")
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
    @functools.cache  # read once: each batch size warms a fresh suffix cache with them
    def train_answers():
        got = greedy_outputs(args.task, len(train), model, tokenizer, args.dtype, messages, label, split="train")
        return got["prompt_ids"][: len(train)], got["output_ids"][: len(train)]

    if args.index == "own":
        answers = [tokenizer.decode(o, skip_special_tokens=True) for o in train_answers()[1]]
        index = write_own_index(args.task, messages(train), answers,
                                folder / f"{args.task}-{label or 'default'}-{len(train)}-own.tasc", tokenizer)
    else:
        index = prepare_task_index(task, tokenizer, folder, base_cfg.max_order, base_cfg.min_count, messages, train)
    base_cfg = replace(base_cfg, index=str(index), stats_path="", learned_path="")
    make_rivals = {"suffix-warm": lambda: SuffixDrafter(args.k).warm(*train_answers()),
                   "oracle": lambda: OracleDrafter(args.k, prompts, outputs)}

    print(f"{args.task}, {args.model} model: {len(prompts)} prompts, {sum(map(len, outputs))} greedy output tokens, "
          f"k={args.k}, step cost {args.cost}, {len(train)} train examples ({args.index} answers in the index)")
    combos = list(itertools.product(*grid.values())) if grid else [()]
    for batch in batches:
        print(f"\nbatch {batch}\n")
        print("drafter | steps | drafted | accepted | accepted/drafted | mean accepted length | modelled speed-up"
              + "".join(f" | against {r}" if r != "oracle" else " | share of the oracle's gain" for r in rivals))
        ref = {name: replay(make_rivals[name](), prompts, outputs, cost, batch) for name in rivals}
        rows = list(ref.items())
        for combo in combos:
            cfg = replace(base_cfg, **dict(zip(grid, combo)))
            proposer = standalone_proposer(tokenizer, cfg, args.k, max_num_seqs=batch, cost=cost)
            name = "tasc" + "".join(f", {k}={v}" for k, v in zip(grid, combo))
            rows.append((name, replay(proposer, prompts, outputs, cost, batch)))
            if args.bounds:
                fresh = functools.partial(standalone_proposer, tokenizer, cfg, args.k, max_num_seqs=batch, cost=cost)
                rows.append((f"{name}, cut by the oracle",
                             replay(OracleCut(fresh(), prompts, outputs), prompts, outputs, cost, batch)))
                if "suffix-warm" in rivals:
                    best = BestOf([fresh(), make_rivals["suffix-warm"]()], prompts, outputs)
                    rows.append((f"best of {name} and suffix-warm, cut by the oracle",
                                 replay(best, prompts, outputs, cost, batch)))
        for name, r in rows:
            speedup = r["plain_time"] / r["time"]
            cells = []
            for rival, got in ref.items():
                rival_speedup = got["plain_time"] / got["time"]
                cells.append(f"{(speedup - 1) / (rival_speedup - 1):.0%}" if rival == "oracle" and rival_speedup > 1
                             else f"{speedup / rival_speedup:.2f}x" if rival != "oracle" else "-")
            print(f"{name} | {r['steps']} | {r['drafted']} | {r['accepted']} | "
                  f"{r['accepted'] / max(1, r['drafted']):.2f} | {1 + r['accepted'] / max(1, r['drafts']):.2f} | "
                  f"{speedup:.2f}" + "".join(f" | {c}" for c in cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
