"""Run one offline vLLM measurement (one method; one or several batch sizes) in a fresh process.

Each run gets its own process so engines never share memory or compiled state, and the
caller can compare methods side by side in one invocation. Input and output are JSON:

    python -m tasc_vllm.eval.runner SPEC.json RESULT.json
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tasc_vllm.errors import TascError
from tasc_vllm.prompt_format import chat_token_ids

METHODS = ("none", "ngram", "suffix", "tasc", "oracle")


TASC_PROPOSER = "tasc_vllm.TascProposer"


def speculative_config(method: str, k: int, proposer: str = TASC_PROPOSER) -> dict | None:
    """vLLM's speculative config for ``method``; ``proposer``: the class path TASC-spec runs as."""
    if method == "none":
        return None
    if method == "ngram":
        return {"method": "ngram", "num_speculative_tokens": k, "prompt_lookup_max": 5, "prompt_lookup_min": 2}
    if method == "suffix":
        return {"method": "suffix", "num_speculative_tokens": k}
    if method == "tasc":
        return {"method": "custom_class", "model": proposer, "num_speculative_tokens": k}
    if method == "oracle":
        return {"method": "custom_class", "model": "tasc_vllm.eval.oracle.OracleProposer", "num_speculative_tokens": k}
    raise TascError(f"unknown method {method!r}; known: {', '.join(METHODS)}")


def render_prompts(tokenizer, conversations: list[list[dict]]) -> list[list[int]]:
    return [chat_token_ids(tokenizer, c) for c in conversations]


SPEC_DECODE = "vllm:spec_decode_"
PREFIX_CACHE = "vllm:prefix_cache_"


def _counters(llm, *prefixes: str) -> list[dict]:
    """For each of ``prefixes``, vLLM's counters whose names start with it, the prefix dropped
    (one read of vLLM's metrics for all of them)."""
    outs: list[dict] = [{} for _ in prefixes]
    try:
        for m in llm.get_metrics():
            for prefix, out in zip(prefixes, outs):
                if m.name.startswith(prefix):
                    short = m.name.removeprefix(prefix)
                    if hasattr(m, "values"):
                        out[short] = [int(v) for v in m.values]
                    elif hasattr(m, "value"):
                        out[short] = out.get(short, 0) + int(m.value)
    except Exception as e:  # metrics are informative only
        for out in outs:
            out["error"] = str(e)
    return outs


def _metric_delta(before: dict, after: dict) -> dict:
    out = {}
    for key, val in after.items():
        prev = before.get(key)
        if isinstance(val, int) and isinstance(prev, int):
            out[key] = val - prev
        elif isinstance(val, list) and isinstance(prev, list) and len(prev) == len(val) and all(isinstance(x, int) for x in val):
            out[key] = [a - b for a, b in zip(val, prev)]
        else:
            out[key] = val
    drafts = out.get("num_drafts", 0)
    if isinstance(drafts, int) and drafts:
        out["mean_acceptance_length"] = 1.0 + out.get("num_accepted_tokens", 0) / drafts
        out["acceptance_per_position"] = [v / drafts for v in out.get("num_accepted_tokens_per_pos") or []]
    return out


_PHASES = itertools.count()


def generate_at_concurrency(llm, inputs: list, params: list, concurrency: int, progress: bool = False) -> list:
    """Generate every input with at most ``concurrency`` requests in flight, refilling a
    slot as soon as a request finishes (what an engine with ``max_num_seqs=concurrency``
    does with all of them queued). Outputs come back in input order."""
    from tqdm import tqdm
    from vllm.sampling_params import RequestOutputKind

    phase = next(_PHASES)  # request ids stay unique across calls on one engine
    order: dict[str, int] = {}
    outputs: list = [None] * len(inputs)
    nxt = 0

    def add(n: int) -> None:
        nonlocal nxt
        for _ in range(n):
            if nxt < len(inputs):
                rid = f"tasc-{phase}-{nxt}"
                params[nxt].output_kind = RequestOutputKind.FINAL_ONLY
                llm.llm_engine.add_request(rid, inputs[nxt], params[nxt])
                order[rid] = nxt
                nxt += 1

    add(concurrency)
    with tqdm(total=len(inputs), desc=f"Processed prompts (concurrency {concurrency})", disable=not progress) as bar:
        while llm.llm_engine.has_unfinished_requests():
            finished = [o for o in llm.llm_engine.step() if o.finished]
            for o in finished:
                outputs[order.pop(o.request_id)] = o
            bar.update(len(finished))
            add(len(finished))
    missing = [i for i, o in enumerate(outputs) if o is None]
    if missing:
        raise TascError(f"vLLM returned no output for {len(missing)} request(s), e.g. input {missing[0]}")
    return outputs


def _measure(llm, inputs: list, params: list, concurrency: int, progress: bool) -> dict:
    before, cache_before = _counters(llm, SPEC_DECODE, PREFIX_CACHE)
    t1 = time.perf_counter()
    outputs = generate_at_concurrency(llm, inputs, params, concurrency, progress)
    seconds = time.perf_counter() - t1
    after, cache_after = _counters(llm, SPEC_DECODE, PREFIX_CACHE)
    texts = [o.outputs[0].text for o in outputs]
    token_ids = [list(o.outputs[0].token_ids) for o in outputs]
    n_tokens = sum(len(t) for t in token_ids)
    n_chars = sum(len(t) for t in texts)
    return {
        "batch_size": concurrency,
        "seconds": seconds,
        "num_requests": len(outputs),
        "output_tokens": n_tokens,
        "output_chars": n_chars,
        "tokens_per_second": n_tokens / seconds,
        "requests_per_second": len(outputs) / seconds,
        "chars_per_second": n_chars / seconds,
        "spec_metrics": _metric_delta(before, after),
        # prompt tokens vLLM found in its prefix cache (queries: looked up)
        "prefix_cache": _metric_delta(cache_before, cache_after),
        "texts": texts,
        "token_ids": token_ids,
    }


def _proposer_stats(llm, path: str | None, flush_prompt) -> dict | None:
    """The proposer's stats file, up to date: it is written from inside ``propose`` at most
    once a second, so wait that long and make one short request that calls it again."""
    if not path:
        return None
    from vllm import SamplingParams

    time.sleep(1.1)
    llm.generate([flush_prompt], SamplingParams(temperature=0.0, max_tokens=4), use_tqdm=False)
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def run(spec: dict) -> dict:
    """Execute one measurement in this process (must be a fresh one).

    With ``batch_sizes`` (a list), one engine (``max_num_seqs``: the spec's, else the
    largest batch size) measures each concurrency in turn and the result holds a list ``runs``; otherwise ``batch_size``
    sets ``max_num_seqs`` and the result is that one run. Only methods that keep no state
    between requests may share an engine across batch sizes (``suffix`` learns from every
    output, so a second pass over the same prompts would be unfair).
    """
    for k, v in (spec.get("env") or {}).items():
        os.environ[k] = str(v)
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    method = spec.get("method", "none")
    k = int(spec.get("num_speculative_tokens", 8))
    batch_sizes = [int(b) for b in spec.get("batch_sizes") or [spec.get("batch_size", 1)]]
    if method == "suffix" and len(batch_sizes) > 1:
        raise TascError("suffix decoding learns from every output: give it one batch size per engine")
    t0 = time.perf_counter()
    llm = LLM(
        model=spec["model"],
        dtype=spec.get("dtype", "bfloat16"),
        max_model_len=int(spec.get("max_model_len", 2048)),
        max_num_seqs=int(spec.get("max_num_seqs") or max(batch_sizes)),
        gpu_memory_utilization=float(spec.get("gpu_memory_utilization", 0.3)),
        enforce_eager=bool(spec.get("enforce_eager", True)),
        speculative_config=speculative_config(method, k, spec.get("proposer") or TASC_PROPOSER),
        additional_config={"tasc": dict(spec["tasc"])} if spec.get("tasc") else {},
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
    progress = bool(spec.get("progress", True))
    # warm-up on a prompt of its own (a test prompt here would seed suffix decoding's cache)
    warm_ids = spec.get("warmup_prompt_token_ids")
    if warm_ids:
        llm.generate([TokensPrompt(prompt_token_ids=warm_ids)], SamplingParams(temperature=0.0, max_tokens=8), use_tqdm=False)
    # e.g. suffix decoding warmed with the task's train prompts, before the timed run
    train_ids = spec.get("train_prompt_token_ids") or []
    if train_ids:
        llm.generate([TokensPrompt(prompt_token_ids=p) for p in train_ids],
                     SamplingParams(temperature=0.0, max_tokens=int(spec.get("train_max_tokens", 256))),
                     use_tqdm=progress)
    stats_path = (spec.get("tasc") or {}).get("stats_path") or os.environ.get("TASC_STATS_PATH")
    flush_prompt = TokensPrompt(prompt_token_ids=warm_ids or prompts[0])
    runs = []
    stats_after = _proposer_stats(llm, stats_path, flush_prompt)
    for batch in batch_sizes:
        stats_before = stats_after
        # every batch size serves the same prompts: without this, a later one would find
        # their prefill cached by an earlier one (or by a warm-up) and run faster
        if not llm.reset_prefix_cache():
            raise RuntimeError("vLLM could not reset its prefix cache before a measurement")
        r = _measure(llm, inputs, params, batch, progress)
        stats_after = _proposer_stats(llm, stats_path, flush_prompt)
        if stats_after and stats_after.get("calls"):
            calls = stats_after["calls"] - (stats_before or {}).get("calls", 0)
            secs = stats_after["seconds"] - (stats_before or {}).get("seconds", 0.0)
            learned = stats_after.get("learned", 0) - (stats_before or {}).get("learned", 0)
            r["proposer"] = {"calls": calls, "seconds": secs, "learned": learned,
                             # the step-time model the proposer measured, as it stood after this batch size
                             "step_cost": stats_after.get("step_cost"),
                             "step_cost_measured": stats_after.get("step_cost_measured")}
            if calls > 0:
                r["proposer_ms_per_step"] = 1000 * secs / calls
                r["proposer_share_of_time"] = secs / r["seconds"]
        r.update(method=method, num_speculative_tokens=k if method != "none" else 0, engine_start_seconds=start_seconds)
        runs.append(r)
    if spec.get("batch_sizes"):
        return {"method": method, "engine_start_seconds": start_seconds, "runs": runs}
    return runs[0]


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
                [sys.executable, "-m", "tasc_vllm.eval.runner", str(spec_path), str(result_path)],
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
