"""Where the benchmarks keep their results."""

from __future__ import annotations

from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1]  # the benchmarks/ folder
RESULTS = BENCHMARKS / "results"  # result files (JSON), their plots, engine logs (ignored by git)
