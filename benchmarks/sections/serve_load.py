"""RESULTS.md's section for ``serve-load.json`` (``benchmarks.serve_load``): a real ``vllm
serve`` with TASC-spec under a mixed load, its memory over time, and a greedy phase compared
with a plain engine."""

from __future__ import annotations

from pathlib import Path


def serve_load_plot(res: dict, results: Path) -> str:
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
    out = results / "serve-load-memory.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out.name


def section(file_name: str, res: dict, results: Path) -> list[str]:
    mixed, greedy = res["phases"]
    mem = mixed["memory_mib"]
    k = mixed["kinds"]
    return [
        f"## Load through a real `vllm serve` (`{file_name}`, `make bench-load`)",
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
        f"![serve-load-memory](results/{serve_load_plot(res, results)})",
        "",
        f"Greedy fp32 phase: {greedy['matched']} of {greedy['compared']} outputs equal a plain engine's "
        f"(no speculation); {greedy['failed']} failed.",
        "",
    ]
