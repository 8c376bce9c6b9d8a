"""TASC-spec's drafting replayed over recorded greedy outputs, without an engine.

Greedy verification accepts a draft's longest prefix that equals the model's own
continuation, so with the model's greedy outputs recorded once (one plain vLLM run, cached in
``benchmarks/results/replay-greedy-<task>[-<model>][-train].json``, which is not committed: it
is recorded again when missing), every proposer setting can be scored in seconds: steps,
drafted and accepted tokens, exactly as an engine would see them, at batch 1 or with requests
served several at a time (:func:`replay`).  The rivals drafted the same way are in
:mod:`benchmarks.harness.replay_drafters`.  A step's cost is modelled by
:mod:`tasc_vllm.step_timing`'s form (:data:`CPU_COST`); the engine benchmarks remain the
measure of record, this only ranks settings before spending engine time on them.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np

from benchmarks.harness.paths import RESULTS


def greedy_outputs(task_name: str, prompts: int, model: str, tokenizer, dtype: str, messages=None,
                   label: str = "", split: str = "test") -> dict:
    """The model's greedy answers to the first ``prompts`` prompts of a task's ``split``
    (``prompt_ids``, ``output_ids``): from the cache when it holds as many of this model's in
    ``dtype``, else recorded with one plain engine and cached.  ``messages(examples)``: the
    chat messages served (default: the task's); ``label`` names the model in the cache file
    (none: the default model)."""
    from tasc_vllm.eval.runner import render_prompts, run_in_subprocess
    from tasc_vllm.eval.tasks import get_task

    stem = "-".join(x for x in (task_name, label, "" if split == "test" else split) if x)
    path = RESULTS / f"replay-greedy-{stem}.json"
    task = get_task(task_name)
    test = task.load(split)[:prompts]
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


# A step on this CPU, in units of one more verified token: FIXED, PER_ROW, PER_TOKEN, KNEE, fitted
# to verify-cost.json's batch-1 and batch-16 steps (38 ms + 1.1 ms per row + 2.2 ms per verified
# token past 5; within 9 % of every measured step): at batch 1 about 40 ms flat up to 5 tokens.
CPU_COST = (17.4, 0.5, 1.0, 5.0)


def standalone_proposer(tokenizer, config, k: int, max_model_len: int = 8192, max_num_seqs: int = 1,
                        cost: tuple | None = CPU_COST):
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


def replay(drafter, prompt_ids: list[list[int]], output_ids: list[list[int]], cost=None, batch: int = 1) -> dict:
    """Steps, drafts (row-steps that drafted), drafted and accepted tokens when ``drafter``
    drafts for the requests served ``batch`` at a time, as vLLM's scheduler serves them: a
    request joins when a row is free (its prefill step yields its first token), each step
    verifies every row's draft, and a request that ends leaves its row to the batch's last row.
    ``drafter``: a ``TascProposer`` (``propose``) or any object with ``propose_rows``
    (:mod:`benchmarks.harness.replay_drafters`: the rival drafters, given the rows' request
    numbers and prompt lengths too).  With ``cost`` (fixed, per_row, per_token, knee:
    :mod:`tasc_vllm.step_timing`), also the modelled time of those steps (``time``) and of
    plain decoding at the same batch size (``plain_time``)."""
    stats = _serve(drafter, prompt_ids, output_ids, cost, batch)
    stats["plain_time"] = _serve(None, prompt_ids, output_ids, cost, batch)["time"] if cost is not None else 0.0
    return stats


def _serve(drafter, prompt_ids, output_ids, cost, batch: int) -> dict:
    """:func:`replay`'s counts and modelled time for one drafter (None: plain decoding)."""
    if batch < 1:
        raise ValueError(f"batch must be at least 1 (got {batch})")
    seqs = [np.asarray(p + o, dtype=np.int32) for p, o in zip(prompt_ids, output_ids)]
    k = getattr(drafter, "k", 0)
    buf = np.zeros((batch, max((s.size for s in seqs), default=1) + k + 2), dtype=np.int32)
    rows: list[list[int]] = []  # per row: [request, tokens known, tokens gained by the last step]
    drafts: list[list[int]] = []
    waiting = iter(range(len(seqs)))
    steps = n_drafts = drafted = accepted = 0
    modelled = 0.0
    while True:
        verified = 0
        for i, (req, n, _) in enumerate(rows):  # verify the drafts the last call made
            seq, draft = seqs[req], drafts[i]
            a = accepted_length(draft, seq, n)
            n_drafts += bool(draft)
            drafted += len(draft)
            accepted += a
            verified += 1 + len(draft)
            gained = min(a + 1, seq.size - n)
            buf[i, n:n + gained] = seq[n:n + gained]
            rows[i] = [req, n + gained, gained]
        # requests join while a row is free (a row that ended in this step frees it after the
        # step): their prefill yields a first token
        while len(rows) < batch and (req := next(waiting, None)) is not None:
            n = len(prompt_ids[req]) + 1
            buf[len(rows), :] = 0
            buf[len(rows), :n] = seqs[req][:n]
            rows.append([req, n, 1])
            verified += 1
        if not rows:
            break
        steps += 1
        if cost is not None:
            modelled += cost[0] + cost[1] * len(rows) + cost[2] * max(0.0, verified - cost[3])
        i = 0
        while i < len(rows):  # a request that ended leaves; the last row takes its place
            if rows[i][1] >= seqs[rows[i][0]].size:
                last = len(rows) - 1
                if i != last:
                    buf[i] = buf[last]
                    rows[i] = rows[last]
                rows.pop()
            else:
                i += 1
        if not rows:
            continue
        sampled = [buf[i, n - g:n].tolist() for i, (_, n, g) in enumerate(rows)]
        lengths = np.array([n for _, n, _ in rows], dtype=np.int32)
        if drafter is None:
            drafts = [[] for _ in rows]
        elif hasattr(drafter, "propose_rows"):
            drafts = drafter.propose_rows(sampled, lengths, buf,
                                          [(req, len(prompt_ids[req])) for req, _, _ in rows])
        else:
            drafts = drafter.propose(sampled, lengths, buf)
    return {"steps": steps, "drafts": n_drafts, "drafted": drafted, "accepted": accepted,
            "tokens": sum(map(len, output_ids)), "time": modelled}


def accepted_length(draft, seq, n: int) -> int:
    """How many of ``draft``'s tokens greedy verification accepts after ``seq[:n]``."""
    a = 0
    while a < len(draft) and n + a < len(seq) and draft[a] == seq[n + a]:
        a += 1
    return a


def modelled_speedup(r: dict, overhead: float) -> float:
    base = r["tokens"] * (overhead + 1)
    spec = r["steps"] * (overhead + 1) + r["drafted"]
    return base / spec


def replay_estimate(tokenizer, prompt_ids: list[list[int]], output_ids: list[list[int]], settings: dict, k: int,
                    cost: list[float], batch: int = 1) -> dict:
    """What the replay predicts for an engine run of TASC-spec at ``batch``: its ``settings``
    (as the run recorded them, index included) drafting over the plain run's answers, served
    ``batch`` at a time, each step priced by ``cost`` (the step-time model the engine's
    proposer measured).  Gives the modelled speed-up over plain decoding, the mean accepted
    length (tokens per step, as vLLM counts it: accepted + 1 per drafted step), the steps'
    modelled time (``seconds``, in the cost's unit) and the counts behind them."""
    from tasc_vllm.config import TascConfig

    keep = {k_: v for k_, v in settings.items() if k_ in TascConfig.__dataclass_fields__}
    cfg = TascConfig(**{**keep, "step_cost_model": "", "stats_path": "", "learned_path": ""})
    proposer = standalone_proposer(tokenizer, cfg, k, max_num_seqs=batch, cost=tuple(cost))
    r = replay(proposer, prompt_ids, output_ids, cost, batch)
    drafts = r["drafts"]
    return {"speedup": r["plain_time"] / r["time"] if r["time"] > 0 else None,
            "mean_accepted_length": 1 + r["accepted"] / drafts if drafts else None,
            "seconds": r["time"], "steps": r["steps"], "drafts": drafts, "drafted": r["drafted"], "accepted": r["accepted"],
            "step_cost": [float(c) for c in cost]}
