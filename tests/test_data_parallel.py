"""TASC-spec under vLLM's own data parallelism: one ``vllm serve --data-parallel-size 2`` whose
two engines each load the index, learn on their own, and save to files of their own."""

import os
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from benchmarks.harness.server import vllm_server
from tasc_vllm.eval.tasks import get_task
from tasc_vllm.index.index_file import write_index

pytestmark = pytest.mark.engine
REPLICAS = 2


def _complete(base: str, model: str, prompt: str) -> str:
    r = httpx.post(f"{base}/v1/completions", timeout=300,
                   json={"model": model, "prompt": prompt, "max_tokens": 48, "temperature": 0.0})
    r.raise_for_status()
    return r.json()["choices"][0]["text"]


def test_replicas_serve_learn_and_save_on_their_own(default_model_dir, tmp_path):
    task = get_task("usaddress")
    index = write_index([e.reference for e in task.load("train")], tmp_path / "usaddress.tasc")
    learned = tmp_path / "learned.npz"
    model = str(default_model_dir)
    prompts = [f"Parse as JSON: {e.prompt}\n" for e in task.load("test")[:8]]
    with vllm_server(model, tmp_path / "serve.log", dtype="bfloat16", max_model_len=1024, max_num_seqs=4,
                     spec={"method": "custom_class", "model": "tasc_vllm.TascProposer", "num_speculative_tokens": 8},
                     additional_config={"tasc": {"index": str(index), "learned_path": str(learned)}},
                     extra_args=["--data-parallel-size", str(REPLICAS)]) as srv:
        with ThreadPoolExecutor(len(prompts)) as pool:  # concurrent, so both replicas get requests
            texts = list(pool.map(lambda p: _complete(srv["base"], model, p), prompts))
        assert all(texts)
        trigger = tmp_path / "learned.npz.save"
        trigger.touch()
        os.utime(trigger, (time.time() + 5, time.time() + 5))
        files = [learned, tmp_path / "learned.dp1.npz"]
        deadline = time.time() + 120
        while not all(f.exists() for f in files) and time.time() < deadline:
            time.sleep(1.1)  # a replica checks for the touch at most once a second, while it drafts
            with ThreadPoolExecutor(len(prompts)) as pool:
                list(pool.map(lambda p: _complete(srv["base"], model, p), prompts[:4]))
        log = srv["log"].read_text(errors="replace")
    assert log.count("TASC-spec settings: index=") == REPLICAS, log[-3000:]
    assert f"saves to {learned} when" in log and f"saves to {files[1]} when" in log
    assert all(f.exists() for f in files), [f.name for f in tmp_path.iterdir()]
    saved = [line for line in log.splitlines() if "saved what was learned" in line]
    assert sum(str(files[0]) in line for line in saved) >= 1 and sum(str(files[1]) in line for line in saved) >= 1
    assert "TASC proposer failed" not in log
