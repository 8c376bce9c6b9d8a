"""A ``vllm serve`` process on loopback for the duration of a ``with`` block."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def vllm_bin(name: str = "vllm") -> str:
    """A console script of this interpreter's environment (``vllm``, ``tasc-vllm``)."""
    return str(Path(sys.executable).parent / name)


@contextmanager
def vllm_server(model: str, log_path: Path, *, spec: dict | None, dtype: str, max_model_len: int,
                max_num_seqs: int, additional_config: dict | None = None, env: dict | None = None,
                timeout: float = 600, compiled: bool = False, extra_args: list[str] | None = None):
    """``vllm serve MODEL`` with ``spec`` as its ``--speculative-config`` (none when None) and
    ``additional_config`` as its ``--additional-config`` (TASC-spec's settings under
    ``"tasc"``; none when None or empty), eager (``--enforce-eager``) unless ``compiled``, which
    is how ``vllm serve`` starts by default; ``env`` adds to the server's environment;
    ``extra_args`` go on the command line last (e.g. ``["--data-parallel-size", "2"]``).

    Yields ``{"base", "proc", "log"}`` once ``/health`` answers; the server is stopped on exit.
    Its output goes to ``log_path``.  Raises ``RuntimeError`` (with the log's tail) when the
    server exits or is not healthy within ``timeout`` seconds.
    """
    port = free_port()
    full_env = dict(os.environ, **(env or {}))
    iomp = Path(sys.prefix) / "lib" / "libiomp5.so"
    if iomp.exists():
        full_env["LD_PRELOAD"] = str(iomp)
    cmd = [vllm_bin(), "serve", model, "--host", "127.0.0.1", "--port", str(port), "--dtype", dtype,
           "--max-model-len", str(max_model_len), "--max-num-seqs", str(max_num_seqs),
           "--gpu-memory-utilization", "0.3", "--seed", "0"] + ([] if compiled else ["--enforce-eager"])
    if spec is not None:
        cmd += ["--speculative-config", json.dumps(spec)]
    if additional_config:
        cmd += ["--additional-config", json.dumps(additional_config)]
    cmd += list(extra_args or [])
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=full_env)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.time() + timeout
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"vllm serve exited with {proc.returncode}: {log_path.read_text()[-3000:]}")
                try:
                    if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.time() > deadline:
                    raise RuntimeError(f"vllm serve did not become healthy in {timeout:.0f} s")
                time.sleep(2)
            yield {"base": base, "proc": proc, "log": log_path}
        finally:
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


_SAMPLE = re.compile(r"^(vllm:spec_decode_[a-z_]+?)(?:_total)?(\{[^}]*\})?\s+([0-9.eE+-]+)$")
_POSITION = re.compile(r'position="(\d+)"')


def spec_counters(base: str) -> dict:
    """vLLM's speculative-decoding counters from the server's ``/metrics``."""
    return parse_spec_counters(httpx.get(f"{base}/metrics", timeout=30).text)


def parse_spec_counters(text: str) -> dict:
    """The ``vllm:spec_decode_*`` counters of a Prometheus text page: drafts, draft tokens,
    accepted tokens (summed over engines), and accepted tokens per draft position (a list)."""
    out: dict = {}
    for line in text.splitlines():
        m = _SAMPLE.match(line.strip())
        if not m or m.group(1).endswith("_created"):
            continue
        name, labels, value = m.group(1).removeprefix("vllm:spec_decode_"), m.group(2) or "", float(m.group(3))
        pos = _POSITION.search(labels)
        if pos:
            per = out.setdefault(name, [])
            i = int(pos.group(1))
            per.extend([0] * (i + 1 - len(per)))
            per[i] += int(value)
        else:
            out[name] = out.get(name, 0) + int(value)
    return out


def counter_delta(before: dict, after: dict) -> dict:
    out = {}
    for k, v in after.items():
        b = before.get(k, [] if isinstance(v, list) else 0)
        out[k] = [x - (b[i] if i < len(b) else 0) for i, x in enumerate(v)] if isinstance(v, list) else v - b
    return out
