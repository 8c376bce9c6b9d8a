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
- **The ceiling of these sources.** Drafts that pick the right candidate every time and stop
  right before the first position where no candidate is right (at most k tokens): no drafter
  that drafts from the corpus's top guesses and the request's match does better.  Beside
  them the oracle (the whole answer, k tokens a step).
- **The ceiling of any n-gram drafter of these sources.** The same, with the candidate sets
  widened as far as the sources' n-gram statistics go (:mod:`benchmarks.followers`): every
  follower of the two longest known corpus contexts and of every earlier occurrence of the
  request's longest match (``longest``), and every follower of any context of 1..8 tokens in
  the corpus or the request (``every``), with the sets' mean size.
- **In the engine's terms.** Every scenario's step and draft counts priced by the engine's own
  costs (:mod:`benchmarks.step_cost`), fitted to a task's runs at one batch size in a
  ``benchmarks.run`` result file (``--engine-results``; by default batch 1 of ``full``, 16 of
  ``b16-clean``, 64 of ``b64-clean``): prompt processing, a cost per step and one per
  drafted token.  The measured ratios of that file stand beside them, so the model's fit
  shows where both exist (the default rule against TASC-spec at batch 1, the oracle).

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

from benchmarks.followers import SETS as WIDE_SETS
from benchmarks.followers import wide_hits
from benchmarks.replay import greedy_outputs, modelled_speedup, replay, standalone_proposer
from benchmarks.run import RESULTS, machine, own_output_index
from benchmarks.step_cost import fit_step_cost, perfect_drafts

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


def score_positions(proposer, prompts, outputs, pieces) -> tuple[dict, list[list[bool]]]:
    """Shares of answer positions (after the first token, which prefill yields) where each
    source's guess is the model's next token, and for every answer whether any candidate was
    right at each of those positions.  ``proposer`` must draft one token whenever it has a
    candidate (``k=1``, no threshold, no step cost); ``pieces[t]``: token ``t``'s text without
    whitespace."""
    from tasc_vllm.kernels.lookups import longest_corpus_entry, request_guess

    cfg, table = proposer.cfg, proposer.table
    no_draft = np.zeros(1, np.int32)
    hits = dict.fromkeys(SHARES, 0)
    any_hits: list[list[bool]] = []
    n = 0
    for prompt, out in zip(prompts, outputs):
        answer_hits: list[bool] = []
        any_hits.append(answer_hits)
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
            answer_hits.append(guess == true or true in top)
            hits["any_candidate"] += answer_hits[-1]
            hits["text_match"] += matched
            hits["text_match_new"] += matched and choice != true
            hits["whitespace"] += not text
            history += text
    return {"positions": n, **{k: v / max(n, 1) for k, v in hits.items()}}, any_hits


def stop_ceilings(make_proposer, prompts, outputs, overhead: float, ceilings: dict, k: int) -> dict:
    """Modelled speed-ups of the default stop rule and of drafting while any candidate exists,
    each as drafted and cut exactly before the first wrong token; then, for each of
    ``ceilings`` (name: per answer, whether a candidate set held the next token at each
    position), the right candidate every time, cut before the first position none is right
    (``any_candidate``: the sources' ceiling), and the oracle.  Every scenario keeps its
    counts, for :func:`engine_terms`."""
    out = {}
    for name, settings in (("default", {}), ("longest", DRAFT_WHILE_ANY)):
        r = replay(make_proposer(settings), prompts, outputs)
        cut = dict(r, drafted=r["accepted"])
        out[name] = {"speedup": modelled_speedup(r, overhead), "speedup_cut": modelled_speedup(cut, overhead),
                     "mean_accepted_length": r["tokens"] / r["steps"], "steps": r["steps"], "drafted": r["drafted"],
                     "accepted": r["accepted"], "tokens": r["tokens"]}
    some = next(iter(ceilings.values()))
    for name, hits in {**ceilings, "oracle": [[True] * len(h) for h in some]}.items():
        r = perfect_drafts(hits, k)
        out[name] = {"speedup_cut": modelled_speedup(r, overhead), "mean_accepted_length": r["tokens"] / r["steps"],
                     **r}
    return out


def token_pieces(tokenizer) -> list[str]:
    """Each token's text without whitespace (for :func:`score_positions`)."""
    return [re.sub(r"\s", "", tokenizer.decode([t])) for t in range(len(tokenizer))]


def measure_index(tokenizer, cfg, prompts, outputs, k: int, overhead: float,
                  pieces: list[str] | None = None) -> tuple[dict, dict, dict]:
    """Everything this module measures for one index (``cfg.index``) over recorded greedy
    answers: the sources' shares (:func:`score_positions`), the wider candidate sets' shares
    and mean sizes (:func:`benchmarks.followers.wide_hits`), and the stop rules' and ceilings'
    counts (:func:`stop_ceilings`) for :func:`engine_terms`.  ``pieces``: the tokenizer's
    :func:`token_pieces`, when the caller measures several indexes with it."""
    from tasc_vllm.index.index_file import read_index
    from tasc_vllm.index.ngram_cache import load_tokenized, whitespace_tokens

    def proposer(settings, k=k):
        return standalone_proposer(tokenizer, replace(cfg, **settings), k)

    pieces = pieces if pieces is not None else token_pieces(tokenizer)
    shares, any_hits = score_positions(proposer(DRAFT_WHILE_ANY, k=1), prompts, outputs, pieces)
    corpus = load_tokenized(read_index(cfg.index), tokenizer, cfg.max_order, cfg.min_count).tokens
    wide = wide_hits(corpus, prompts, outputs, whitespace_tokens(tokenizer, len(tokenizer)), cfg.max_order)
    ceilings = {"any_candidate": any_hits, **{f"wide_{w}": v.pop("hits") for w, v in wide.items()}}
    return shares, wide, stop_ceilings(proposer, prompts, outputs, overhead, ceilings, k)


def engine_terms(stop: dict, runs: list[dict], source: str) -> dict:
    """The scenarios of :func:`stop_ceilings` priced by the engine's costs, fitted to
    ``runs`` (one task's runs of one batch size in a ``benchmarks.run`` result file), with
    that file's measured ratios to plain decoding beside them (the median over repeats).
    The replay drafts each answer alone, so the default rule's drafts are those of batch 1;
    the longest drafts, the sources' ceiling and the oracle do not depend on the batch.
    Runs that cannot be fitted raise ValueError, naming ``source`` and the batch size."""
    try:
        cost = fit_step_cost(runs)
    except ValueError as e:
        raise ValueError(f"{source}, batch {runs[0]['batch_size']}: {e}") from None
    speeds: dict[str, list[float]] = {}
    for r in runs:
        speeds.setdefault(r.get("label") or r["method"], []).append(r["tokens_per_second"])
    plain = float(np.median(speeds.pop("none")))
    measured = {label: float(np.median(v)) / plain for label, v in speeds.items()}

    def ratio(c: dict, drafted: int) -> float:
        # steps as the fit counts them (output tokens minus accepted ones: a request's last step
        # verifies its answer's end with no token of the model's own, so vLLM's counters cannot
        # tell it apart; its cost goes to the fitted per-request terms), not the replay's loops
        return cost.speedup(c["tokens"], c["tokens"] - c["accepted"], drafted)

    modelled = {"longest_cut": ratio(stop["longest"], stop["longest"]["accepted"])}
    for name in ("any_candidate", *(f"wide_{w}" for w in WIDE_SETS), "oracle"):
        if name in stop:  # files from before the wide sets have none
            modelled[name] = ratio(stop[name], stop[name]["drafted"])
    if cost.batch_size == 1:
        modelled.update(default=ratio(stop["default"], stop["default"]["drafted"]),
                        default_cut=ratio(stop["default"], stop["default"]["accepted"]))
    return {"source": source, "batch_size": cost.batch_size, "cost": cost.to_dict(), "measured": measured,
            "modelled": modelled}


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

    from benchmarks.report import write_report
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

    res = {"kind": "headroom", "name": args.name, "machine": machine(), "settings": settings,
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
    for line in headroom_section(path.name, res):
        print(line)
    print(write_report())
    return 0


def _pct(v: float) -> str:
    return f"{100 * v:.1f} %"


def _own_prompts(res: dict) -> str:
    """Whose answers the own-output index holds, as a phrase."""
    counts = [f"{r['self_prompts']:,} ({r['task']})" for r in res["rows"] if "self_prompts" in r]
    if not counts:  # files from before the count was recorded per task
        return f"{res['settings']['self_prompts']} train prompts"
    whole = "" if res["settings"]["self_prompts"] else ", the whole train split"
    return ", ".join(counts) + f" train prompts{whole}"


def headroom_section(file_name: str, res: dict) -> list[str]:
    s = res["settings"]
    lines = [
        f"## Drafting headroom (`{file_name}`, `python -m benchmarks.headroom`)",
        "",
        f"Over the model's greedy answers to {s['prompts']} held-out prompts per task ({s['dtype']}), replayed without "
        f"an engine; the own-output index holds the model's answers to {_own_prompts(res)}. Shares of "
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
    wide_rows = [r for r in res["rows"] if "wide" in r]
    if wide_rows:
        lines += [
            "Wider candidate sets (`benchmarks/followers.py`): the share of positions where the set holds the "
            "model's next token, and the set's mean size. TASC-spec's own: the corpus's top four after its longest "
            "context and the request's guess. Longest contexts: every follower of the corpus's two longest known "
            "contexts and of every earlier occurrence of the request's longest match. Every context: every follower "
            "of any context of 1 to 8 tokens in the corpus or the request. Online learning adds each answer to the "
            "corpus statistics as it is generated.",
            "",
            "| task | index | TASC-spec's candidates (up to 5) | longest contexts | mean size | every context "
            "| mean size |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in wide_rows:
            w = r["wide"]
            lines.append(
                f"| {r['task']} | {r['index']} | {_pct(r['any_candidate'])} | {_pct(w['longest']['share'])} | "
                f"{w['longest']['mean_size']:.1f} | {_pct(w['every']['share'])} | {w['every']['mean_size']:.1f} |"
            )
        lines.append("")
    priced = [(r, e) for r in res["rows"] for e in r.get("engine") or []]
    if priced:
        lines += [
            "The same drafts priced by the engine's own costs (`benchmarks/step_cost.py`: prompt processing + a cost "
            "per step + one per drafted token, fitted to one file's runs of a task at one batch size; \"fit\": its "
            "largest error over those runs). A ceiling: the right candidate of the set every time, cut right before "
            "the first position where none is right (\"sources' ceiling\": TASC-spec's own candidates). The replay "
            "drafts each answer alone, so the default rule's figures are for batch 1 only. Measured: that file's "
            "ratios to plain decoding (TASC-spec with the matching index; the file's own-output index may hold "
            "another number of train answers).",
            "",
            "| task | index | file, batch | prefill, s | per step, ms | per drafted token, ms | fit | default rule "
            "| TASC-spec, measured | default rule, cut | longest drafts, cut | sources' ceiling "
            "| ceiling, longest contexts | ceiling, every context | oracle | oracle, measured |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]

        def x(v) -> str:
            return "" if v is None else f"{v:.2f}x"

        for r, e in priced:
            c, m, meas = e["cost"], e["modelled"], e["measured"]
            tasc = meas.get("tasc-self") if r["index"] == "own outputs" else meas.get("tasc")
            lines.append(
                f"| {r['task']} | {r['index']} | `{e['source']}`, {e['batch_size']} | {c['prefill']:.1f} | "
                f"{1000 * c['step']:.1f} | {1000 * c['draft_token']:.2f} | {100 * c['worst_error']:.0f} % | "
                f"{x(m.get('default'))} | {x(tasc)} | {x(m.get('default_cut'))} | {x(m['longest_cut'])} | "
                f"**{x(m['any_candidate'])}** | {x(m.get('wide_longest'))} | {x(m.get('wide_every'))} | "
                f"{x(m['oracle'])} | {x(meas.get('oracle'))} |"
            )
        lines.append("")
    return lines


if __name__ == "__main__":
    sys.exit(main())
