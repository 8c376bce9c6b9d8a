"""Where tasc-vllm keeps what it materialises: models, task data, tokenized corpora."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tasc_vllm.errors import TascError

CACHE_ENV = "TASC_VLLM_CACHE"


def cache_root() -> Path:
    """The cache folder: ``$TASC_VLLM_CACHE`` or ``~/.cache/tasc-vllm``."""
    raw = os.environ.get(CACHE_ENV)
    return Path(raw).expanduser() if raw else Path.home() / ".cache" / "tasc-vllm"


def cache_dir(*parts: str) -> Path:
    """A sub-folder of the cache, created if needed; a clear error if it cannot be written."""
    path = cache_root().joinpath(*parts)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TascError(
            f"cache folder {path} cannot be created ({e.strerror}); "
            f"set {CACHE_ENV} to a writable folder"
        ) from e
    if not os.access(path, os.W_OK | os.X_OK):
        raise TascError(
            f"cache folder {path} is not writable; set {CACHE_ENV} to a writable folder"
        )
    return path


@contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator:
    """A binary file that appears at ``path`` only once the block completes: it is written
    to a temporary file in the same folder and renamed; on any error nothing is left."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_file`)."""
    with atomic_file(path) as f:
        f.write(data)
