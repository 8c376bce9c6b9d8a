"""What a server learned online, saved on request and picked up by the next start.

The setting ``learned_path`` (``additional_config {"tasc": {"learned_path": "FILE.npz"}}``)
names the file.  At engine start, a file there whose identity (index content, tokenizer,
table settings) matches this engine's replaces the fresh copy of the index's table, so
learning goes on where it stopped; a file that belongs to another index or tokenizer, or is
unreadable, is reported and ignored.  Touching ``FILE.npz.save`` asks every engine that uses
the file to write it.  Every engine learns on its own: the data-parallel replicas of one
server each keep a file of their own (:func:`replica_path`), and separate servers given the
same file each write a complete state to it, atomically, the last to write winning.  The
file holds NumPy arrays only and is read with ``allow_pickle=False``.
"""

from __future__ import annotations

import json
import logging
import os
import time
import zipfile
from pathlib import Path

import numpy as np

from tasc_vllm.kernels.ngram_table import NgramTable
from tasc_vllm.paths import atomic_file

logger = logging.getLogger("tasc_vllm")

STATE_VERSION = 1


def replica_path(path: str, rank: int) -> str:
    """The learned-state file of data-parallel replica ``rank``: ``path`` itself for the first,
    ``NAME.dpRANK.npz`` beside it for the others, so no replica's learning overwrites
    another's and each resumes its own after a restart."""
    if not path or rank <= 0:
        return path
    p = Path(path)
    return str(p.with_name(f"{p.stem}.dp{rank}{p.suffix or '.npz'}"))


def data_parallel_rank(vllm_config) -> int:
    """This engine's data-parallel rank.  vLLM runs the replicas of a dense model as
    independent engines of data-parallel size 1 and rank 0, and keeps the original rank in
    ``parallel_config.data_parallel_index``."""
    parallel = getattr(vllm_config, "parallel_config", None)
    rank = getattr(parallel, "data_parallel_index", None)
    if rank is None:
        rank = getattr(parallel, "data_parallel_rank", 0)
    return int(rank or 0)


def save_learned(path: str | os.PathLike, table: NgramTable, used: np.ndarray, identity: dict,
                 scorer: np.ndarray | None = None, feature_set: str = "") -> None:
    """Write the table, its fill counter and (the learned policy) the scorer's weights as they
    stand, atomically."""
    meta = json.dumps({"version": STATE_VERSION, "identity": identity}).encode("utf-8")
    extra = {} if scorer is None else {
        "scorer": scorer, "feature_set": np.frombuffer(feature_set.encode("utf-8"), dtype=np.uint8)}
    with atomic_file(path) as f:
        np.savez(f, meta=np.frombuffer(meta, dtype=np.uint8), used=used, **table.arrays(), **extra)


def load_learned_scorer(path: str | os.PathLike, feature_set: str, size: int) -> np.ndarray | None:
    """The scorer weights saved with the learned state at ``path``, or None when it holds
    none, or holds weights of another feature set or ensemble (``feature_set`` names both;
    reported: they are not used)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if "scorer" not in z.files:
                return None
            saved_set = z["feature_set"].tobytes().decode("utf-8")
            weights = np.array(z["scorer"], dtype=np.float64)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError, UnicodeDecodeError) as e:
        logger.warning("TASC: the scorer saved in %s is unreadable (%s); using the trained one", path, e)
        return None
    if saved_set != feature_set or weights.shape != (size,) or not np.all(np.isfinite(weights)):
        logger.warning("TASC: the scorer saved in %s belongs to another feature set or tree ensemble; "
                       "using the trained one", path)
        return None
    return weights


def load_learned(path: str | os.PathLike, identity: dict) -> tuple[NgramTable, np.ndarray] | None:
    """The saved table and fill counter at ``path``, or None (reported) when there is none,
    it is unreadable, or it was learned over another index, tokenizer or table settings."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(z["meta"].tobytes().decode("utf-8"))
            if meta != {"version": STATE_VERSION, "identity": identity}:
                logger.warning("TASC: %s was learned with another index, tokenizer or settings; starting "
                               "from the index alone", path)
                return None
            table = NgramTable.from_arrays({k: z[k] for k in ("slots", "keys", "nexts", "counts", "totals", "max_order")})
            used = np.array(z["used"], dtype=np.int64).reshape(1)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError, json.JSONDecodeError, UnicodeDecodeError) as e:
        logger.warning("TASC: %s is unreadable (%s); starting from the index alone", path, e)
        return None
    if not 0 <= int(used[0]) <= table.keys.shape[0] or table.nexts.shape[0] != table.keys.shape[0]:
        logger.warning("TASC: %s is inconsistent; starting from the index alone", path)
        return None
    return table, used


class SaveRequests:
    """Notices a touch of ``PATH.save``: ``due()`` is true once per touch (checked at most
    once a second, so ``propose`` pays one ``stat`` call a second at most)."""

    def __init__(self, path: str | os.PathLike):
        self.trigger = Path(f"{path}.save")
        self._seen = self._mtime()
        self._checked = time.monotonic()

    def _mtime(self) -> float:
        try:
            return self.trigger.stat().st_mtime
        except OSError:
            return 0.0

    def due(self) -> bool:
        now = time.monotonic()
        if now - self._checked < 1.0:
            return False
        self._checked = now
        m = self._mtime()
        if m and m != self._seen:
            self._seen = m
            return True
        return False
