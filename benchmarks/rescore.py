"""Score the outputs stored in benchmark results again, with the current task scorers.

    python -m benchmarks.rescore benchmarks/results/NAME.json [...]

Every run keeps its output texts, so a corrected scorer can be applied without running any
engine again.  Rewrites ``task_score`` and the per-prompt ``scores`` for each run, records
when, and regenerates ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from benchmarks import report


def rescore(path: Path) -> list[tuple[str, str, int, float, float]]:
    from tasc_vllm.paths import write_atomic
    from tasc_vllm.eval.tasks import get_task

    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SystemExit(f"{path}: not a readable results file ({e})") from None
    tasks = data.get("tasks") if isinstance(data, dict) else None
    is_speed_run = (isinstance(data, dict) and not data.get("kind") and isinstance(tasks, list) and tasks
                    and all(isinstance(t, dict) and {"task", "num_prompts", "runs"} <= t.keys() for t in tasks))
    if not is_speed_run:
        raise SystemExit(f"{path}: not an offline speed run of benchmarks.run (no per-task outputs to score)")
    changes = []
    for t in tasks:
        task = get_task(t["task"])
        test = task.load("test")[: t["num_prompts"]]
        for r in t["runs"]:
            if len(r["texts"]) != len(test):
                raise SystemExit(f"{path}: {t['task']} {r['method']} has {len(r['texts'])} outputs for {len(test)} prompts")
            r["scores"] = task.scores(test, r["texts"])
            new = sum(r["scores"]) / len(test)
            changes.append((t["task"], r["method"], r["batch_size"], r.get("task_score"), new))
            r["task_score"] = new
    data["rescored_unix"] = int(time.time())
    write_atomic(path, json.dumps(data, indent=1).encode())
    return changes


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", nargs="+", type=Path)
    args = p.parse_args(argv)
    for path in args.results:
        if not path.is_file():
            p.error(f"{path}: no such file")
        for task, method, batch, old, new in rescore(path):
            if old != new:
                print(f"{path.name}: {task} {method} batch {batch}: {old} -> {new:.3f}")
    print(f"wrote {report.write_report()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
