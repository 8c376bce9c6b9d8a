"""RESULTS.md's section for a ``benchmarks.online`` result file (``online.json``): ``vllm
serve`` per method, driven by ``vllm bench serve`` at several concurrencies."""

from __future__ import annotations

from pathlib import Path

from benchmarks.sections.common import engine_mode, fmt, machine_line
from benchmarks.sections.offline import model_label


def online_plot(res: dict, name: str, results: Path) -> str:
    """Requests/s relative to no speculation, against concurrency, one line per method and task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = res["tasks"]
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 3.8), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for method in dict.fromkeys(r["method"] for r in task["runs"]):
            pts = sorted((r["concurrency"], r["speedup_requests"]) for r in task["runs"] if r["method"] == method)
            ax.plot(*zip(*pts), marker="o", label=method)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrency (vllm bench serve)")
        ax.set_ylabel("requests/s vs no speculation")
        ax.set_title(task["task"])
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.legend()
    fig.tight_layout()
    png = f"{name}.png"
    fig.savefig(results / png, dpi=110)
    plt.close(fig)
    return png


def section(file_name: str, res: dict, results: Path) -> list[str]:
    s, m = res["settings"], res["machine"]
    lines = [
        f"## Online: `vllm serve` driven by `vllm bench serve` (`{file_name}`, `python -m benchmarks.online`)",
        "",
        f"{machine_line(m)}; dtype {s['dtype']}, k={s['k']}; {engine_mode(s, 'servers')}; "
        "greedy; a fresh server per method, "
        f"{s['prompts']} held-out prompts per concurrency level (a different slice per level, the same for every "
        f"method); `suffix` and `tasc` start cold and learn as they serve, `tasc-static` is TASC-spec with "
        f"learning off. {res.get('seconds', 0) / 60:.1f} min in all"
        + (" (cut short: only the tasks below finished)." if not res.get("complete") else "."),
        "",
        f"![online](results/{online_plot(res, Path(file_name).stem, results)})",
        "",
    ]
    for task in res["tasks"]:
        lines += [
            f"### {task['task']}{model_label(task)}",
            "",
            "| concurrency | method | req/s | speed-up (req/s) | speed-up (tokens/s) | median TTFT ms | median TPOT ms | median ITL ms "
            "| p99 e2e ms | mean accepted length | task score | same as baseline | failed |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in sorted(task["runs"], key=lambda r: r["concurrency"]):
            lines.append(
                f"| {r['concurrency']} | {r['method']} | {fmt(r['request_throughput'])} | {fmt(r['speedup_requests'])} | "
                f"{fmt(r['speedup_tokens'])} | {fmt(r['median_ttft_ms'], 0)} | {fmt(r['median_tpot_ms'], 1)} | {fmt(r['median_itl_ms'], 1)} | "
                f"{fmt(r['p99_e2el_ms'], 0)} | {fmt(r['spec_decode'].get('mean_acceptance_length'))} | "
                f"{fmt(r['task_score'])} | {r['same_as_baseline']}/{r['num_requests']} | {r['failed']} |"
            )
        lines.append("")
    return lines
