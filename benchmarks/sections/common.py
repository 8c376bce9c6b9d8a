"""Formatting shared by the RESULTS.md sections."""

from __future__ import annotations

import statistics
import time


def fmt(v, digits=2) -> str:
    """A number with ``digits`` decimals; ``-`` for a missing one."""
    return "-" if v is None else f"{v:.{digits}f}"


def engine_mode(settings: dict, what: str = "engines") -> str:
    """How a run's engines (or servers) were built: compiled as vLLM does by default, or eager."""
    return f"{what} compiled (torch.compile)" if settings.get("compiled") else f"{what} eager (enforce_eager)"


def machine_line(m: dict) -> str:
    """``2 cores, CPU NAME``: the machine a result file was measured on."""
    return f"{m.get('cores')} cores, {m.get('cpu')}"


def repeated(runs: list[dict]) -> dict[tuple[int, str], list[dict]]:
    """A task's runs by (batch size, method), in their order: one run each, or one per repeat
    (``benchmarks.run --repeats``)."""
    groups: dict[tuple[int, str], list[dict]] = {}
    for r in runs:
        groups.setdefault((r["batch_size"], r["method"]), []).append(r)
    return groups


def median(values: list[float]) -> float:
    return statistics.median(values)


def spread(values: list, digits: int = 2) -> str:
    """One value as it is; several (repeats) as their median and range."""
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    if len(values) == 1:
        return fmt(values[0], digits)
    return f"{fmt(median(values), digits)} ({fmt(min(values), digits)} to {fmt(max(values), digits)})"


def utc(unix: float) -> str:
    """A time stamp as ``YYYY-MM-DD HH:MM`` UTC."""
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(unix))


def resumed(res: dict) -> str:
    """Which tasks each invocation measured, for a run continued with --resume."""
    calls = res.get("invocations", [])
    if len(calls) < 2:
        return ""
    # the first invocation of an older file names no machine: the file's own is its
    machines = [machine_line(c.get("machine") or res["machine"]) for c in calls]
    several = len(set(machines)) > 1
    parts = [f"{', '.join(c['tasks']) or 'nothing'} on {utc(c['started_unix'])} UTC" + (f" ({m})" if several else "")
             for c, m in zip(calls, machines)]
    return (f" Measured in {len(calls)} invocations of the same settings (`--resume`): {'; '.join(parts)}. "
            "Each task's methods ran side by side in one invocation"
            + (", so compare ratios within a task, not across tasks measured on different machines." if several
               else "."))
