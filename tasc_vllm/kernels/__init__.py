"""The compiled hot path (Numba): the n-gram table and its lookups, drafting, calibration and
learning while serving. Parameters travel as the named tuples of :mod:`tasc_vllm.kernels.params`.

Numba's on-disk cache keys each compiled function by its own source file alone, yet the
machine code it stores has the functions it calls, and the constants it reads, compiled in.
After a change to one kernel module, a function in another would load stale code (say, a
feature count that no longer matches the scorer's weights). So the caches in this folder are
dropped whenever any kernel source changes: a digest of them is kept beside the caches.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def drop_stale_caches(here: Path) -> bool:
    """Remove the Numba caches beside the sources in ``here`` unless they were compiled from
    these very sources; True if it removed them."""
    if os.environ.get("NUMBA_CACHE_DIR"):  # caches kept elsewhere, under the user's control
        return False
    digest = hashlib.sha256()
    for src in sorted(here.glob("*.py")):
        digest.update(src.name.encode() + b"\0" + src.read_bytes())
    cache = here / "__pycache__"
    stamp = cache / "tasc-kernels.sha256"
    try:
        if stamp.read_text() == digest.hexdigest():
            return False
    except OSError:
        pass
    try:
        cache.mkdir(exist_ok=True)
        for f in cache.glob("*.nb[ic]"):
            f.unlink(missing_ok=True)
        stamp.write_text(digest.hexdigest())
    except OSError:  # a read-only install: Numba then compiles in memory anyway
        return False
    return True


drop_stale_caches(Path(__file__).resolve().parent)
