"""A real ``vllm serve`` with TASC-spec on loopback under a bounded, mixed, self-stopping load.

    python -m benchmarks.serve_load [--requests 500] [--concurrency 16]

The load mixes the three tasks' held-out prompts: greedy and sampled, streaming and not,
``max_tokens`` from 1 to 512, prompts close to ``max_model_len``, streams cancelled by the
client, and one prompt sent many times at once.  While it runs, the server's memory (the
API process and its engine process) is sampled every second.  A second, greedy-only phase
is compared token for token with a plain engine (fp32, no speculation).

Writes ``benchmarks/results/serve-load.json`` and regenerates ``benchmarks/RESULTS.md``;
``tests/test_serve.py`` runs a small version.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx

from benchmarks import report
from benchmarks.harness.machine import machine
from benchmarks.harness.paths import RESULTS
from benchmarks.harness.server import vllm_server
from tasc_vllm.index.index_file import write_index
from tasc_vllm.eval.runner import render_prompts, run_in_subprocess
from tasc_vllm.eval.tasks import get_task

TASKS = ("usaddress", "bfcl", "humaneval")
SPEC = {"method": "custom_class", "model": "tasc_vllm.TascProposer", "num_speculative_tokens": 8}


def task_index(folder: Path) -> Path:
    corpus = [e.reference for name in TASKS for e in get_task(name).load("train")]
    return write_index(corpus, folder / "tasks.tasc")


@contextmanager
def serve(model: str, index: Path, folder: Path, *, max_model_len: int, max_num_seqs: int, timeout: float = 600):
    """A running ``vllm serve`` with TASC-spec (fp32) over ``index`` (given in vLLM's
    ``--additional-config``); yields ``{"base", "proc", "log"}``."""
    with vllm_server(model, folder / "server.log", spec=SPEC, dtype="float32", max_model_len=max_model_len,
                     max_num_seqs=max_num_seqs, additional_config={"tasc": {"index": str(index)}},
                     timeout=timeout) as srv:
        yield srv


def build_requests(tokenizer, n: int, *, max_model_len: int, per_task: int = 8,
                   lengths=(1, 8, 64, 128, 256), seed: int = 0) -> list[dict]:
    """``n`` requests cycling through eight kinds: plain greedy, sampled, near
    ``max_model_len``, cancelled mid-stream, and the same prompt again and again."""
    rng = random.Random(seed)
    items = [e.messages for name in TASKS for e in get_task(name).load("test")[:per_task]]
    prompts = render_prompts(tokenizer, items)
    long_prompt = (prompts[0] * (max_model_len // max(1, len(prompts[0])) + 1))[: max_model_len - 40]
    reqs = []
    for i in range(n):
        kind = i % 8
        r = {"id": i, "prompt": prompts[i % len(prompts)], "temperature": 0.0,
             "max_tokens": rng.choice(lengths), "stream": i % 3 == 0}
        if kind == 1:
            r["temperature"] = 0.8
        if kind == 2:
            r["prompt"], r["max_tokens"] = long_prompt, 32  # close to max_model_len
        if kind == 3:
            r["cancel_after_chunks"], r["stream"], r["max_tokens"] = 3, True, max(lengths)
        if kind == 4:
            r["prompt"] = prompts[0]  # the same prompt many times at once
        reqs.append(r)
    return reqs


def send(base: str, model: str, r: dict):
    body = {"model": model, "prompt": r["prompt"], "max_tokens": r["max_tokens"], "temperature": r["temperature"],
            "seed": r["id"], "stream": r["stream"]}
    with httpx.Client(timeout=600) as c:
        if not r["stream"]:
            resp = c.post(f"{base}/v1/completions", json=body)
            resp.raise_for_status()
            return resp.json()["choices"][0]["text"]
        text, chunks = "", 0
        with c.stream("POST", f"{base}/v1/completions", json=body) as resp:
            resp.raise_for_status()
            for line in resp.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                text += json.loads(line[6:])["choices"][0]["text"]
                chunks += 1
                if r.get("cancel_after_chunks") and chunks >= r["cancel_after_chunks"]:
                    return None  # the client goes away mid-stream
        return text


def run_load(base: str, model: str, reqs: list[dict], concurrency: int, progress=None):
    """Send every request from ``concurrency`` threads; returns (texts by id, errors)."""
    results, errors = {}, []

    def work(r):
        try:
            results[r["id"]] = send(base, model, r)
        except Exception as e:  # noqa: BLE001 - every failure is recorded, none may be lost
            errors.append((r["id"], repr(e)))
        if progress is not None:
            progress()

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(work, reqs))
    return results, errors


def compare_with_plain(model: str, reqs: list[dict], results: dict, folder: Path, max_model_len: int) -> dict:
    plain = run_in_subprocess({
        "model": model, "dtype": "float32", "method": "none", "batch_size": 8, "progress": False,
        "gpu_memory_utilization": 0.15,  # the server beside it holds its own share of memory
        "max_model_len": max_model_len, "prompt_token_ids": [r["prompt"] for r in reqs],
        "max_tokens": [r["max_tokens"] for r in reqs],
    }, log_path=folder / "plain.log")
    mismatched = [r["id"] for r, t in zip(reqs, plain["texts"]) if results.get(r["id"]) != t]
    return {"compared": len(reqs), "matched": len(reqs) - len(mismatched), "mismatched_ids": mismatched,
            "plain_texts": plain["texts"]}


class MemorySampler:
    """RSS of a process and its children, sampled every ``interval`` seconds in a thread."""

    def __init__(self, pid: int, interval: float = 1.0):
        import psutil

        self.proc = psutil.Process(pid)
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _rss(self) -> int:
        import psutil

        total = 0
        for p in [self.proc, *self.proc.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return total

    def _run(self):
        t0 = time.time()
        while not self._stop.is_set():
            self.samples.append((time.time() - t0, self._rss()))
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def main(argv=None) -> int:
    from tqdm import tqdm
    from transformers import AutoTokenizer

    from tasc_vllm.eval.models import materialize

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=500)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--greedy-requests", type=int, default=96, help="requests of the greedy-only exactness phase")
    p.add_argument("--max-model-len", type=int, default=2048)
    args = p.parse_args(argv)
    model = str(materialize())
    tokenizer = AutoTokenizer.from_pretrained(model)
    RESULTS.mkdir(parents=True, exist_ok=True)
    folder = RESULTS / "serve-load-work"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    index = task_index(folder)
    served = folder / "served.tasc"
    shutil.copy(index, served)
    mixed = build_requests(tokenizer, args.requests, max_model_len=args.max_model_len, per_task=16,
                           lengths=(1, 8, 64, 128, 256, 512))
    t0 = time.time()
    out = {"name": "serve-load", "started_unix": int(t0), "machine": machine(), "settings": vars(args), "phases": []}
    with serve(model, served, folder, max_model_len=args.max_model_len, max_num_seqs=args.concurrency) as srv:
        served.unlink()  # deleting the index while serving changes nothing until restart
        pid = srv["proc"].pid
        with MemorySampler(pid) as mem, tqdm(total=len(mixed), desc="mixed load", unit="req") as bar:
            t1 = time.time()
            _, errors = run_load(srv["base"], model, mixed, args.concurrency, progress=bar.update)
            mixed_seconds = time.time() - t1
        alive = srv["proc"].poll() is None and httpx.get(f"{srv['base']}/health", timeout=5).status_code == 200
        metrics = httpx.get(f"{srv['base']}/metrics", timeout=5).text
        drafts = sum(float(line.split()[-1]) for line in metrics.splitlines()
                     if line.startswith("vllm:spec_decode_num_drafts_total"))
        rss = [s for _, s in mem.samples]
        warm = rss[len(rss) // 10:] or rss  # after the first tenth of the load
        out["phases"].append({
            "phase": "mixed", "requests": len(mixed), "failed": len(errors), "errors": errors[:20],
            "seconds": mixed_seconds, "server_alive_after": alive, "drafts": drafts,
            "kinds": {"sampled": sum(r["temperature"] > 0 for r in mixed),
                      "streaming": sum(r["stream"] for r in mixed),
                      "cancelled": sum(bool(r.get("cancel_after_chunks")) for r in mixed),
                      "near_max_model_len": sum(len(r["prompt"]) > args.max_model_len - 64 for r in mixed),
                      "same_prompt": sum(r["prompt"] == mixed[4]["prompt"] for r in mixed)},
            "memory_mib": {"peak": max(rss) / 2**20, "after_warmup_first": warm[0] / 2**20,
                           "after_warmup_max": max(warm) / 2**20, "last": rss[-1] / 2**20,
                           "samples": [(round(t, 1), round(s / 2**20, 1)) for t, s in mem.samples]},
        })
        greedy = [dict(r, id=100_000 + i, temperature=0.0) for i, r in enumerate(mixed)
                  if not r.get("cancel_after_chunks")][: args.greedy_requests]
        with tqdm(total=len(greedy), desc="greedy load", unit="req") as bar:
            results, errors = run_load(srv["base"], model, greedy, args.concurrency, progress=bar.update)
        restarts = log_restarts(srv["log"])
        proposer_errors = srv["log"].read_text(errors="replace").count("TASC proposer failed")
    cmp = compare_with_plain(model, greedy, results, folder, args.max_model_len)
    cmp.pop("plain_texts")
    out["phases"].append({"phase": "greedy", "requests": len(greedy), "failed": len(errors), **cmp})
    out["engine_restarts"] = restarts
    out["proposer_errors_logged"] = proposer_errors
    out["seconds"] = time.time() - t0
    path = RESULTS / "serve-load.json"
    path.write_text(json.dumps(out, indent=1))
    print(json.dumps({k: v for k, v in out.items() if k != "phases"} |
                     {"phases": [{k: v for k, v in ph.items() if k not in ("memory_mib", "errors")} for ph in out["phases"]]},
                     indent=1))
    print(f"wrote {path} and {report.write_report()}")
    return 0


def log_restarts(log: Path) -> int:
    """Engine-core starts after the first in a server log (a restarted engine logs it again)."""
    text = log.read_text(errors="replace")
    return max(0, text.count("Initializing a V1 LLM engine") - 1)


if __name__ == "__main__":
    sys.exit(main())
