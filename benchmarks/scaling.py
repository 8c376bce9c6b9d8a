"""How index build, cached load, memory and per-step proposer cost grow with the corpus.

    python -m benchmarks.scaling [--sizes 10000,100000,1000000,10000000]

Corpora are the three tasks' train outputs, grown with variants (digits and words of the
corpus redrawn at random), tokenized with the default model's tokenizer. The per-step cost
is measured on a batch of 64 rows of real contexts (held-out prompts plus a partial answer),
twice: with the defaults, whose step-cost rule drafts only near-certain tokens at batch 64, and
with that rule off (``step_overhead=0``), so every row drafts as long as the statistics allow.
Writes ``benchmarks/results/scaling.json`` (replacing it) and regenerates
``benchmarks/RESULTS.md``, which draws ``scaling.png``.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from benchmarks import report
from benchmarks.harness.machine import machine
from benchmarks.harness.paths import RESULTS
from benchmarks.harness.replay import standalone_proposer


def base_texts() -> list[str]:
    from tasc_vllm.eval.tasks import get_task

    return [e.reference for name in ("usaddress", "bfcl", "humaneval") for e in get_task(name).load("train")]


def grow(texts: list[str], target_tokens: int, tokens_per_char: float, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    words = sorted({w for t in texts for w in re.findall(r"[A-Za-z]{3,}", t)})
    out, chars = [], 0
    target_chars = target_tokens / tokens_per_char
    i = 0
    while chars < target_chars:
        t = texts[i % len(texts)]
        if i >= len(texts):
            t = re.sub(r"\d", lambda m: str(rng.integers(10)), t)
            t = re.sub(r"[A-Za-z]{3,}", lambda m: words[rng.integers(len(words))] if rng.random() < 0.3 else m.group(0), t)
        out.append(t)
        chars += len(t)
        i += 1
    return out


def contexts(tokenizer, n: int = 64, max_model_len: int = 2048):
    from tasc_vllm.eval.runner import render_prompts
    from tasc_vllm.eval.tasks import get_task

    task = get_task("usaddress")
    test = task.load("test")[:n]
    prompts = render_prompts(tokenizer, [e.messages for e in test])
    rows = np.zeros((n, max_model_len), dtype=np.int32)
    lengths = np.zeros(n, dtype=np.int32)
    for i, (p, e) in enumerate(zip(prompts, test)):
        ids = p + tokenizer.encode(e.reference[: len(e.reference) // 2], add_special_tokens=False)
        rows[i, : len(ids)] = ids
        lengths[i] = len(ids)
    return rows, lengths


def step_cost(prop, rows, lengths, reps: int = 30, blocks: int = 7) -> tuple[float, list[list[int]]]:
    """Seconds per `propose` call on every row (after one warm-up call), the median over
    ``blocks`` timings of ``reps`` calls each (one block is a few milliseconds, which a
    moment's noise on the machine can double), and its drafts."""
    sampled = [[1]] * rows.shape[0]
    drafts = prop.propose(sampled, lengths, rows)
    per_call = []
    for _ in range(blocks):
        t0 = time.perf_counter()
        for _ in range(reps):
            drafts = prop.propose(sampled, lengths, rows)
        per_call.append((time.perf_counter() - t0) / reps)
    return float(np.median(per_call)), drafts


def measure(size: int, texts: list[str], tokenizer, rows, lengths, workdir: Path) -> dict:
    from tasc_vllm.config import TascConfig
    from tasc_vllm.index.index_file import read_index, write_index
    from tasc_vllm.index.ngram_cache import load_tokenized

    index_path = workdir / f"corpus-{size}.tasc"
    t0 = time.perf_counter()
    write_index(texts, index_path)
    tc = load_tokenized(read_index(index_path), tokenizer, max_order=8, progress=True)
    build = time.perf_counter() - t0
    t1 = time.perf_counter()
    cached = load_tokenized(read_index(index_path), tokenizer, max_order=8)
    load = time.perf_counter() - t1
    assert cached.from_cache
    from tasc_vllm.index.policy import prepare_scorer

    t2 = time.perf_counter()  # the learned policy's training, as build-index --model runs it
    scorer = prepare_scorer(read_index(index_path), tokenizer, cached, TascConfig(index=str(index_path)),
                            len(tokenizer))[0]
    policy = time.perf_counter() - t2
    def proposer(**settings):
        return standalone_proposer(tokenizer, TascConfig(index=str(index_path), **settings), 8,
                                   max_model_len=rows.shape[1], max_num_seqs=rows.shape[0],
                                   cost=None)  # timed as a server times it

    per_step, drafts = step_cost(proposer(), rows, lengths)
    # with drafted tokens nearly free, every row drafts as long as the statistics allow (as at batch 1)
    per_step_long, drafts_long = step_cost(proposer(step_cost_model="1,0,0.001,0"), rows, lengths)
    return {
        "tokens": tc.num_tokens,
        "texts": len(texts),
        "build_seconds": build,
        "load_seconds": load,
        "policy_seconds": policy,
        "policy_positions": scorer.info.get("positions", 0),
        "table_mib": tc.table.nbytes / 2**20,
        "tokens_mib": tc.tokens.nbytes / 2**20,
        "cache_file_mib": tc.cache_path.stat().st_size / 2**20,
        "us_per_step_batch64": per_step * 1e6,
        "us_per_row_step": per_step * 1e6 / rows.shape[0],
        "mean_draft_len": float(np.mean([len(d) for d in drafts])),
        "us_per_row_step_long": per_step_long * 1e6 / rows.shape[0],
        "mean_draft_len_long": float(np.mean([len(d) for d in drafts_long])),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="10000,100000,1000000,10000000")
    args = p.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]

    from transformers import AutoTokenizer

    from tasc_vllm.eval.models import materialize

    tokenizer = AutoTokenizer.from_pretrained(materialize())
    texts = base_texts()
    sample = texts[:500]
    tpc = sum(len(tokenizer.encode(t, add_special_tokens=False)) for t in sample) / sum(len(t) for t in sample)
    rows, lengths = contexts(tokenizer)
    results = []
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="tasc-scaling-") as d:
        import os

        os.environ["TASC_VLLM_CACHE"] = str(Path(d) / "cache")
        for size in tqdm(sizes, desc="corpus sizes", unit="size"):
            corpus = grow(texts, size, tpc)
            results.append(measure(size, corpus, tokenizer, rows, lengths, Path(d)))
            tqdm.write(json.dumps(results[-1]))
    RESULTS.mkdir(exist_ok=True)
    from tasc_vllm.paths import write_atomic

    out = {"name": "scaling", "started_unix": int(t0), "seconds": time.time() - t0, "machine": machine(),
           "settings": {"sizes": sizes, "batch_rows": int(rows.shape[0]), "num_speculative_tokens": 8,
                        "max_order": 8, "task": "usaddress"},
           "rows": results}
    write_atomic(RESULTS / "scaling.json", json.dumps(out, indent=1).encode())
    print(f"wrote {RESULTS / 'scaling.json'} and {report.write_report()} (with scaling.png)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
