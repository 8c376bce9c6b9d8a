"""RESULTS.md's table of what each benchmark took: ``make bench``'s stages and the
single-purpose targets, from the time each result file records."""

from __future__ import annotations

from benchmarks.sections.common import utc


def _minutes(res: dict) -> float | None:
    """The stage's minutes: the time its file records for the measurement (``seconds``), plus
    the checkpoint building of ``benchmarks.ft`` where recorded (``build_seconds``)."""
    if res.get("seconds") is None:
        return None
    return (res["seconds"] + (res.get("build_seconds") or 0)) / 60


def _notes(res: dict) -> str:
    notes = []
    calls = res.get("invocations") or []
    if len(calls) > 1:
        notes.append(f"{len(calls)} invocations (`--resume`)")
    if res.get("kind") == "tasc-ft" and "build_seconds" not in res:
        notes.append("measurement only: building the checkpoints is not recorded")
    if res.get("complete") is False:
        notes.append("cut short")
    return "; ".join(notes)


def section(rows: list[tuple[str, str, str, dict | None]]) -> list[str]:
    """``rows``: (make target, command, result file name, its contents or None when absent)."""
    lines = [
        "## What each benchmark took",
        "",
        f"`make bench` runs the first {sum(t == 'make bench' for t, _, _, _ in rows)} in turn; the others are "
        "single-purpose targets. Minutes as the result file records them; start times in UTC (a stage run again "
        "on its own has a later one).",
        "",
        "| target | command | result file | started | minutes | notes |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    total = 0.0
    unrecorded = []  # make bench's stages whose time is missing or partial
    for target, command, name, res in rows:
        if res is None:
            lines.append(f"| `{target}` | `{command}` | `{name}` | - | - | not measured yet |")
            unrecorded += [name] if target == "make bench" else []
            continue
        minutes = _minutes(res)
        if target == "make bench":
            total += minutes or 0.0
            if minutes is None or (res.get("kind") == "tasc-ft" and "build_seconds" not in res):
                unrecorded.append(name)
        started = utc(res["started_unix"]) if res.get("started_unix") else "-"
        lines.append(f"| `{target}` | `{command}` | `{name}` | {started} | "
                     f"{'-' if minutes is None else f'{minutes:.1f}'} | {_notes(res)} |")
    names = [f"`{n}`" for n in unrecorded]
    named = " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)
    verb = "do" if len(names) > 1 else "does"
    missing = f", without the time {named} {verb} not record (see the notes)" if unrecorded else ""
    lines += ["", f"`make bench`'s stages add up to {total:.1f} min ({total / 60:.1f} h){missing}.", ""]
    return lines
