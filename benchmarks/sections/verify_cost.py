"""RESULTS.md's section for ``verify-cost.json`` (``benchmarks.verify_cost``): a decoding
step's time by the number of drafted tokens it verifies, with the line and the knee fitted."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmarks.sections.common import machine_line


def plot(res: dict, path: Path) -> None:
    """Every measured point by draft length, per batch size, with the line and the knee."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = res["summary"]
    fig, axes = plt.subplots(1, len(summary), figsize=(5.5 * len(summary), 4), squeeze=False)
    for ax, s in zip(axes[0], summary):
        b = s["batch_size"]
        pts = [p for p in res["points"] if p["batch_size"] == b]
        ax.scatter([p["length"] for p in pts], [p["ms_per_step"] for p in pts], s=14, color="tab:blue",
                   label="measured (every repeat)")
        xs = np.array(sorted({p["length"] for p in pts}))
        ax.plot(xs, s["fit_step_ms"] + s["fit_ms_per_drafted_token"] * xs, color="tab:orange",
                label=f"line: {s['fit_step_ms']:.1f} ms + {s['fit_ms_per_drafted_token']:.2f} ms x L")
        if "knee_length" in s:
            fine = np.linspace(xs[0], xs[-1], 200)
            ax.plot(fine, s["knee_flat_ms"] + s["knee_ms_per_drafted_token"] * np.maximum(0, fine - s["knee_length"]),
                    color="tab:green", linestyle="--",
                    label=f"knee: {s['knee_flat_ms']:.1f} ms up to L={s['knee_length']}, "
                          f"then {s['knee_ms_per_drafted_token']:.2f} ms per token")
        ax.set_xlabel("drafted tokens per row verified in a step (L)")
        ax.set_ylabel("ms per step")
        ax.set_ylim(bottom=0)
        ax.set_title(f"batch {b}: a step's cost by draft length")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def section(file_name: str, res: dict, results: Path | None = None) -> list[str]:
    """The RESULTS.md section for a ``verify-cost`` result file; draws its plot into
    ``results`` (none drawn without it)."""
    if results is not None:
        plot(res, results / f"{Path(file_name).stem}.png")
    s, m = res["settings"], res["machine"]
    lengths = [str(L) for L in s["lengths"]]
    lines = [f"## Verification cost (`{file_name}`, `make bench-verify-cost`)", "",
             f"{machine_line(m)}; {s['task']}, {s['prompts']} held-out prompts, "
             f"{s['tokens']} tokens each, every draft rejected; dtype {s['dtype']}, engines {s['engines']}; "
             f"{s['repeats']} repeats; {res['seconds'] / 60:.1f} min in all.", "",
             f"![{Path(file_name).stem}.png](results/{Path(file_name).stem}.png)", "",
             "Milliseconds per step (median of the repeats) by drafted tokens per row, L:", "",
             "| batch | " + " | ".join(f"L={L}" for L in lengths) + " | line: step + per drafted token "
             "| knee: flat up to L, then per drafted token |",
             "| --- | " + " | ".join("---" for _ in lengths) + " | --- | --- |"]
    for row in res["summary"]:
        cells = " | ".join(f"{row['median_ms_per_step'][L]:.1f}" for L in lengths)
        lines.append(f"| {row['batch_size']} | {cells} | {row['fit_step_ms']:.1f} ms + "
                     f"{row['fit_ms_per_drafted_token']:.2f} ms x L | {row['knee_flat_ms']:.1f} ms up to "
                     f"L={row['knee_length']}, then {row['knee_ms_per_drafted_token']:.2f} ms |")
    return lines + [""]
