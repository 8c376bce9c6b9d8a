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
- **When to stop.** Modelled speed-up (``benchmarks.replay``'s cost model, a step costing
  ``overhead + verified tokens``) of the default stop rule, of the same drafts cut exactly
  before their first wrong token, and of drafting as long as any candidate exists, cut the
  same way.

Writes ``benchmarks/results/headroom.json`` after every task (tasks measured again replace their
rows, others are kept; ``seconds`` adds up) and regenerates ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from dataclasses import replace

import numpy as np
from tqdm import tqdm

from benchmarks.replay import greedy_outputs, modelled_speedup, replay, standalone_proposer
from benchmarks.run import RESULTS, machine, own_output_index

SHARES = ("choice", "context", "corpus", "either_top", "any_candidate", "text_match", "text_match_new",
          "whitespace")
DRAFT_WHILE_ANY = {"threshold": 0.0, "step_overhead": 0.0}  # no stop rule: draft while a candidate exists
TEXT_MATCH_CHARS = (24, 16, 12, 8, 6, 4)  # whitespace-free suffix lengths tried, longest first


def text_match_guess(history: str, min_chars: int = TEXT_MATCH_CHARS[-1]) -> str:
    """The characters that followed the latest earlier occurrence of the longest suffix of
    ``history`` (whitespace removed), or ``""``."""
    for n in TEXT_MATCH_CHARS:
        if n < min_chars or len(history) <= n:
            continue
        j = history.rfind(history[-n:], 0, len(history) - 1)
        if j >= 0:
            return history[j + n: j + n + 16]
    return ""


def score_positions(proposer, prompts, outputs, pieces) -> dict:
    """Shares of answer positions (after the first token, which prefill yields) where each
    source's guess is the model's next token.  ``proposer`` must draft one token whenever it
    has a candidate (``k=1``, no threshold, no step cost); ``pieces[t]``: token ``t``'s text
    without whitespace."""
    from tasc_vllm.lookups import longest_corpus_entry, request_guess

    cfg, table = proposer.cfg, proposer.table
    no_draft = np.zeros(1, np.int32)
    hits = dict.fromkeys(SHARES, 0)
    n = 0
    for prompt, out in zip(prompts, outputs):
        seq = np.asarray(prompt + out, dtype=np.int32)
        buf = seq[None, :]
        history = "".join(pieces[t] for t in seq[: len(prompt) + 1])
        for pos in range(len(prompt) + 1, seq.size):
            true = int(seq[pos])
            n += 1
            # as after a step that gained seq[pos - 1]: observe it, then draft
            draft = proposer.propose([[int(seq[pos - 1])]], np.array([pos], np.int32), buf)[0]
            choice = draft[0] if draft else -1
            ptr, _, _ = request_guess(seq, pos, cfg.context_min_order, cfg.context_max_order, proposer.space)
            guess = int(seq[ptr]) if ptr >= 0 else -1
            entry, _ = longest_corpus_entry(seq, pos, no_draft, 0, table.slots, table.keys, cfg.max_order)
            top = [int(t) for t in table.nexts[entry] if t >= 0] if entry >= 0 else []
            text = pieces[true]
            matched = bool(text) and text_match_guess(history).startswith(text)
            hits["choice"] += choice == true
            hits["context"] += guess == true
            hits["corpus"] += bool(top) and top[0] == true
            hits["either_top"] += guess == true or (bool(top) and top[0] == true)
            hits["any_candidate"] += guess == true or true in top
            hits["text_match"] += matched
            hits["text_match_new"] += matched and choice != true
            hits["whitespace"] += not text
            history += text
    return {"positions": n, **{k: v / max(n, 1) for k, v in hits.items()}}


def stop_ceilings(make_proposer, prompts, outputs, overhead: float) -> dict:
    """Modelled speed-ups of the default stop rule and of drafting while any candidate exists,
    each as drafted and cut exactly before the first wrong token."""
    out = {}
    for name, settings in (("default", {}), ("longest", DRAFT_WHILE_ANY)):
        r = replay(make_proposer(settings), prompts, outputs)
        cut = dict(r, drafted=r["accepted"])
        out[name] = {"speedup": modelled_speedup(r, overhead), "speedup_cut": modelled_speedup(cut, overhead),
                     "mean_accepted_length": r["tokens"] / r["steps"], "drafted": r["drafted"],
                     "accepted": r["accepted"]}
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

    from benchmarks.report import write_report
    from tasc_vllm.config import load_config
    from tasc_vllm.demo import prepare_task_index
    from tasc_vllm.models import materialize
    from tasc_vllm.paths import write_atomic
    from tasc_vllm.tasks import TASKS, get_task

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default="usaddress,bfcl,humaneval")
    p.add_argument("--prompts", type=int, default=64, help="held-out prompts whose greedy answers are scored")
    p.add_argument("--self-prompts", type=int, default=64, help="train prompts for the own-output index")
    p.add_argument("--k", type=int, default=16)
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--overhead", type=float, default=12.0, help="a step's fixed cost in verified tokens")
    p.add_argument("--name", default="headroom", help="result file name (benchmarks/results/NAME.json)")
    args = p.parse_args(argv)
    tasks = [t for t in args.tasks.split(",") if t]
    unknown = [t for t in tasks if t not in TASKS]
    if unknown or not tasks:
        raise SystemExit(f"unknown task(s) {unknown or args.tasks!r}; known: {', '.join(TASKS)}")
    if args.prompts < 1 or args.self_prompts < 1 or args.k < 1 or args.overhead < 0:
        raise SystemExit("--prompts, --self-prompts and --k must be at least 1, --overhead at least 0")
    settings = {"prompts": args.prompts, "self_prompts": args.self_prompts, "k": args.k, "dtype": args.dtype,
                "overhead": args.overhead}
    path = RESULTS / f"{args.name}.json"
    old = check_settings(path, settings)
    t0 = time.time()
    model = str(materialize())
    tokenizer = AutoTokenizer.from_pretrained(model)
    pieces = [re.sub(r"\s", "", tokenizer.decode([t])) for t in range(len(tokenizer))]
    folder = RESULTS / "replay-work"
    folder.mkdir(exist_ok=True)
    base_cfg = load_config()

    res = {"kind": "headroom", "name": args.name, "machine": machine(), "settings": settings,
           "rows": old["rows"] if old else []}
    seconds_before = old.get("seconds", 0.0) if old else 0.0
    bar = tqdm(total=2 * len(tasks), desc="headroom", unit="index")
    for name in tasks:
        task = get_task(name)
        bar.set_description(f"{name}: greedy answers")
        data = greedy_outputs(name, args.prompts, model, tokenizer, args.dtype)
        prompts, outputs = data["prompt_ids"][: args.prompts], data["output_ids"][: args.prompts]
        own = folder / f"{name}-self-{args.self_prompts}-{args.dtype}.tasc"  # recorded once per count and dtype
        if not own.exists():
            bar.set_description(f"{name}: model outputs on train prompts")
            own_output_index(task, model, tokenizer, args.dtype, args.self_prompts, own,
                             RESULTS / f"replay-{name}-engines.log")
        rows = []
        indexes = {"reference": prepare_task_index(task, tokenizer, folder, base_cfg.max_order, base_cfg.min_count),
                   "own outputs": own}
        for label, index in indexes.items():
            bar.set_description(f"{name}: {label}")
            cfg = replace(base_cfg, index=str(index))

            def proposer(settings, k=args.k, cfg=cfg):
                return standalone_proposer(tokenizer, replace(cfg, **settings), k)

            shares = score_positions(proposer(DRAFT_WHILE_ANY, k=1), prompts, outputs, pieces)
            rows.append({"task": name, "index": label, "answer_tokens": sum(map(len, outputs)), **shares,
                         "stop": stop_ceilings(proposer, prompts, outputs, args.overhead)})
            bar.update()
        # saved after every task, so a run cut short keeps what it finished
        res["rows"] = [r for r in res["rows"] if r["task"] != name] + rows
        res["seconds"] = seconds_before + time.time() - t0
        write_atomic(path, json.dumps(res, indent=1).encode())
    bar.close()
    for line in headroom_section(path.name, res):
        print(line)
    print(write_report())
    return 0


def _pct(v: float) -> str:
    return f"{100 * v:.1f} %"


def headroom_section(file_name: str, res: dict) -> list[str]:
    s = res["settings"]
    lines = [
        f"## Drafting headroom (`{file_name}`, `python -m benchmarks.headroom`)",
        "",
        f"Over the model's greedy answers to {s['prompts']} held-out prompts per task ({s['dtype']}), replayed without "
        f"an engine; the own-output index holds the model's answers to {s['self_prompts']} train prompts. Shares of "
        "answer positions where the model's next token is each source's guess, given the true tokens before it. "
        "Modelled speed-ups use a step cost of "
        f"{s['overhead']:g} + verified tokens, k={s['k']}; \"cut\" = the same drafts cut exactly before their first "
        "wrong token.",
        "",
        "| task | index | positions | TASC-spec's choice | request's guess | corpus's top guess | either top guess "
        "| any candidate | text match, whitespace ignored | text match where the choice missed | whitespace-only tokens "
        "| default rule | default rule, cut | longest drafts, cut |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in res["rows"]:
        st = r["stop"]
        lines.append(
            f"| {r['task']} | {r['index']} | {r['positions']:,} | "
            + " | ".join(_pct(r[k]) for k in SHARES)
            + f" | {st['default']['speedup']:.2f}x | {st['default']['speedup_cut']:.2f}x | {st['longest']['speedup_cut']:.2f}x |"
        )
    lines.append("")
    return lines


if __name__ == "__main__":
    sys.exit(main())
