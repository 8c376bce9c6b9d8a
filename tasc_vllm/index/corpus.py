"""Reading a task's output corpus from JSONL or plain text, with errors that name file and line."""

from __future__ import annotations

import json
from pathlib import Path

from tasc_vllm.errors import TascError


def read_lines(path: str | Path, what: str = "corpus") -> list[tuple[int, str]]:
    """The non-blank lines of a UTF-8 text file as ``(line number, text)``; a clear error
    naming ``what``, the file and the line for a missing file, a folder or bad UTF-8."""
    path = Path(path)
    if not path.exists():
        raise TascError(f"{what} file {path} does not exist")
    if path.is_dir():
        raise TascError(f"{what} path {path} is a folder, not a file")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise TascError(f"{what} file {path} cannot be read: {e.strerror}") from e
    lines: list[tuple[int, str]] = []
    for lineno, line_bytes in enumerate(raw.split(b"\n"), start=1):
        try:
            line = line_bytes.decode("utf-8")
        except UnicodeDecodeError as e:
            raise TascError(
                f"{path}:{lineno}: not valid UTF-8 (byte {e.start}); re-encode the {what} as UTF-8"
            ) from e
        line = line.rstrip("\r")
        if line.strip():
            lines.append((lineno, line))
    return lines


def parse_json_line(path: str | Path, lineno: int, line: str) -> dict:
    """One JSONL line as a JSON object; a clear error naming file and line otherwise."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise TascError(f"{path}:{lineno}: malformed JSON ({e.msg} at column {e.colno})") from e
    if not isinstance(obj, dict):
        raise TascError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
    return obj


def read_corpus(path: str | Path, field: str = "output") -> list[str]:
    """Return the output texts of a corpus file.

    ``.jsonl``/``.json`` files hold one JSON object per line with the text in ``field``;
    any other file is plain text with one output per line. Blank lines are skipped.
    """
    return read_records(path, field)[0]


def prompt_text(value) -> str | None:
    """A record's prompt as text: a string as it is, chat messages (``[{"role", "content"}]``)
    as their contents one per line; None for anything else."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(m, dict) and isinstance(m.get("content"), str) for m in value):
        return "\n".join(m["content"] for m in value)
    return None


def read_records(path: str | Path, field: str = "output",
                 prompt_fields: tuple[str, ...] = ()) -> tuple[list[str], list[str] | None]:
    """The output texts of a corpus file and, when every record of a JSONL file holds one of
    ``prompt_fields`` (the first found is used: a string, or chat messages), their prompts;
    otherwise None for the prompts.  Some records with a prompt and others without is an
    error that names the lines."""
    path = Path(path)
    lines = read_lines(path, "corpus")
    is_jsonl = path.suffix.lower() in (".jsonl", ".json", ".ndjson")
    texts: list[str] = []
    prompts: list[str | None] = []
    missing_field_lines: list[int] = []
    first_missing_keys = ""
    for lineno, line in lines:
        if not is_jsonl:
            texts.append(line)
            continue
        obj = parse_json_line(path, lineno, line)
        if field not in obj:
            if not missing_field_lines:
                first_missing_keys = ", ".join(sorted(obj)) or "none"
            missing_field_lines.append(lineno)
            continue
        value = obj[field]
        if not isinstance(value, str):
            raise TascError(
                f"{path}:{lineno}: field {field!r} holds {type(value).__name__}, expected a string"
            )
        texts.append(value)
        found = next((f for f in prompt_fields if f in obj), None)
        prompt = prompt_text(obj[found]) if found else None
        if found and prompt is None:
            raise TascError(f"{path}:{lineno}: field {found!r} holds neither a string nor chat messages")
        prompts.append(prompt)
    if missing_field_lines:
        where = ", ".join(map(str, missing_field_lines[:5]))
        more = "" if len(missing_field_lines) <= 5 else f" and {len(missing_field_lines) - 5} more"
        raise TascError(
            f"{path}: field {field!r} is missing on line(s) {where}{more} "
            f"(the first such line has fields: {first_missing_keys}); "
            f"pass --field NAME to choose another field"
        )
    if not any(t.strip() for t in texts):
        raise TascError(f"corpus {path} is empty: it holds no output texts")
    given = [p is not None for p in prompts]
    if any(given) and not all(given):
        lines_without = [lineno for (lineno, _), g in zip(lines, given) if not g][:5]
        raise TascError(f"{path}: some records have a prompt ({' or '.join(prompt_fields)}) and others do not "
                        f"(line(s) {', '.join(map(str, lines_without))}); give every record one, or none")
    return texts, (prompts if given and all(given) else None)
