"""Models fine-tuned for a task, built once with TASC-ft's tool (``python -m tools.enrich``) and
cached under ``~/.cache/tasc-vllm/ft/TASK/``.

An entry's folder name carries a hash of everything that makes it: the base model, the
tool's flags, the train split's content (and the check split's, when given) and the tool's
format version.  An entry is used only when it is complete (the tool writes a checkpoint
under its final name only once it is whole) and its own record of how it was built
(``tasc_ft.json``) agrees with what is asked; anything else is rebuilt.  A build interrupted
halfway resumes from its last finished round when asked for again.

The tool runs with TCMalloc (``libtcmalloc_minimal.so.4``, Debian's ``libtcmalloc-minimal4``)
preloaded when the system has it, as vLLM's CPU guide advises for its engine: PyTorch on the
CPU frees and allocates the same large buffers every step, glibc hands blocks over 32 MB back
to the kernel each time, and touching fresh pages is slow.  On Gemma-3 270M's BFCL steps it
cut a step from 9.7 s to 6.1 s with the same losses (``benchmarks/EXPERIMENTS.md``).
"""

from __future__ import annotations

import ctypes.util
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tasc_vllm.errors import TascError
from tasc_vllm.paths import cache_dir

FILES = ("config.json", "model.safetensors", "tokenizer.json", "tasc_ft.json")


def task_splits(task_name: str) -> tuple[Path, Path]:
    """The task's train and test splits as JSONL in its fine-tune cache folder (written anew
    each time, atomically; a task without a train split is an error that names it)."""
    from tasc_vllm.eval.tasks import export_jsonl, get_task

    task = get_task(task_name)
    folder = cache_dir("ft", task.name)
    train, test = folder / "train.jsonl", folder / "test.jsonl"
    if export_jsonl(task, "train", train) == 0:
        raise TascError(f"task {task.name} has an empty train split: there is nothing to fine-tune on")
    export_jsonl(task, "test", test)
    return train, test


def _matches(out: Path, train_sha256: str, base_model: str, enrich: bool) -> str | None:
    """Why the cached entry ``out`` cannot be used, or None when it can."""
    missing = [f for f in FILES if not (out / f).is_file()]
    if missing:
        return f"incomplete (no {', '.join(missing)})"
    try:
        settings = json.loads((out / "tasc_ft.json").read_text())["settings"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"its tasc_ft.json is unreadable ({e})"
    if settings.get("data_sha256") != train_sha256:
        return "built from other train data"
    if settings.get("model") != base_model or settings.get("enrich") != enrich:
        return "built from another model or with other settings"
    return None


TCMALLOC = "tcmalloc_minimal"


def build_env(environ: dict[str, str], tcmalloc: str | None) -> dict[str, str]:
    """The tool's environment: ``environ`` with ``tcmalloc`` (a library name or path; None when
    the system has none) first in ``LD_PRELOAD``, unless it is there already."""
    env = dict(environ)
    preload = env.get("LD_PRELOAD", "").split()
    if tcmalloc and not any(TCMALLOC in p for p in preload):
        env["LD_PRELOAD"] = " ".join([tcmalloc, *preload])
    return env


def _build(cmd: list[str]) -> int:
    """Run the tool in a process of its own (its progress bars go to the terminal)."""
    return subprocess.run(cmd, env=build_env(os.environ, ctypes.util.find_library(TCMALLOC))).returncode


def finetune(task_name: str, flags: list[str], name: str, model: str | None = None, quiet: bool = False) -> Path:
    """The checkpoint ``tools.enrich --data TRAIN [--check-data TEST] FLAGS`` makes for the
    task (``--check-test`` in ``flags`` stands for ``--check-data`` of the test split), built
    on first use with the tool's progress bars, then cached.  ``name`` starts the folder's name
    (e.g. "fine-tuned", "tasc-ft")."""
    from tasc_vllm.eval.models import resolve_model
    from tools.enrich import FORMAT_VERSION
    from tools.ft_data import file_sha256

    train, test = task_splits(task_name)
    check = "--check-test" in flags
    base_model = resolve_model(model, progress=not quiet)
    train_sha256 = file_sha256(train)
    key = {"model": base_model, "flags": list(flags), "train": train_sha256,
           "test": file_sha256(test) if check else None, "version": FORMAT_VERSION}
    flags = [f for f in flags if f != "--check-test"] + (["--check-data", str(test)] if check else [])
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    out = train.parent / f"{name}-{digest}"
    enrich = "--no-enrich" not in flags
    if out.exists():
        why = _matches(out, train_sha256, base_model, enrich)
        if why is None:
            return out
        print(f"the cached fine-tune {out} is {why}: building it again", file=sys.stderr)
        shutil.rmtree(out)
    print(f"building {out}: python -m tools.enrich {' '.join(flags)}", file=sys.stderr, flush=True)
    cmd = [sys.executable, "-m", "tools.enrich", "--model", base_model, "--data", str(train), "--out", str(out),
           *flags, *(["--quiet"] if quiet else [])]
    if _build(cmd) != 0:
        raise TascError(f"building the fine-tune {out} failed (python -m tools.enrich {' '.join(flags)}); "
                        "run the same command again to resume it")
    why = _matches(out, train_sha256, base_model, enrich)
    if why is not None:
        raise TascError(f"the fine-tune just built at {out} is {why}")
    return out
