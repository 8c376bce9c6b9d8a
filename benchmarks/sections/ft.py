"""RESULTS.md's section for a ``benchmarks.ft`` result file (``ft-usaddress.json``,
``ft-bfcl.json``): TASC-ft against its ``--no-enrich`` baseline fine-tune, quality, speed at
batch 1 and the drafting ceilings over each fine-tune's answers."""

from __future__ import annotations

from pathlib import Path

from benchmarks.harness.paired import describe
from benchmarks.sections.common import engine_mode, fmt, machine_line

FT_SPEC = {"none": "none", "tasc": "TASC-spec", "oracle": "oracle"}  # a TASC-ft run's speculation, by method
FT_COLOR = {"none": "C0", "tasc": "C1", "oracle": "C7"}


def ft_spec(method: str) -> str:
    """``tasc@threshold=0.2+calibrate=0`` -> ``TASC-spec (threshold=0.2, calibrate=0)``."""
    base, _, settings = method.partition("@")
    return FT_SPEC[base] + (f" ({settings.replace('+', ', ')})" if settings else "")


def ft_colors(methods: list[str]) -> dict[str, str]:
    """A colour per method: the defaults keep theirs, each ``tasc@...`` variant gets its own."""
    spare = [c for c in (f"C{i}" for i in range(10)) if c not in FT_COLOR.values()]
    variants = [m for m in dict.fromkeys(methods) if m not in FT_COLOR]
    return {**FT_COLOR, **{m: spare[i % len(spare)] for i, m in enumerate(variants)}}


def ft_plot(res: dict, results: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    labels = [f"{r['model']}\n{'plain' if r['method'] == 'none' else '+ ' + ft_spec(r['method'])}" for r in res["speed"]]
    values = [r["speedup_requests"] for r in res["speed"]]
    colors = ft_colors([r["method"] for r in res["speed"]])
    a1.bar(labels, values, color=[colors[r["method"]] for r in res["speed"]])
    a1.tick_params(axis="x", labelsize=8)
    for i, v in enumerate(values):
        a1.text(i, v, f"{v:.2f}x", ha="center", va="bottom")
    a1.axhline(1.0, color="grey", lw=0.8)
    a1.set_ylabel("requests/s relative to the baseline fine-tune")
    a1.set_title(f"{res['task']}: batch 1")
    names = list(res["fine_tunes"])
    toks = [res["fine_tunes"][n]["output_tokens_per_answer"] for n in names]
    a2.bar(names, toks, color="C2")
    for i, v in enumerate(toks):
        a2.text(i, v, f"{v:.1f}", ha="center", va="bottom")
    a2.set_ylabel("generated tokens per answer (test split)")
    a2.set_title("output length in tokens")
    fig.tight_layout()
    out = results / f"{res['name']}.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out.name


def mining_rule(settings: dict) -> str:
    flags = (("--whole-words", "whole_words"), ("--structure-only", "structure_only"),
             ("--json-values-out", "json_values_out"))
    rules = [flag for flag, key in flags if settings.get(key)]
    scale = settings.get("new_token_lr_scale", 1.0)
    rows = f" The new token rows learned at {scale:g}x the learning rate (`--new-token-lr-scale`)." if scale != 1.0 else ""
    if not rules:
        return ("Mining with no filter: added tokens may cut a word or number in two, or hold values copied "
                "from the prompt." + rows)
    prompts = settings.get("prompt_tokens")
    prompts = (f" Up to {prompts} more from the prompts (`--prompt-tokens`), none when they would save less than "
               "`--min-saving` of the prompts' tokens." if prompts else "")
    return "Mining with " + " and ".join(f"`{r}`" for r in rules) + "." + prompts + rows


def _building(res: dict) -> str:
    """The time building the two checkpoints took, when the file records it (not part of
    ``seconds``, which counts the measurement alone)."""
    build = res.get("build_seconds")
    if build is None:
        return ""
    if build < 60:  # given, or cached from an earlier run
        return " (the checkpoints were built before)"
    return f", after {build / 60:.1f} min building the checkpoints"


def section(file_name: str, res: dict, results: Path) -> list[str]:
    m, s = res["machine"], res["settings"]
    ft = res["fine_tunes"]
    base = s.get("base_model")  # files from before --base-model lack it: the default model
    on = f"{res['task']}, {Path(base).name}" if base else res["task"]
    lines = [
        f"## TASC-ft on {on} (`{file_name}`, `python -m benchmarks.ft --task {res['task']}"
        f"{f' --base-model {base}' if base else ''}`)",
        "",
        f"{machine_line(m)}; dtype {s['dtype']}, k={s['k']}; {engine_mode(s)}; "
        f"{res['seconds'] / 60:.1f} min in all{_building(res)}. Both fine-tunes: same data, seed and {ft['baseline-ft']['training_steps']} steps; "
        "`tasc-ft` grew the vocabulary, `baseline-ft` is `--no-enrich`. "
        + mining_rule(ft["tasc-ft"].get("enrich_settings", {})),
        "",
        f"![{res['name']}](results/{ft_plot(res, results)})",
        "",
        "| fine-tune | vocabulary | task score | generated tokens per answer | reference tokens per answer | characters per answer | test prompts |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, q in ft.items():
        lines.append(
            f"| {name} | {q['vocab_size']:,} (+{q['tokens_added']}) | {fmt(q['task_score'], 3)} | "
            f"{fmt(q['output_tokens_per_answer'], 1)} | {fmt(q['reference_tokens_per_answer'], 1)} | "
            f"{fmt(q['output_chars_per_answer'], 1)} | {q['num_prompts']} |"
        )
    if "quality_difference" in res:  # files from before per-prompt scores lack it
        lines += ["", f"Task score, `tasc-ft` against `baseline-ft` prompt by prompt: {describe(res['quality_difference'])}."]
    lines += [
        "",
        f"Speed at batch 1 on {res['speed'][0]['num_requests']} test prompts, relative to `baseline-ft` without speculation:",
        "",
        "| fine-tune | speculation | requests/s | speed-up (req/s) | speed-up (chars/s) | mean accepted length | task score |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in res["speed"]:
        sm = r.get("spec_metrics", {})
        lines.append(
            f"| {r['model']} | {ft_spec(r['method'])} | {fmt(r['requests_per_second'], 3)} | "
            f"{fmt(r['speedup_requests'])} | {fmt(r['speedup_chars'])} | {fmt(sm.get('mean_acceptance_length'))} | "
            f"{fmt(r['task_score'])} |"
        )
    return lines + [""] + ft_ceilings(res)


def ft_ceilings(res: dict) -> list[str]:
    """The drafting ceilings over each fine-tune's plain answers
    (:func:`benchmarks.harness.ceilings.drafting_ceilings`), as speed-ups over ``baseline-ft``
    without speculation."""
    ceilings = res.get("ceilings") or {}
    if not ceilings:
        return []
    plain = {r["model"]: r["speedup_requests"] for r in res["speed"] if r["method"] == "none"}
    lines = [
        "Drafting ceilings over each fine-tune's plain answers to the same prompts (`benchmarks.headroom`'s measures, "
        "no engine): the share of positions where TASC-spec's choice, either source's top guess, any of its "
        "candidates, or a wider n-gram candidate set (`benchmarks/harness/followers.py`; mean size in brackets) holds the "
        "next token; then, priced by the engine costs fitted to the fine-tune's own runs above (`benchmarks/harness/step_cost.py`), "
        "the right candidate every time, cut right before the first position where none is right, as a speed-up "
        f"over `baseline-ft` without speculation (k={res['settings']['k']}):",
        "",
        "| fine-tune | choice | either top guess | any candidate | longest contexts | every context "
        "| TASC-spec, modelled / measured | sources' ceiling | ceiling, longest contexts | ceiling, every context "
        "| oracle, modelled / measured |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, c in ceilings.items():
        sh, w, e = c["shares"], c["wide"], c.get("engine")
        scale = plain.get(name, 1.0)

        def x(key, table="modelled", e=e, scale=scale) -> str:
            v = (e or {}).get(table, {}).get(key)
            return "-" if v is None else f"{v * scale:.2f}x"

        def pair(a: str, b: str) -> str:
            return "not priced" if a == b == "-" else f"{a} / {b}"

        ceiling = x("any_candidate")
        lines.append(
            f"| {name} | {100 * sh['choice']:.1f} % | {100 * sh['either_top']:.1f} % | {100 * sh['any_candidate']:.1f} % "
            f"| {100 * w['longest']['share']:.1f} % ({w['longest']['mean_size']:.0f}) "
            f"| {100 * w['every']['share']:.1f} % ({w['every']['mean_size']:.0f}) "
            f"| {pair(x('default'), x('tasc', 'measured'))} | {ceiling if ceiling == '-' else f'**{ceiling}**'} "
            f"| {x('wide_longest')} | {x('wide_every')} | {pair(x('oracle'), x('oracle', 'measured'))} |"
        )
    costs = [f"{name}: prompt processing {e['cost']['prefill']:.1f} s, {1000 * e['cost']['step']:.1f} ms a step, "
             f"{1000 * e['cost']['draft_token']:.2f} ms a drafted token (fitted to {e['cost']['runs']} runs, "
             f"largest error {100 * e['cost']['worst_error']:.0f} %)"
             for name, c in ceilings.items() if (e := c.get("engine"))]
    if costs:
        lines += ["", "Engine costs: " + "; ".join(costs) + "."]
    reasons = [f"{name}: {c['no_engine_terms']}" for name, c in ceilings.items() if c.get("no_engine_terms")]
    if reasons:
        lines += ["", "Not priced (the runs do not fit the engine costs): " + "; ".join(reasons) + "."]
    return lines + [""]
