"""A real ``vllm serve`` with TASC-spec on loopback under a small, bounded, mixed load
(``benchmarks/serve_load.py`` runs the full-scale version)."""

import shutil

import httpx
import pytest

from benchmarks.serve_load import (
    build_requests,
    compare_with_plain,
    run_load,
    serve,
    task_index,
)

pytestmark = pytest.mark.engine
NUM_REQUESTS = 40
CONCURRENCY = 8
MAX_MODEL_LEN = 1024


@pytest.fixture(scope="module")
def server(default_model_dir, tmp_path_factory):
    d = tmp_path_factory.mktemp("serve")
    served_index = d / "served.tasc"
    shutil.copy(task_index(d), served_index)
    try:
        with serve(str(default_model_dir), served_index, d, max_model_len=MAX_MODEL_LEN, max_num_seqs=CONCURRENCY) as srv:
            yield {**srv, "dir": d, "index": served_index, "model": str(default_model_dir)}
    except RuntimeError as e:
        pytest.fail(str(e))


def test_mixed_load_then_greedy_outputs_match_plain_engine(server, tokenizer):
    server["index"].unlink()  # deleting the index while serving changes nothing until restart
    mixed = build_requests(tokenizer, NUM_REQUESTS, max_model_len=MAX_MODEL_LEN)
    _, errors = run_load(server["base"], server["model"], mixed, CONCURRENCY)
    assert errors == []
    assert server["proc"].poll() is None, "server died"
    assert httpx.get(f"{server['base']}/health", timeout=5).status_code == 200
    metrics = httpx.get(f"{server['base']}/metrics", timeout=5).text
    drafts = [l for l in metrics.splitlines() if l.startswith("vllm:spec_decode_num_drafts_total")]
    assert drafts and float(drafts[0].split()[-1]) > 0

    # vLLM 0.32 on CPU corrupts greedy rows of a speculative batch that also holds sampled
    # rows (its own `ngram` method too; see benchmarks/RELIABILITY.md), so exactness is
    # checked on a greedy-only load: streaming and not, many lengths, concurrent.
    greedy = [dict(r, id=1000 + i, temperature=0.0) for i, r in enumerate(mixed) if not r.get("cancel_after_chunks")][:24]
    results, errors = run_load(server["base"], server["model"], greedy, CONCURRENCY)
    assert errors == []
    cmp = compare_with_plain(server["model"], greedy, results, server["dir"], MAX_MODEL_LEN)
    first = next((i for i, r in enumerate(greedy) if r["id"] in cmp["mismatched_ids"]), None)
    assert cmp["mismatched_ids"] == [], (
        f"{len(cmp['mismatched_ids'])} of {len(greedy)} greedy outputs differ; first: served "
        f"{results[greedy[first]['id']]!r} vs plain {cmp['plain_texts'][first]!r}"
    )
    assert cmp["matched"] == len(greedy) == 24
    log = server["log"].read_text(errors="replace")
    assert "TASC proposer failed" not in log
    assert "TASC index" in log


def test_vllm_bench_serve_drives_the_server_and_counts_drafts(server, tokenizer):
    """The online benchmark's path: vLLM's own ``vllm bench serve`` with a custom dataset of
    task prompts against the TASC server, and the spec-decode counters read from /metrics."""
    from benchmarks.online import bench_serve, summarize, write_dataset
    from benchmarks.harness.server import counter_delta, spec_counters
    from tasc_vllm.eval.tasks import get_task

    task = get_task("usaddress")
    examples = task.load("test")[:4]
    folder = server["dir"] / "online"
    folder.mkdir()
    dataset = write_dataset(folder / "usaddress.jsonl", tokenizer, [e.messages for e in examples],
                            task.max_tokens)
    before = spec_counters(server["base"])
    with open(folder / "bench.log", "w") as log:
        raw = bench_serve(server["base"], server["model"], dataset, len(examples), 2, task.max_tokens, folder, log)
    run = summarize(raw, counter_delta(before, spec_counters(server["base"])))
    assert run["completed"] == 4 and run["failed"] == 0 and run["errors"] == []
    assert run["request_throughput"] > 0 and run["median_tpot_ms"] > 0 and run["median_ttft_ms"] > 0
    assert len(raw["generated_texts"]) == 4 and all(t.strip() for t in raw["generated_texts"])
    spec = run["spec_decode"]
    assert spec["num_drafts"] > 0 and spec["num_draft_tokens"] >= spec["num_drafts"]
    assert 0 < spec["num_accepted_tokens"] == sum(spec["num_accepted_tokens_per_pos"])
    assert 1 < run["spec_decode"]["mean_acceptance_length"] <= 1 + 8
