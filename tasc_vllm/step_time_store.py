"""The step-time model an engine measured, kept for the next engine of the same model here.

The proposer fits the engine's step time from the gaps between its calls
(:mod:`tasc_vllm.step_timing`).  A fresh engine drafts on the prior until it has timed enough
steps, which is a third of a short run at batch 16.  So the fit's weighted sums are kept in
``step-time/KEY.npz`` in the cache folder (or in the folder the setting ``step_time_dir``
names; ``"off"`` keeps nothing), and the next engine whose KEY matches goes on from them.

KEY hashes what sets a step's time: the model, its dtype, the parallel layout, eager or
compiled, the vLLM version, the processor and the threads.  The file is written atomically
at most every :data:`SAVE_EVERY` seconds while steps are timed; the data-parallel replicas of
one server share it, the last to write winning.  A file that is unreadable or of another
version is reported and ignored.  It holds NumPy arrays only, read with
``allow_pickle=False``.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import os
import platform
import time
import zipfile
from pathlib import Path

import numpy as np

from tasc_vllm.errors import TascError
from tasc_vllm.paths import atomic_file, cache_dir
from tasc_vllm.step_timing import MIN_SAMPLES

logger = logging.getLogger("tasc_vllm")

STORE_VERSION = 2  # 2: a fit per batch-size bucket
SAVE_EVERY = 30.0  # seconds between writes while an engine times its steps


def _processor() -> str:
    """The processor's model name (Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def engine_key(vllm_config) -> dict | None:
    """What sets this engine's step time, or None when the config names no model (an engine
    that vLLM did not build: a test, a replay)."""
    model_config = getattr(vllm_config, "model_config", None)
    model = getattr(model_config, "model", None)
    if not model:
        return None
    parallel = getattr(vllm_config, "parallel_config", None)
    try:
        import vllm

        version = getattr(vllm, "__version__", "")
    except ImportError:
        version = ""
    model_path = Path(str(model))
    return {
        "version": STORE_VERSION,
        "model": str(model_path.resolve()) if model_path.exists() else str(model),
        "revision": str(getattr(model_config, "revision", None)),
        "dtype": str(getattr(model_config, "dtype", "")),
        "enforce_eager": bool(getattr(model_config, "enforce_eager", False)),
        "tensor_parallel": int(getattr(parallel, "tensor_parallel_size", 1) or 1),
        "pipeline_parallel": int(getattr(parallel, "pipeline_parallel_size", 1) or 1),
        "vllm": version,
        "processor": _processor(),
        "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "threads": os.environ.get("OMP_NUM_THREADS", ""),
    }


class StepTimeStore:
    """The file of one engine key.  Lifecycle: :meth:`for_engine` at engine start,
    :meth:`attach` the engine's timer (it resumes from the file), :meth:`tick` after each
    timed step (a write every :data:`SAVE_EVERY` seconds), and a last write when the
    process exits."""

    def __init__(self, folder: str | os.PathLike, key: dict):
        self.key = key
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode("utf-8")).hexdigest()[:20]
        self.path = Path(folder) / f"{digest}.npz"
        self.timer = None
        self._saved = time.monotonic()
        self._error_logged = False

    @classmethod
    def for_engine(cls, setting: str, vllm_config) -> StepTimeStore | None:
        """The store the setting ``step_time_dir`` names for this engine ("": the cache's
        ``step-time`` folder), or None when it is ``"off"`` or the engine has no key."""
        if setting == "off":
            return None
        key = engine_key(vllm_config)
        if key is None:
            return None
        if not setting:
            return cls(cache_dir("step-time"), key)
        folder = Path(setting).expanduser()
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise TascError(f"invalid TASC setting: step_time_dir {setting!r} cannot be created ({e.strerror}); "
                            'name a writable folder, or "off"') from e
        return cls(folder, key)

    def load(self) -> dict[str, np.ndarray] | None:
        """The kept sums, or None when there are none or they are unreadable (reported)."""
        if not self.path.exists():
            return None
        try:
            with np.load(self.path, allow_pickle=False) as z:
                meta = json.loads(z["meta"].tobytes().decode("utf-8"))
                state = {k: np.array(z[k]) for k in ("xtx", "xty", "yty", "samples")}
        except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError, json.JSONDecodeError,
                UnicodeDecodeError) as e:
            logger.warning("TASC: the step-time model kept in %s is unreadable (%s); measuring from the prior",
                           self.path, e)
            return None
        if meta != self.key:
            logger.warning("TASC: the step-time model kept in %s belongs to another engine; measuring from the prior",
                           self.path)
            return None
        return state

    def attach(self, timer) -> bool:
        """Let ``timer`` (a :class:`~tasc_vllm.step_timing.StepTimer`) go on from the kept
        sums, and keep its own from now on; True when it resumed."""
        self.timer = timer
        atexit.register(self._save_at_exit)
        state = self.load()
        if state is None:
            return False
        if not timer.resume(state):
            logger.warning("TASC: the step-time model kept in %s is unusable; measuring from the prior", self.path)
            return False
        return True

    def _worth_saving(self) -> bool:
        t = self.timer
        return t is not None and t.fresh_samples > 0 and t.samples >= MIN_SAMPLES

    def tick(self) -> None:
        """After a timed step: write the timer's sums when :data:`SAVE_EVERY` seconds have
        passed since the last write."""
        now = time.monotonic()
        if now - self._saved >= SAVE_EVERY and self._worth_saving():
            self._saved = now
            self.save(self.timer.state())

    def _save_at_exit(self) -> None:
        if self._worth_saving():
            self.save(self.timer.state())

    def save(self, state: dict[str, np.ndarray]) -> None:
        """Write ``state`` atomically (a failure is logged once, never raised)."""
        meta = np.frombuffer(json.dumps(self.key).encode("utf-8"), dtype=np.uint8)
        try:
            with atomic_file(self.path) as f:
                np.savez(f, meta=meta, **state)
        except OSError as e:
            if not self._error_logged:
                self._error_logged = True
                logger.warning("TASC: cannot keep the step-time model in %s (%s)", self.path, e)
