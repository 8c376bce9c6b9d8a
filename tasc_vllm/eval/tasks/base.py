"""What every task provides: examples with chat messages and a reference output, a split, a score.

A task's examples are deterministic: the same list, in the same order, with the same
train/test split on every machine.  The split of an example is decided by a stable hash of
its *split key* (its id unless the task says otherwise), so it does not depend on the order
of the data, on Python's hash seed or on the platform.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

from tasc_vllm.errors import TascError
from tasc_vllm.paths import write_atomic  # noqa: F401  (re-exported for the task modules)

SPLITS = ("train", "test")

# Percentage of examples that go to the train split; the rest are the held-out test split.
TRAIN_PERCENT = 80
_SPLIT_SALT = "tasc-vllm-split-v1:"


@dataclass(frozen=True)
class Example:
    """One task example."""

    id: str
    messages: list[dict]  # chat messages (system/user, maybe few-shot turns) for an instruct model
    reference: str  # the reference output text the model should produce
    meta: dict  # whatever scoring needs

    @property
    def prompt(self) -> str:
        """The text of the last user message (the example's own input, without few-shot turns)."""
        for m in reversed(self.messages):
            if m.get("role") == "user":
                return m["content"]
        raise TascError(f"example {self.id} has no user message")


def split_of(key: str) -> str:
    """``"train"`` or ``"test"`` for a split key: a stable hash, about 80/20."""
    digest = hashlib.sha256((_SPLIT_SALT + key).encode("utf-8")).digest()
    return "train" if int.from_bytes(digest[:8], "big") % 100 < TRAIN_PERCENT else "test"


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise TascError(f"unknown split {split!r}; use one of: {', '.join(SPLITS)}")
    return split


class Task:
    """A narrow task: ``load(split)`` gives examples, ``score(example, output)`` rates an output.

    Subclasses set ``name``, ``description`` and ``max_tokens`` and implement
    ``_load_all()`` (every example, in a fixed order) and ``score()``.
    """

    name: str = ""
    description: str = ""
    max_tokens: int = 256  # generation budget for one output

    def __init__(self) -> None:
        self._all: list[Example] | None = None

    # --- data -------------------------------------------------------------------------
    def _load_all(self) -> list[Example]:
        raise NotImplementedError

    def split_key(self, example: Example) -> str:
        """What the split hash is computed from (the id unless a task needs otherwise)."""
        return example.id

    def all_examples(self) -> list[Example]:
        """Every example of the task, train and test, in the task's fixed order."""
        if self._all is None:
            examples = self._load_all()
            ids = [e.id for e in examples]
            if len(set(ids)) != len(ids):
                raise TascError(f"task {self.name}: duplicate example ids in the data")
            self._all = examples
        return list(self._all)

    def split_of(self, example: Example) -> str:
        return split_of(self.split_key(example))

    def load(self, split: str) -> list[Example]:
        """The examples of ``split`` ("train" or "test"), in the task's fixed order."""
        check_split(split)
        return [e for e in self.all_examples() if self.split_of(e) == split]

    # --- scoring ----------------------------------------------------------------------
    def score(self, example: Example, output_text: str) -> float:
        """How good ``output_text`` is for ``example``: a number in [0, 1]."""
        raise NotImplementedError

    def scores(self, examples, output_texts) -> list[float]:
        """:meth:`score` for each example and its output, in order."""
        return [self.score(e, t) for e, t in zip(examples, output_texts)]

    def __repr__(self) -> str:
        return f"<Task {self.name}>"


# --- helpers shared by the tasks ---------------------------------------------------------

_FENCE_RE = re.compile(r"^\s*```[A-Za-z0-9_+-]*[ \t]*\n?(.*?)\n?[ \t]*```\s*$", re.DOTALL)


def strip_code_fences(text: str) -> str:
    """The contents of a Markdown code block if ``text`` is one (or starts with one)."""
    m = _FENCE_RE.match(text)
    if m:
        return m.group(1)
    stripped = text.lstrip()
    if stripped.startswith("```"):
        # An opening fence whose block is cut off or followed by prose.
        body = stripped.split("\n", 1)[1] if "\n" in stripped else ""
        end = body.find("```")
        return body if end < 0 else body[:end]
    return text


def parse_json_object(text: str) -> dict | None:
    """The JSON object a model wrote, or None.

    Tolerates surrounding whitespace, a Markdown code fence, and text after the object
    (e.g. a model that keeps talking); anything else that is not a JSON object gives None.
    """
    text = strip_code_fences(text).strip()
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        start = text.find("{")
        if start < 0:
            return None
        try:
            obj, _ = json.JSONDecoder().raw_decode(text, start)
        except (ValueError, RecursionError):
            return None
    return obj if isinstance(obj, dict) else None


def dumps_line(obj) -> str:
    """Compact one-line JSON as the reference outputs use it."""
    return json.dumps(obj, ensure_ascii=False)




