"""Run one offline vLLM measurement (one method, one batch size) in a fresh process.

Each run gets its own process so engines never share memory or compiled state, and the
caller can compare methods side by side in one invocation. Input and output are JSON:

    python -m tasc_vllm.runner SPEC.json RESULT.json
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tasc_vllm.errors import TascError

METHODS = ("none", "ngram", "suffix", "tasc", "oracle")


def speculative_config(method: str, k: int) -> dict | None:
    if method == "none":
        return None
    if method == "ngram":
        return {"method": "ngram", "num_speculative_tokens": k, "prompt_lookup_max": 5, "prompt_lookup_min": 2}
    if method == "suffix":
        return {"method": "suffix", "num_speculative_tokens": k}
    if method == "tasc":
        return {"method": "custom_class", "model": "tasc_vllm.TascProposer", "num_speculative_tokens": k}
    if method == "oracle":
        return {"method": "custom_class", "model": "tasc_vllm.oracle.OracleProposer", "num_speculative_tokens": k}
    raise TascError(f"unknown method {method!r}; known: {', '.join(METHODS)}")


def render_prompts(tokenizer, conversations: list[list[dict]]) -> list[list[int]]:
    return [
        list(tokenizer.apply_chat_template(c, tokenize=True, add_generation_prompt=True, return_dict=False))
        for c in conversations
    ]


def _spec_metrics(llm) -> dict:
    out: dict = {}
    try:
        for m in llm.get_metrics():
            if m.name.startswith("vllm:spec_decode"):
                short = m.name.removeprefix("vllm:spec_decode_")
                if hasattr(m, "values"):
                    out[short] = [int(v) for v in m.values]
                elif hasattr(m, "value"):
                    out[short] = out.get(short, 0) + int(m.value)
    except Exception as e:  # metrics are informative only
        out["error"] = str(e)
    return out


def run(spec: dict) -> dict:
    """Execute one measurement in this process (must be a fresh one)."""
    for k, v in (spec.get("env") or {}).items():
        os.environ[k] = str(v)
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    method = spec.get("method", "none")
    k = int(spec.get("num_speculative_tokens", 8))
    t0 = time.perf_counter()
    llm = LLM(
        model=spec["model"],
        dtype=spec.get("dtype", "bfloat16"),
        max_model_len=int(spec.get("max_model_len", 2048)),
        max_num_seqs=int(spec.get("batch_size", 1)),
        gpu_memory_utilization=float(spec.get("gpu_memory_utilization", 0.3)),
        enforce_eager=bool(spec.get("enforce_eager", True)),
        speculative_config=speculative_config(method, k),
        disable_log_stats=False,
        seed=int(spec.get("seed", 0)),
    )
    start_seconds = time.perf_counter() - t0
    prompts = spec["prompt_token_ids"]
    max_tokens = spec["max_tokens"]
    temperatures = spec.get("temperatures") or [float(spec.get("temperature", 0.0))] * len(prompts)
    params = [
        SamplingParams(temperature=float(t), max_tokens=int(mt),
                       seed=None if spec.get("per_request_seed") is False else int(spec.get("seed", 0)) + i,
                       allowed_token_ids=spec.get("allowed_token_ids"))
        for i, (t, mt) in enumerate(zip(temperatures, max_tokens))
    ]
    inputs = [TokensPrompt(prompt_token_ids=p) for p in prompts]
    # warm-up on a prompt of its own (a test prompt here would seed suffix decoding's cache)
    warm_ids = spec.get("warmup_prompt_token_ids")
    if warm_ids:
        llm.generate([TokensPrompt(prompt_token_ids=warm_ids)], SamplingParams(temperature=0.0, max_tokens=8), use_tqdm=False)
    # e.g. suffix decoding warmed with the task's train prompts, before the timed run
    train_ids = spec.get("train_prompt_token_ids") or []
    if train_ids:
        llm.generate([TokensPrompt(prompt_token_ids=p) for p in train_ids],
                     SamplingParams(temperature=0.0, max_tokens=int(spec.get("train_max_tokens", 256))),
                     use_tqdm=bool(spec.get("progress", True)))
    metrics_before = _spec_metrics(llm)
    t1 = time.perf_counter()
    outputs = llm.generate(inputs, params, use_tqdm=bool(spec.get("progress", True)))
    seconds = time.perf_counter() - t1
    metrics_after = _spec_metrics(llm)
    spec_metrics = {}
    for key, val in metrics_after.items():
        before = metrics_before.get(key)
        if isinstance(val, int) and isinstance(before, int):
            spec_metrics[key] = val - before
        elif isinstance(val, list) and isinstance(before, list) and len(before) == len(val) and all(isinstance(x, int) for x in val):
            spec_metrics[key] = [a - b for a, b in zip(val, before)]
        else:
            spec_metrics[key] = val
    drafts = spec_metrics.get("num_drafts", 0)
    if isinstance(drafts, int) and drafts:
        spec_metrics["mean_acceptance_length"] = 1.0 + spec_metrics.get("num_accepted_tokens", 0) / drafts
        per_pos = spec_metrics.get("num_accepted_tokens_per_pos") or []
        spec_metrics["acceptance_per_position"] = [v / drafts for v in per_pos]
    texts = [o.outputs[0].text for o in outputs]
    token_ids = [list(o.outputs[0].token_ids) for o in outputs]
    n_tokens = sum(len(t) for t in token_ids)
    return {
        "method": method,
        "batch_size": int(spec.get("batch_size", 1)),
        "num_speculative_tokens": k if method != "none" else 0,
        "engine_start_seconds": start_seconds,
        "seconds": seconds,
        "num_requests": len(outputs),
        "output_tokens": n_tokens,
        "output_chars": sum(len(t) for t in texts),
        "tokens_per_second": n_tokens / seconds,
        "requests_per_second": len(outputs) / seconds,
        "chars_per_second": sum(len(t) for t in texts) / seconds,
        "spec_metrics": spec_metrics,
        "texts": texts,
        "token_ids": token_ids,
    }


def _tee_progress(stream, log, show: bool) -> None:
    """Copy the child's stderr into the log; echo vLLM's progress bar to the terminal."""
    shown = False
    while True:
        chunk = stream.read1(65536) if hasattr(stream, "read1") else stream.read(4096)
        if not chunk:
            break
        log.write(chunk)
        if show:
            for piece in chunk.split(b"\r"):
                if b"Processed prompts" in piece:
                    text = piece.split(b"\n")[0].decode("utf-8", "replace")
                    sys.stderr.write("\r" + text[:150])
                    sys.stderr.flush()
                    shown = True
    if shown:
        sys.stderr.write("\n")
        sys.stderr.flush()


def run_in_subprocess(spec: dict, log_path: str | Path | None = None, timeout: float | None = None) -> dict:
    """Run ``spec`` in a fresh Python process and return its result."""
    with tempfile.TemporaryDirectory(prefix="tasc-run-") as d:
        spec_path = Path(d) / "spec.json"
        result_path = Path(d) / "result.json"
        spec_path.write_text(json.dumps(spec))
        env = dict(os.environ)
        iomp = Path(sys.prefix) / "lib" / "libiomp5.so"
        if iomp.exists() and "libiomp5" not in env.get("LD_PRELOAD", ""):
            env["LD_PRELOAD"] = f"{iomp}:{env['LD_PRELOAD']}" if env.get("LD_PRELOAD") else str(iomp)
        log = open(log_path, "ab") if log_path else None
        show_progress = bool(log) and bool(spec.get("progress", True))
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "tasc_vllm.runner", str(spec_path), str(result_path)],
                env=env,
                stdout=log or None,
                stderr=subprocess.PIPE if log else None,
            )
            if log:
                _tee_progress(proc.stderr, log, show_progress)
            returncode = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise TascError(f"vLLM run ({spec.get('method')}) exceeded {timeout} s") from None
        finally:
            if log:
                log.close()
        if returncode != 0 or not result_path.exists():
            where = f"; see {log_path}" if log_path else ""
            raise TascError(f"vLLM run ({spec.get('method')}, batch {spec.get('batch_size', 1)}) failed with exit code {returncode}{where}")
        return json.loads(result_path.read_text())


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    spec = json.loads(Path(argv[0]).read_text())
    result = run(spec)
    Path(argv[1]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
