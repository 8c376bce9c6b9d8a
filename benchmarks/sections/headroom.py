"""RESULTS.md's section for ``headroom.json`` (``benchmarks.headroom``): which-token and
when-to-stop ceilings of TASC-spec's drafting over recorded answers, and the same priced by
the engine's costs."""

from __future__ import annotations

from pathlib import Path

from benchmarks.harness.ceilings import SHARES


def _pct(v: float) -> str:
    return f"{100 * v:.1f} %"


def _own_prompts(res: dict) -> str:
    """Whose answers the own-output index holds, as a phrase."""
    counts = [f"{r['self_prompts']:,} ({r['task']})" for r in res["rows"] if "self_prompts" in r]
    if not counts:  # files from before the count was recorded per task
        return f"{res['settings']['self_prompts']} train prompts"
    whole = "" if res["settings"]["self_prompts"] else ", the whole train split"
    return ", ".join(counts) + f" train prompts{whole}"


def section(file_name: str, res: dict, results: Path | None = None) -> list[str]:
    """The section (``headroom.json`` draws no plot: ``results`` is unused)."""
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
            "Wider candidate sets (`benchmarks/harness/followers.py`): the share of positions where the set holds the "
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
            "The same drafts priced by the engine's own costs (`benchmarks/harness/step_cost.py`: prompt processing + a cost "
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
