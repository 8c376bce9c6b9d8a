"""RESULTS.md's section for ``scaling.json`` (``benchmarks.scaling``): index build, cached
load, memory and the proposer's per-step cost against the corpus size, with its plot."""

from __future__ import annotations

from pathlib import Path

from benchmarks.sections.common import fmt, machine_line


def plot(rows: list[dict], out: Path) -> None:
    """Per-step cost, build and load time, and memory against corpus size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [r["tokens"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    axes[0].plot(x, [r["us_per_row_step"] for r in rows], marker="o", label="defaults (batch 64 drafts short)")
    if all("us_per_row_step_long" in r for r in rows):
        axes[0].plot(x, [r["us_per_row_step_long"] for r in rows], marker="o",
                     label="step_overhead=0 (long drafts)")
        axes[0].legend(fontsize=8)
    axes[0].set_ylabel("µs per request per step")
    axes[0].set_ylim(bottom=0)
    axes[1].plot(x, [r["build_seconds"] for r in rows], marker="o", label="build (tokenize + table)")
    axes[1].plot(x, [r["load_seconds"] for r in rows], marker="o", label="load (cached)")
    axes[1].set_ylabel("seconds")
    axes[1].legend(fontsize=8)
    axes[2].plot(x, [r["table_mib"] + r["tokens_mib"] for r in rows], marker="o")
    axes[2].set_ylabel("MiB in memory (table + tokens)")
    for a in axes:
        a.set_xscale("log")
        a.set_xlabel("corpus tokens")
    fig.suptitle("TASC-spec corpus scaling")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def section(file_name: str, res: dict, results: Path | None = None) -> list[str]:
    """The section; draws ``<stem>.png`` into ``results`` (none drawn without it)."""
    png = f"{Path(file_name).stem}.png"
    if results is not None:
        plot(res["rows"], results / png)
    lines = [
        f"## Corpus scaling (`{file_name}`, `python -m benchmarks.scaling`)",
        "",
        "Build = tokenize with the default model's tokenizer + count the n-gram table; load = read",
        "the cached table; per-step cost = one `propose` call on 64 real rows, divided by 64, with the",
        "defaults (at batch 64 the step-cost rule drafts only near-certain tokens) and with",
        "`step_overhead=0` (every row drafts as long as the statistics allow).",
        "",
    ]
    if "machine" in res:
        lines += [f"{machine_line(res['machine'])}; {res['seconds'] / 60:.1f} min in all.", ""]
    lines += [
        f"![scaling](results/{png})",
        "",
        "| corpus tokens | build s | drafting policy trained, s | load (cached) s | table + tokens MiB | µs per request per step | mean draft length "
        "| µs, long drafts | mean draft length, long drafts |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in res["rows"]:
        lines.append(
            f"| {row['tokens']:,} | {fmt(row['build_seconds'])} | {fmt(row.get('policy_seconds'))} | "
            f"{fmt(row['load_seconds'])} | "
            f"{fmt(row['table_mib'] + row['tokens_mib'], 1)} | {fmt(row['us_per_row_step'], 1)} | {fmt(row['mean_draft_len'])} "
            f"| {fmt(row.get('us_per_row_step_long'), 1)} | {fmt(row.get('mean_draft_len_long'))} |"
        )
    return lines + [""]
