"""TASC-spec's drafting replayed over recorded greedy outputs, without an engine.

Greedy verification accepts a draft's longest prefix that equals the model's own
continuation, so with the model's greedy outputs recorded once (one plain vLLM run, cached in
``benchmarks/results/replay-greedy-<task>.json``, which is not committed: it is recorded again
when missing), every proposer setting can be scored in seconds: steps, drafted and accepted
tokens per request, exactly as an engine would see them at batch 1.  A step's cost is modelled
as ``overhead + verified tokens`` (in units of one verified token); the engine benchmarks
remain the measure of record, this only ranks settings before spending engine time on them.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np

from benchmarks.harness.paths import RESULTS


def greedy_outputs(task_name: str, prompts: int, model: str, tokenizer, dtype: str, messages=None,
                   label: str = "") -> dict:
    """The model's greedy answers to the first ``prompts`` test prompts of a task
    (``prompt_ids``, ``output_ids``): from the cache when it holds as many of this model's in
    ``dtype``, else recorded with one plain engine and cached.  ``messages(examples)``: the
    chat messages served (default: the task's); ``label`` names the model in the cache file
    (none: the default model)."""
    from tasc_vllm.eval.runner import render_prompts, run_in_subprocess
    from tasc_vllm.eval.tasks import get_task

    stem = f"{task_name}-{label}" if label else task_name
    path = RESULTS / f"replay-greedy-{stem}.json"
    task = get_task(task_name)
    test = task.load("test")[:prompts]
    if path.exists():
        data = json.loads(path.read_text())
        same_model = data.get("model", model if not label else None) == model  # a rebuilt fine-tune has a new folder
        if same_model and data["prompts"] >= len(test) and data["dtype"] == dtype:  # a task may hold fewer than asked
            return data
    ids = render_prompts(tokenizer, messages(test) if messages else [e.messages for e in test])
    run = run_in_subprocess({"model": model, "dtype": dtype, "method": "none", "batch_size": 16, "progress": True,
                             "prompt_token_ids": ids, "max_tokens": [task.max_tokens] * len(ids)},
                            log_path=RESULTS / f"replay-{stem}-engines.log")
    data = {"task": task_name, "model": model, "dtype": dtype, "prompts": len(ids), "prompt_ids": ids,
            "output_ids": run["token_ids"]}
    path.write_text(json.dumps(data))
    return data


# A batch-1 step on this CPU, in units of one more verified token (verify-cost.json: about 40 ms
# flat up to 5 drafted tokens, then 2.3 ms per token): FIXED, PER_ROW, PER_TOKEN, KNEE.
BATCH1_COST = (17.0, 0.0, 1.0, 6.0)


def standalone_proposer(tokenizer, config, k: int, max_model_len: int = 8192, max_num_seqs: int = 1,
                        cost: tuple | None = BATCH1_COST):
    """TASC-spec outside an engine: a ``TascProposer`` given the few vLLM config fields it reads.
    A replay has no engine steps between the proposer's calls to time, so the learned policy's
    step-time model is fixed: the config's ``step_cost_model`` when set, else ``cost`` (None:
    left to the proposer's timer, for callers that time the proposer itself)."""
    from dataclasses import replace

    from tasc_vllm.proposer import TascProposer

    if cost is not None and not config.step_cost_model:
        config = replace(config, step_cost_model=",".join(f"{float(c):.9g}" for c in cost))

    vcfg = SimpleNamespace(speculative_config=SimpleNamespace(num_speculative_tokens=k),
                           model_config=SimpleNamespace(max_model_len=max_model_len,
                                                        get_vocab_size=lambda: len(tokenizer)),
                           scheduler_config=SimpleNamespace(max_num_seqs=max_num_seqs))
    return TascProposer(vcfg, tokenizer=tokenizer, config=config)


def replay(proposer, prompt_ids: list[list[int]], output_ids: list[list[int]], cost=None) -> dict:
    """Steps, drafts (steps that drafted), drafted and accepted tokens when ``proposer`` drafts
    for each request alone;
    with ``cost`` (fixed, per_row, per_token, knee: :mod:`tasc_vllm.step_timing`), also the
    modelled time of those steps (``time``) and of plain decoding (``plain_time``)."""
    steps = drafts = drafted = accepted = 0
    modelled = 0.0

    def step_time(tokens):
        return 0.0 if cost is None else cost[0] + cost[1] + cost[2] * max(0.0, tokens - cost[3])

    for prompt, out in zip(prompt_ids, output_ids):
        seq = np.asarray(prompt + out, dtype=np.int32)
        buf = np.zeros((1, seq.size + proposer.k + 2), dtype=np.int32)
        buf[0, : seq.size] = seq
        n = len(prompt) + 1  # the first output token comes from prefill
        gained = 1  # tokens the request gained in the last step, as vLLM passes them
        steps += 1
        modelled += step_time(1)
        while n < seq.size:
            (draft,) = proposer.propose([seq[n - gained : n].tolist()], np.array([n], dtype=np.int32), buf)
            a = 0
            while a < len(draft) and n + a < seq.size and draft[a] == seq[n + a]:
                a += 1
            drafts += bool(draft)
            drafted += len(draft)
            accepted += a
            modelled += step_time(1 + len(draft))
            gained = min(a + 1, seq.size - n)
            n += gained
            steps += 1
    tokens = sum(map(len, output_ids))
    return {"steps": steps, "drafts": drafts, "drafted": drafted, "accepted": accepted, "tokens": tokens,
            "time": modelled, "plain_time": tokens * step_time(1)}


def modelled_speedup(r: dict, overhead: float) -> float:
    base = r["tokens"] * (overhead + 1)
    spec = r["steps"] * (overhead + 1) + r["drafted"]
    return base / spec


def replay_estimate(tokenizer, prompt_ids: list[list[int]], output_ids: list[list[int]], settings: dict, k: int,
                    cost: list[float]) -> dict:
    """What the replay predicts for an engine run of TASC-spec at batch 1: its ``settings``
    (as the run recorded them, index included) drafting over the plain run's answers, each
    step priced by ``cost`` (the step-time model the engine's proposer measured).  Gives the
    modelled speed-up over plain decoding, the mean accepted length (tokens per step, as vLLM
    counts it: accepted + 1 per drafted step), the steps' modelled time (``seconds``, in the
    cost's unit) and the counts behind them."""
    from tasc_vllm.config import TascConfig

    keep = {k_: v for k_, v in settings.items() if k_ in TascConfig.__dataclass_fields__}
    cfg = TascConfig(**{**keep, "step_cost_model": "", "stats_path": "", "learned_path": ""})
    proposer = standalone_proposer(tokenizer, cfg, k, cost=tuple(cost))
    r = replay(proposer, prompt_ids, output_ids, cost)
    drafts = r["drafts"]
    return {"speedup": r["plain_time"] / r["time"] if r["time"] > 0 else None,
            "mean_accepted_length": 1 + r["accepted"] / drafts if drafts else None,
            "seconds": r["time"], "steps": r["steps"], "drafts": drafts, "drafted": r["drafted"], "accepted": r["accepted"],
            "step_cost": [float(c) for c in cost]}
