"""Integration: a real vLLM engine on CPU (eager mode) with the real default model."""

import os
from pathlib import Path

import pytest

from tasc_vllm.errors import TascError
from tasc_vllm.index.index_file import write_index
from tasc_vllm.eval.runner import render_prompts, run_in_subprocess
from tasc_vllm.eval.tasks import get_task

pytestmark = pytest.mark.engine
PER_TASK = 6


@pytest.fixture(scope="module")
def workload(default_model_dir, tokenizer, tmp_path_factory):
    """Held-out prompts of two tasks and an index of both tasks' train outputs."""
    d = tmp_path_factory.mktemp("engine")
    examples, corpus = [], []
    for name in ("usaddress", "bfcl"):
        task = get_task(name)
        corpus += [e.reference for e in task.load("train")]
        examples += [(task, e) for e in task.load("test")[:PER_TASK]]
    index = write_index(corpus, d / "tasks.tasc")
    prompts = render_prompts(tokenizer, [e.messages for _, e in examples])
    base = {
        "model": str(default_model_dir),
        "prompt_token_ids": prompts,
        "max_tokens": [min(task.max_tokens, 160) for task, _ in examples],
        "batch_size": 4,
        "num_speculative_tokens": 8,
        "dtype": "float32",
    }
    return {"dir": d, "index": str(index), "spec": base, "examples": examples}


@pytest.fixture(scope="module")
def baseline(workload):
    return run_in_subprocess({**workload["spec"], "method": "none"}, log_path=workload["dir"] / "none.log")


def test_tasc_is_lossless_in_fp32_greedy(workload, baseline):
    # one engine measures batch 1 and then batch 4 (the benchmarks share engines this way)
    out = run_in_subprocess(
        {**workload["spec"], "method": "tasc", "batch_sizes": [1, 4],
         "tasc": {"index": workload["index"], "stats_path": str(workload["dir"] / "stats.json")}},
        log_path=workload["dir"] / "tasc.log",
    )
    assert [r["batch_size"] for r in out["runs"]] == [1, 4]
    # batch 4 serves batch 1's prompts, but finds no more of them cached than batch 1 did
    # (the prefix cache is reset before each batch size; the shared chat template still hits)
    first, second = (r["prefix_cache"] for r in out["runs"])
    assert first["queries"] > 0 and second["queries"] > 0, (first, second)
    assert second["hits"] <= first["hits"], (first, second)
    for run in out["runs"]:
        assert run["texts"] == baseline["texts"]
        assert run["token_ids"] == baseline["token_ids"]
        sm = run["spec_metrics"]
        assert sm["num_drafts"] > 0 and sm["num_accepted_tokens"] > 0
        assert sm["mean_acceptance_length"] > 1.5, sm
        assert all(len(t) > 0 for t in run["texts"])
        # the proposer's own timing, per batch size: at least one call per generated token step
        assert run["proposer"]["calls"] >= max(len(t) for t in run["token_ids"]) / (1 + workload["spec"]["num_speculative_tokens"])
        assert 0 < run["proposer_share_of_time"] < 1
        assert run["proposer"]["learned"] > 0  # online learning ran, and outputs stayed exact
        # the step-time model the proposer measured (the benchmarks price the replay's drafts by it)
        fixed, per_row, per_token, knee = run["proposer"]["step_cost"]
        assert fixed + per_row > 0 and per_token > 0 and knee >= 1
    log = (workload["dir"] / "tasc.log").read_text(errors="replace")
    assert "TASC index" in log and "loaded in" in log
    # the settings in effect, once per engine, on one line
    assert log.count("TASC-spec settings: index=") == 1, log.count("TASC-spec settings: index=")
    assert "(from additional_config: index, stats_path)" in log
    assert log.count("TASC drafting policy: learned scorer") == 1  # the default policy, trained at engine start


def test_tasc_is_lossless_on_a_fine_tuned_checkpoint_in_fp32(tmp_path):
    """The model a user serves is tuned for its task: a short --no-enrich fine-tune (cached),
    served without and with TASC-spec in fp32, gives the same greedy outputs, and so the same
    task score."""
    from transformers import AutoTokenizer

    from tasc_vllm.eval.demo import prepare_task_index
    from tasc_vllm.eval.finetunes import finetune

    task = get_task("usaddress")
    model = str(finetune(task.name, ["--no-enrich", "--rounds", "1", "--steps-per-round", "12", "--lr", "5e-4",
                                     "--bf16"], "engine-test", quiet=True))
    tokenizer = AutoTokenizer.from_pretrained(model)
    index = prepare_task_index(task, tokenizer, tmp_path, 8)
    test = task.load("test")[:8]
    spec = {"model": model, "dtype": "float32", "batch_size": 4, "num_speculative_tokens": 8,
            "prompt_token_ids": render_prompts(tokenizer, [[{"role": "user", "content": e.prompt}] for e in test]),
            "max_tokens": [task.max_tokens] * len(test)}
    plain = run_in_subprocess({**spec, "method": "none"}, log_path=tmp_path / "none.log")
    spec_run = run_in_subprocess({**spec, "method": "tasc", "tasc": {"index": str(index)}},
                                 log_path=tmp_path / "tasc.log")
    assert spec_run["token_ids"] == plain["token_ids"]
    assert spec_run["spec_metrics"]["num_accepted_tokens"] > 0
    score = [task.score(e, t) for e, t in zip(test, plain["texts"])]
    assert [task.score(e, t) for e, t in zip(test, spec_run["texts"])] == score


def test_faults_inside_the_proposer_keep_outputs_correct(workload, baseline, monkeypatch):
    here = str(Path(__file__).resolve().parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")])))
    run = run_in_subprocess(
        {**workload["spec"], "method": "tasc", "proposer": "engine_faults.FaultyProposer",
         "tasc": {"index": workload["index"]}},
        log_path=workload["dir"] / "fault.log",
    )
    assert run["texts"] == baseline["texts"]
    log = (workload["dir"] / "fault.log").read_text(errors="replace")
    assert log.count("TASC proposer failed") == 1
    assert "injected test fault" in log


def test_sampling_with_temperature_works(workload):
    n = len(workload["spec"]["prompt_token_ids"])
    run = run_in_subprocess(
        {**workload["spec"], "method": "tasc", "dtype": "bfloat16",
         "temperatures": [0.8 if i % 2 else 0.0 for i in range(n)],
         "tasc": {"index": workload["index"]}},
        log_path=workload["dir"] / "sampled.log",
    )
    assert run["num_requests"] == n
    assert all(len(ids) > 0 for ids in run["token_ids"])
    assert run["spec_metrics"]["num_drafts"] > 0


def test_bad_index_fails_engine_start_with_a_clear_error(workload):
    bad = workload["dir"] / "bad.tasc"
    bad.write_bytes(b"\x00" * 100)
    log = workload["dir"] / "bad.log"
    with pytest.raises(TascError):
        run_in_subprocess({**workload["spec"], "prompt_token_ids": workload["spec"]["prompt_token_ids"][:1],
                           "max_tokens": [4], "method": "tasc", "tasc": {"index": str(bad)}}, log_path=log, timeout=600)
    assert f"TASC index {bad} is unreadable" in log.read_text(errors="replace")


def test_tasc_is_lossless_on_gemma_in_fp32(tmp_path):
    """A second family: Gemma-3 270M (262,144-token vocabulary, tied embeddings, <bos>, no
    chat template, so prompts in the plain format), without and with TASC-spec in fp32, gives
    the same greedy outputs; its drafts are accepted."""
    from transformers import AutoTokenizer

    from tasc_vllm.eval.models import materialize

    model = str(materialize("gemma-3-270m", progress=False))
    tokenizer = AutoTokenizer.from_pretrained(model)
    assert not tokenizer.chat_template
    examples, corpus = [], []
    for name in ("usaddress", "bfcl"):
        task = get_task(name)
        corpus += [e.reference for e in task.load("train")]
        examples += [(task, e) for e in task.load("test")[:4]]
    index = write_index(corpus, tmp_path / "tasks.tasc")
    prompts = render_prompts(tokenizer, [e.messages for _, e in examples])
    assert all(p[0] == tokenizer.bos_token_id and p.count(tokenizer.bos_token_id) == 1 for p in prompts)
    spec = {"model": model, "dtype": "float32", "batch_size": 4, "num_speculative_tokens": 8,
            "prompt_token_ids": prompts, "max_tokens": [min(task.max_tokens, 96) for task, _ in examples]}
    plain = run_in_subprocess({**spec, "method": "none"}, log_path=tmp_path / "none.log")
    spec_run = run_in_subprocess({**spec, "method": "tasc", "tasc": {"index": str(index)}},
                                 log_path=tmp_path / "tasc.log")
    assert spec_run["token_ids"] == plain["token_ids"]
    assert spec_run["spec_metrics"]["num_accepted_tokens"] > 0
    log = (tmp_path / "tasc.log").read_text(errors="replace")
    assert "TASC index" in log and log.count("has no chat template: prompts use the plain format") == 1
