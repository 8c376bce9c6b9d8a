"""``bfcl``: answer a question with one function call, written as one line of JSON.

Data: the Berkeley Function Calling Leaderboard files shipped by the PyPI package
``bfcl-eval`` (``bfcl_eval/data``): the categories ``simple_python`` (400 questions, one
function each) and ``multiple`` (200 questions, 2-4 candidate functions, one to call).  Both
are JSON-lines files: ``{"id", "question": [[{"role": "user", "content"}]], "function": [...]}``
with the possible answers in ``possible_answer/<same file>``:
``{"id", "ground_truth": [{"<function>": {"<arg>": [possible values...]}}]}``, where ``""``
among the possible values marks an argument that may be left out.

* input: the function schemas as JSON and the question;
* reference output: ``{"name": "<function>", "arguments": {...}}``, each argument with its first
  possible value; arguments that may be left out (first possible value ``""``) are left out
  unless the schema requires them (then their first other value is used);
* score: 1.0 if the call matches the possible answers the way BFCL's AST checker does it
  (right function, required arguments present, no unknown arguments, every value among the
  possible values with strings compared case-, space- and ``,./-_*^``-insensitively, ints
  accepted for floats, optional arguments may be left out), else 0.0;
* split: by a stable hash of the BFCL id.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from tasc_vllm.errors import TascError
from tasc_vllm.eval.packaged import package_file
from tasc_vllm.eval.tasks.base import Example, Task, dumps_line, parse_json_object

CATEGORIES = ("simple_python", "multiple")
EXPECTED_COUNTS = {"simple_python": 400, "multiple": 200}

SYSTEM_PROMPT = (
    "You call functions. Given function definitions and a question, choose the function "
    "that answers it and reply with one line of JSON: "
    '{"name": "<function name>", "arguments": {"<argument>": <value>, ...}}. '
    "Use the argument names and types of the definition; leave out optional arguments "
    "the question does not need."
)

_TYPES = {
    "string": (str,),
    "integer": (int,),
    "float": (float, int),
    "number": (float, int),
    "boolean": (bool,),
    "array": (list,),
    "tuple": (list,),
    "dict": (dict,),
    "object": (dict,),
}


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except ValueError as e:
                raise TascError(f"{path}, line {n}: not valid JSON ({e})") from e
    return rows


def _first_value(possible: list):
    """The first possible value that is not the "may be left out" marker ``""``."""
    for v in possible:
        if not (isinstance(v, str) and v == ""):
            return _reference_value(v)
    return None


def _reference_value(v):
    # A dict among the possible values is itself a spec {key: [possible values]}.
    if isinstance(v, dict):
        out = {}
        for k, poss in v.items():
            if isinstance(poss, list):
                if poss and poss[0] == "":
                    continue
                out[k] = _first_value(poss)
            else:
                out[k] = poss
        return out
    if isinstance(v, list):
        return [_reference_value(x) for x in v]
    return v


def _standardize(s: str) -> str:
    # As BFCL's standardize_string: "April 1, 2024" == "april 1 2024".
    return re.sub(r"[ ,./\-_*^]", "", s).lower().replace("'", '"')


def _same_scalar(value, possible) -> bool:
    if isinstance(value, bool) or isinstance(possible, bool):
        return isinstance(value, bool) and isinstance(possible, bool) and value == possible
    if isinstance(value, str) and isinstance(possible, str):
        return _standardize(value) == _standardize(possible)
    if isinstance(value, (int, float)) and isinstance(possible, (int, float)):
        return value == possible
    return False


def _dict_matches(value: dict, spec: dict) -> bool:
    """``value`` against one possible dict ``{key: [possible values]}`` ("" marks optional keys)."""
    for k, v in value.items():
        if k not in spec:
            return False
        poss = spec[k] if isinstance(spec[k], list) else [spec[k]]
        if not any(_value_matches(v, p) for p in poss if not (isinstance(p, str) and p == "" and v != "")):
            return False
    return all(k in value or (isinstance(p, list) and "" in p) for k, p in spec.items())


def _value_matches(value, possible) -> bool:
    """One argument value against one possible value."""
    if isinstance(possible, dict):
        return isinstance(value, dict) and _dict_matches(value, possible)
    if isinstance(possible, list):
        return (
            isinstance(value, list)
            and len(value) == len(possible)
            and all(_value_matches(v, p) for v, p in zip(value, possible))
        )
    return _same_scalar(value, possible)


def _type_ok(value, schema_type: str | None, possible: list) -> bool:
    allowed = _TYPES.get(schema_type or "")
    if allowed is None:  # "any" or unknown: anything goes
        return True
    if isinstance(value, bool):
        return bool in allowed or any(isinstance(p, bool) for p in possible)
    if isinstance(value, allowed):
        return True
    # BFCL's "variable" case: the possible answers are strings although the schema says otherwise.
    return any(type(p) is type(value) and p != "" for p in possible)


def check_call(call: dict, function: dict, answer: dict) -> bool:
    """Whether ``call`` ({"name", "arguments"}) matches one BFCL ground truth ``{name: {arg: [...]}}``."""
    if not isinstance(call, dict):
        return False
    name, args = call.get("name"), call.get("arguments")
    if not isinstance(name, str) or not isinstance(args, dict):
        return False
    ((want_name, possible),) = answer.items()
    if name != want_name:
        return False
    params = function.get("parameters", {})
    props = params.get("properties", {})
    for req in params.get("required", []):
        if req not in args:
            return False
    for arg, value in args.items():
        if arg not in possible or arg not in props:
            return False
        poss = possible[arg]
        if not _type_ok(value, props[arg].get("type"), poss):
            return False
        if not any(_value_matches(value, p) for p in poss if not (isinstance(p, str) and p == "")):
            if not (value == "" and "" in poss):
                return False
    return all(arg in args or "" in poss for arg, poss in possible.items())


class BfclTask(Task):
    name = "bfcl"
    description = "one function call as one line of JSON (BFCL simple_python + multiple)"
    max_tokens = 160  # longest reference: 101 SmolLM2 tokens (mean 39)

    def _load_all(self) -> list[Example]:
        examples = []
        for cat in CATEGORIES:
            rel = f"data/BFCL_v4_{cat}.json"
            qpath = package_file("bfcl_eval", "bfcl-eval", rel)
            apath = package_file("bfcl_eval", "bfcl-eval", f"data/possible_answer/BFCL_v4_{cat}.json")
            questions, answers = _read_jsonl(qpath), _read_jsonl(apath)
            answer_by_id = {a.get("id"): a for a in answers}
            if len(questions) != EXPECTED_COUNTS[cat]:
                raise TascError(
                    f"{qpath} holds {len(questions)} questions, expected {EXPECTED_COUNTS[cat]}; "
                    f"the installed bfcl-eval has a different data version"
                )
            for q in questions:
                examples.append(self._example(q, answer_by_id.get(q.get("id")), qpath))
        return examples

    @staticmethod
    def _example(q: dict, a: dict | None, path: Path) -> Example:
        qid = q.get("id")
        try:
            (turn,) = q["question"]
            (msg,) = turn
            if msg["role"] != "user":
                raise ValueError("the question is not one user message")
            functions = q["function"]
            (truth,) = a["ground_truth"]
            ((fname, possible),) = truth.items()
            (function,) = [f for f in functions if f["name"] == fname]
        except (KeyError, TypeError, ValueError) as e:
            raise TascError(f"{path}: example {qid!r} has an unexpected format ({e!r})") from e
        required = set(function.get("parameters", {}).get("required", []))
        arguments = {}
        for arg, poss in possible.items():
            if poss and poss[0] == "" and arg not in required:
                continue
            arguments[arg] = _first_value(poss)
        user = f"Functions: {dumps_line(functions)}\nQuestion: {msg['content']}"
        return Example(
            id=qid,
            messages=[{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}],
            reference=dumps_line({"name": fname, "arguments": arguments}),
            meta={"function": function, "ground_truth": truth, "category": qid.rsplit("_", 1)[0]},
        )

    def score(self, example: Example, output_text: str) -> float:
        call = parse_json_object(output_text)
        if call is None:
            return 0.0
        return 1.0 if check_call(call, example.meta["function"], example.meta["ground_truth"]) else 0.0
