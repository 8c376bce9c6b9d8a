"""Narrow tasks for small instruct models: examples, a deterministic train/test split, a score.

>>> task = get_task("usaddress")
>>> train = task.load("train")          # list[Example]: id, messages, reference, meta
>>> task.score(train[0], train[0].reference)
1.0

Tasks: ``usaddress`` (default; address parsing to one-line JSON), ``bfcl`` (one function
call as one-line JSON), ``humaneval`` (Python function bodies, scored by running the tests).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tasc_vllm.errors import TascError
from tasc_vllm.eval.tasks.base import SPLITS, Example, Task, check_split, split_of, write_atomic
from tasc_vllm.eval.tasks.bfcl import BfclTask
from tasc_vllm.eval.tasks.humaneval import HumanEvalTask
from tasc_vllm.eval.tasks.usaddress import UsAddressTask

DEFAULT_TASK = "usaddress"

TASKS: dict[str, Task] = {t.name: t for t in (UsAddressTask(), BfclTask(), HumanEvalTask())}


def get_task(name: str) -> Task:
    """The task called ``name``; TascError listing the known names if there is none."""
    try:
        return TASKS[name]
    except (KeyError, TypeError):
        raise TascError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}") from None


def export_jsonl(task: Task | str, split: str, path: str | os.PathLike) -> int:
    """Write ``split`` of ``task`` as JSONL (``id``, ``prompt``, ``messages``, ``output``); returns the count.

    ``prompt`` is the text of the example's own (last) user message; ``messages`` are the
    full chat messages including the system message and any few-shot turns; ``output`` is
    the reference output.  The file is written atomically.
    """
    if isinstance(task, str):
        task = get_task(task)
    check_split(split)
    examples = task.load(split)
    lines = [
        json.dumps(
            {"id": e.id, "prompt": e.prompt, "messages": e.messages, "output": e.reference},
            ensure_ascii=False,
        )
        for e in examples
    ]
    path = Path(path)
    try:
        if path.parent and not path.parent.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, "".join(line + "\n" for line in lines).encode("utf-8"))
    except OSError as e:
        raise TascError(f"cannot write {path} ({e.strerror or e})") from e
    return len(examples)


__all__ = [
    "DEFAULT_TASK", "SPLITS", "TASKS", "Example", "Task", "export_jsonl", "get_task", "split_of",
]
