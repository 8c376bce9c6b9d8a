"""The ``.tasc`` index file: a task's output corpus stored as text, independent of any vocabulary.

Layout: an uncompressed NumPy ``.npz`` archive (a zip with CRC checks, loaded with
``allow_pickle=False``, so loading never executes code) holding

- ``header``: UTF-8 JSON bytes (format name, version, source, field, counts, content hash);
- ``text_bytes``: every text's UTF-8 bytes, concatenated;
- ``text_offsets``: int64 offsets, ``len(texts) + 1`` of them;
- optionally ``prompt_bytes`` and ``prompt_offsets``, the same for each text's prompt (the
  request it answered): the drafting policy trains on them (:mod:`tasc_vllm.index.policy`).

The tokenized form and the n-gram tables depend on the served model's tokenizer, so they
are derived at engine start and cached by :mod:`tasc_vllm.index.ngram_cache`.
"""

from __future__ import annotations

import hashlib
import json
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tasc_vllm.errors import TascError
from tasc_vllm.paths import atomic_file

FORMAT = "tasc-index"
VERSION = 1


@dataclass(frozen=True)
class CorpusIndex:
    path: Path
    header: dict
    text_bytes: np.ndarray
    text_offsets: np.ndarray
    prompt_bytes: np.ndarray | None = None
    prompt_offsets: np.ndarray | None = None

    @property
    def content_hash(self) -> str:
        return self.header["sha256"]

    @property
    def has_prompts(self) -> bool:
        return self.prompt_offsets is not None

    @property
    def prompts_hash(self) -> str:
        """The prompts' content hash ("" when the index holds none)."""
        return self.header.get("prompts_sha256", "")

    def prompts(self) -> list[str] | None:
        """Each text's prompt, or None when the index holds no prompts."""
        if self.prompt_offsets is None:
            return None
        data = self.prompt_bytes.tobytes()
        offs = self.prompt_offsets
        return [data[offs[i] : offs[i + 1]].decode("utf-8") for i in range(len(self))]

    def __len__(self) -> int:
        return len(self.text_offsets) - 1

    def texts(self) -> list[str]:
        data = self.text_bytes.tobytes()
        offs = self.text_offsets
        return [data[offs[i] : offs[i + 1]].decode("utf-8") for i in range(len(self))]


def _content_hash(text_bytes: np.ndarray, offsets: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(offsets.astype("<i8").tobytes())
    h.update(text_bytes.tobytes())
    return h.hexdigest()


def _pack(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    encoded = [t.encode("utf-8") for t in texts]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(b) for b in encoded], out=offsets[1:])
    return np.frombuffer(b"".join(encoded), dtype=np.uint8), offsets


def write_index(texts: list[str], out: str | Path, *, source: str = "", field: str = "",
                prompts: list[str] | None = None) -> Path:
    """Write ``texts`` (and, when given, the prompt each one answered) as a ``.tasc`` index,
    atomically (a failed write leaves no file)."""
    if not texts:
        raise TascError("cannot build an index from an empty corpus")
    if prompts is not None and len(prompts) != len(texts):
        raise TascError(f"{len(prompts)} prompts for {len(texts)} texts: give one prompt per text or none")
    out = Path(out)
    if out.is_dir():
        raise TascError(f"index output {out} is a folder; name a file such as TASK.tasc")
    text_bytes, offsets = _pack(texts)
    extra = {}
    header = {
        "format": FORMAT,
        "version": VERSION,
        "source": str(source),
        "field": field,
        "num_texts": len(texts),
        "num_bytes": int(offsets[-1]),
        "sha256": _content_hash(text_bytes, offsets),
        "created_unix": int(time.time()),
    }
    if prompts is not None:
        prompt_bytes, prompt_offsets = _pack(prompts)
        extra = {"prompt_bytes": prompt_bytes, "prompt_offsets": prompt_offsets}
        header["prompts_sha256"] = _content_hash(prompt_bytes, prompt_offsets)
    header_arr = np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(out) as f:
            np.savez(f, header=header_arr, text_bytes=text_bytes, text_offsets=offsets, **extra)
    except OSError as e:
        raise TascError(f"cannot write index {out}: {e.strerror or e}") from e
    return out


def read_index(path: str | Path) -> CorpusIndex:
    """Load and validate a ``.tasc`` index; every defect raises a TascError naming the file."""
    path = Path(path)
    if not path.exists():
        raise TascError(f"TASC index {path} does not exist")
    if path.is_dir():
        raise TascError(f"TASC index {path} is a folder; point at the .tasc file inside it")
    if path.stat().st_size == 0:
        raise TascError(f"TASC index {path} is empty (0 bytes); rebuild it with tasc-vllm build-index")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = {"header", "text_bytes", "text_offsets"} - set(z.files)
            if missing:
                raise TascError(f"TASC index {path} lacks {sorted(missing)}: not a TASC index")
            header_arr, text_bytes, offsets = z["header"], z["text_bytes"], z["text_offsets"]
            prompt_bytes = z["prompt_bytes"] if "prompt_bytes" in z.files else None
            prompt_offsets = z["prompt_offsets"] if "prompt_offsets" in z.files else None
    except TascError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as e:
        raise TascError(
            f"TASC index {path} is unreadable (truncated or corrupt: {e}); rebuild it with "
            "tasc-vllm build-index"
        ) from e
    try:
        header = json.loads(header_arr.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise TascError(f"TASC index {path} has a corrupt header") from e
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise TascError(f"{path} is not a TASC index (format {header.get('format') if isinstance(header, dict) else '?'!r})")
    if header.get("version") != VERSION:
        raise TascError(
            f"TASC index {path} has format version {header.get('version')}, this tasc-vllm reads "
            f"version {VERSION}; rebuild it with tasc-vllm build-index"
        )
    if (
        text_bytes.dtype != np.uint8
        or offsets.dtype != np.int64
        or offsets.ndim != 1
        or len(offsets) != header.get("num_texts", -1) + 1
        or int(offsets[-1]) != len(text_bytes)
        or (len(offsets) > 1 and np.any(np.diff(offsets) < 0))
    ):
        raise TascError(f"TASC index {path} is inconsistent (offsets do not match its texts); rebuild it")
    if _content_hash(text_bytes, offsets) != header.get("sha256"):
        raise TascError(f"TASC index {path} fails its checksum (corrupt); rebuild it")
    if (prompt_bytes is None) != (prompt_offsets is None) or (prompt_offsets is not None and (
            len(prompt_offsets) != len(offsets)
            or _content_hash(prompt_bytes, prompt_offsets) != header.get("prompts_sha256"))):
        raise TascError(f"TASC index {path} has corrupt prompts (they fail their checksum); rebuild it")
    return CorpusIndex(path=path, header=header, text_bytes=text_bytes, text_offsets=offsets,
                       prompt_bytes=prompt_bytes, prompt_offsets=prompt_offsets)
