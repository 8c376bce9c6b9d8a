"""Training data for TASC-ft: JSONL with ``prompt`` and ``output`` (or chat ``messages``).

Each line is one example.  With ``prompt`` and ``output`` the chat is the optional system
prompt plus one user turn; with ``messages`` (and no ``prompt``) the chat is those messages,
and the answer is ``output`` or, if that is absent, a final assistant message.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from tasc_vllm.index.corpus import parse_json_line, read_lines
from tasc_vllm.errors import TascError


@dataclass(frozen=True)
class FtExample:
    messages: list[dict]  # the chat up to (not including) the answer
    output: str  # the answer the model should write


def _check_messages(path: Path, lineno: int, messages) -> list[dict]:
    if not isinstance(messages, list) or not messages:
        raise TascError(f"{path}:{lineno}: field 'messages' must be a non-empty list of chat messages")
    for i, m in enumerate(messages):
        if not (isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)):
            raise TascError(
                f"{path}:{lineno}: message {i} must be an object with string 'role' and 'content'"
            )
    return messages


def _example(path: Path, lineno: int, obj: dict, system: str | None) -> FtExample:
    if "prompt" in obj:
        prompt = obj["prompt"]
        if not isinstance(prompt, str):
            raise TascError(f"{path}:{lineno}: field 'prompt' holds {type(prompt).__name__}, expected a string")
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": prompt}
        ]
    elif "messages" in obj:
        messages = list(_check_messages(path, lineno, obj["messages"]))
    else:
        keys = ", ".join(sorted(obj)) or "none"
        raise TascError(
            f"{path}:{lineno}: needs a 'prompt' or a 'messages' field (this line has: {keys})"
        )
    if "output" in obj:
        output = obj["output"]
        if not isinstance(output, str):
            raise TascError(f"{path}:{lineno}: field 'output' holds {type(output).__name__}, expected a string")
    elif "prompt" not in obj and messages[-1]["role"] == "assistant":
        output = messages.pop()["content"]
    else:
        keys = ", ".join(sorted(obj)) or "none"
        raise TascError(
            f"{path}:{lineno}: needs an 'output' field (or 'messages' ending in an assistant "
            f"message); this line has: {keys}"
        )
    if not output.strip():
        raise TascError(f"{path}:{lineno}: the output is empty")
    return FtExample(messages=messages, output=output)


def read_examples(path: str | Path, system: str | None = None) -> list[FtExample]:
    """The examples of a training JSONL file; TascError naming file and line for bad input."""
    path = Path(path)
    examples = [
        _example(path, lineno, parse_json_line(path, lineno, line), system)
        for lineno, line in read_lines(path, "training data")
    ]
    if not examples:
        raise TascError(f"training data {path} is empty: it holds no examples")
    return examples


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
