"""Where TASC-spec's drafting headroom lies, over recorded greedy answers, without an engine.

    python -m benchmarks.headroom [--tasks usaddress,bfcl,humaneval] [--prompts 64] [--k 16]

A draft pays off through two choices: which token to put at each position, and when to stop.
This measures both ceilings over the model's recorded greedy answers to held-out prompts
(the same recording :mod:`benchmarks.replay` uses), for the reference index and for an index
of the model's own answers to train prompts:

- **Which token.** At every answer position, given the true tokens before it, is the model's
  next token the proposer's own choice, the request's guess, the corpus's top guess, either
  of the two, or any candidate the proposer has (the corpus's top guesses and the request's,
  from the longer of its token-for-token and whitespace-skipping matches)?
  A candidate set that misses the token bounds every ranking rule.  One source the proposer
  does not have is scored beside them: the request matched as text with all whitespace
  removed (an answer that pretty-prints JSON its prompt holds compact), counted right when
  the text after the earlier match starts with the token's characters; whitespace-only tokens
  are counted apart.  The proposer's state evolves as it would while serving: every position
  is scored, then observed (calibration and online learning).
- **When to stop.** Modelled speed-up (:mod:`benchmarks.harness.replay`'s cost model, a step costing
  ``overhead + verified tokens``) of the default stop rule, of the same drafts cut exactly
  before their first wrong token, and of drafting as long as any candidate exists, cut the
  same way.
- **The ceiling of these sources.** Drafts that pick the right candidate every time and stop
  right before the first position where no candidate is right (at most k tokens): no drafter
  that drafts from the corpus's top guesses and the request's match does better.  Beside
  them the oracle (the whole answer, k tokens a step).
- **The ceiling of any n-gram drafter of these sources.** The same, with the candidate sets
  widened as far as the sources' n-gram statistics go (:mod:`benchmarks.harness.followers`): every
  follower of the two longest known corpus contexts and of every earlier occurrence of the
  request's longest match (``longest``), and every follower of any context of 1..8 tokens in
  the corpus or the request (``every``), with the sets' mean size.
- **In the engine's terms.** Every scenario's step and draft counts priced by the engine's own
  costs (:mod:`benchmarks.harness.step_cost`), fitted to a task's runs at one batch size in a
  ``benchmarks.run`` result file (``--engine-results``; by default batch 1 of ``full``, 16 of
  ``b16-clean``, 64 of ``b64-clean``): prompt processing, a cost per step and one per
  drafted token.  The measured ratios of that file stand beside them, so the model's fit
  shows where both exist (the default rule against TASC-spec at batch 1, the oracle).

The measures are :mod:`benchmarks.harness.ceilings`'s (``benchmarks.ft`` applies them to its
fine-tunes).  The greedy answers are recorded once per task and dtype and cached in
``benchmarks/results/replay-greedy-<task>.json`` (not committed; recorded again when
missing, with one plain engine).  Writes ``benchmarks/results/headroom.json`` after every
task (tasks measured again replace their rows, others are kept; ``seconds`` adds up) and
regenerates ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace

from tqdm import tqdm

from benchmarks import report
from benchmarks.harness.ceilings import engine_terms, measure_index, token_pieces
from benchmarks.harness.machine import machine
from benchmarks.harness.own_outputs import own_output_index
from benchmarks.harness.paths import RESULTS
from benchmarks.harness.replay import greedy_outputs
from benchmarks.sections.headroom import section

def engine_runs(spec: str, dtype: str) -> dict[str, list[tuple[str, list[dict]]]]:
    """For each task, ``(file name, runs)`` of every ``NAME:BATCH`` in ``spec`` (comma-separated):
    the task's runs at that batch size in ``benchmarks/results/NAME.json``.  A missing file
    is skipped with a note; one that is not a ``benchmarks.run`` result file, or was measured
    in another dtype, is refused."""
    out: dict[str, list[tuple[str, list[dict]]]] = {}
    for item in filter(None, spec.split(",")):
        name, _, batch = item.partition(":")
        if not name or not batch.isdigit() or int(batch) < 1:
            raise SystemExit(f"--engine-results: {item!r} is not NAME:BATCH (e.g. full:1)")
        path = RESULTS / f"{name}.json"
        if not path.exists():
            print(f"--engine-results: no {path}; its figures are left out", file=sys.stderr)
            continue
        try:
            data = json.loads(path.read_text())
            theirs = data["settings"].get("dtype")
            for t in data["tasks"]:
                runs = [r for r in t["runs"] if int(r["batch_size"]) == int(batch)]
                if runs:
                    out.setdefault(t["task"], []).append((path.name, runs))
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise SystemExit(f"--engine-results: {path} is not a benchmarks.run result file ({e})")
        if theirs != dtype:
            raise SystemExit(f"--engine-results: {path} was measured in {theirs}, this replay is {dtype}")
    return out


def check_settings(path, settings: dict) -> dict | None:
    """The existing result file at ``path`` (its rows are kept), or None; one made with other
    settings is refused, naming what differs."""
    if not path.exists():
        return None
    try:
        old = json.loads(path.read_text())
        if old.get("kind") != "headroom":
            raise ValueError(f"its kind is {old.get('kind')!r}")
        differ = [f"{k}: {old['settings'].get(k)!r} there, {v!r} now" for k, v in settings.items()
                  if old["settings"].get(k) != v]
        rows = old["rows"]
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise SystemExit(f"{path} is not a headroom result file ({e}); move it away or pass another --name")
    if differ:
        raise SystemExit(f"{path} was measured with other settings ({'; '.join(differ)}); "
                         "pass another --name to keep both")
    if not isinstance(rows, list):
        raise SystemExit(f"{path} has no list of rows; move it away or pass another --name")
    return old


def main(argv=None) -> int:
    from transformers import AutoTokenizer

    from tasc_vllm.config import load_config
    from tasc_vllm.eval.demo import prepare_task_index
    from tasc_vllm.eval.models import materialize
    from tasc_vllm.paths import write_atomic
    from tasc_vllm.eval.tasks import TASKS, get_task

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default="usaddress,bfcl,humaneval")
    p.add_argument("--prompts", type=int, default=64, help="held-out prompts whose greedy answers are scored")
    p.add_argument("--self-prompts", type=int, default=0,
                   help="train prompts for the own-output index (default 0: the whole train split)")
    p.add_argument("--k", type=int, default=16)
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--overhead", type=float, default=12.0, help="a step's fixed cost in verified tokens")
    p.add_argument("--name", default="headroom", help="result file name (benchmarks/results/NAME.json)")
    p.add_argument("--engine-results", default="full:1,b16-clean:16,b64-clean:64",
                   help="NAME:BATCH,...: benchmarks.run result files (benchmarks/results/NAME.json) whose runs of "
                        "each task at that batch size give the engine's step costs (files with flawed batch sizes: "
                        "name the clean ones)")
    args = p.parse_args(argv)
    tasks = [t for t in args.tasks.split(",") if t]
    unknown = [t for t in tasks if t not in TASKS]
    if unknown or not tasks:
        raise SystemExit(f"unknown task(s) {unknown or args.tasks!r}; known: {', '.join(TASKS)}")
    if args.prompts < 1 or args.self_prompts < 0 or args.k < 1 or args.overhead < 0:
        raise SystemExit("--prompts and --k must be at least 1, --self-prompts and --overhead at least 0")
    settings = {"prompts": args.prompts, "self_prompts": args.self_prompts, "k": args.k, "dtype": args.dtype,
                "overhead": args.overhead, "engine_results": args.engine_results}
    path = RESULTS / f"{args.name}.json"
    old = check_settings(path, settings)
    measured_runs = engine_runs(args.engine_results, args.dtype)
    t0 = time.time()
    model = str(materialize())
    tokenizer = AutoTokenizer.from_pretrained(model)
    pieces = token_pieces(tokenizer)
    folder = RESULTS / "replay-work"
    folder.mkdir(exist_ok=True)
    base_cfg = load_config()

    res = {"kind": "headroom", "name": args.name, "started_unix": int(t0), "machine": machine(), "settings": settings,
           "rows": old["rows"] if old else []}
    seconds_before = old.get("seconds", 0.0) if old else 0.0
    bar = tqdm(total=2 * len(tasks), desc="headroom", unit="index")
    for name in tasks:
        task = get_task(name)
        bar.set_description(f"{name}: greedy answers")
        data = greedy_outputs(name, args.prompts, model, tokenizer, args.dtype)
        prompts, outputs = data["prompt_ids"][: args.prompts], data["output_ids"][: args.prompts]
        train = len(task.load("train"))
        self_prompts = min(args.self_prompts, train) if args.self_prompts else train
        own = folder / f"{name}-self-{self_prompts}-{args.dtype}.tasc"  # recorded once per count and dtype
        if not own.exists():
            bar.set_description(f"{name}: model outputs on {self_prompts} train prompts")
            own_output_index(task, model, tokenizer, args.dtype, self_prompts, own,
                             RESULTS / f"replay-{name}-engines.log")
        rows = []
        indexes = {"reference": prepare_task_index(task, tokenizer, folder, base_cfg.max_order, base_cfg.min_count),
                   "own outputs": own}
        for label, index in indexes.items():
            bar.set_description(f"{name}: {label}")
            cfg = replace(base_cfg, index=str(index))

            shares, wide, stop = measure_index(tokenizer, cfg, prompts, outputs, args.k, args.overhead, pieces)
            try:
                engine = [engine_terms(stop, runs, source) for source, runs in measured_runs.get(name, [])]
            except ValueError as e:
                raise SystemExit(f"--engine-results: {e}") from None
            rows.append({"task": name, "index": label, "answer_tokens": sum(map(len, outputs)), **shares,
                         "wide": wide, "stop": stop, "engine": engine}
                        | ({"self_prompts": self_prompts} if label == "own outputs" else {}))
            bar.update()
        # saved after every task, so a run cut short keeps what it finished
        res["rows"] = [r for r in res["rows"] if r["task"] != name] + rows
        res["seconds"] = seconds_before + time.time() - t0
        write_atomic(path, json.dumps(res, indent=1).encode())
    bar.close()
    for line in section(path.name, res):
        print(line)
    print(report.write_report())
    return 0


if __name__ == "__main__":
    sys.exit(main())
