"""The ceilings of drafting from TASC-spec's sources, over recorded answers, without an engine.

A draft pays off through two choices: which token to put at each position, and when to
stop.  :func:`measure_index` measures both for one index over the model's answers: the share
of answer positions where each source's guess, or any candidate, is the model's next token
(:func:`score_positions`; the wider n-gram sets of :mod:`benchmarks.harness.followers` beside
them), and the modelled speed-ups of the default stop rule, of drafting while any candidate
exists, of the right candidate every time and of the oracle (:func:`stop_ceilings`, with
:mod:`benchmarks.harness.replay`'s cost model).  :func:`engine_terms` prices those scenarios
by the engine's own costs (:mod:`benchmarks.harness.step_cost`).  ``benchmarks.headroom``
measures them over the base model's answers, ``benchmarks.ft`` over each fine-tune's
(:func:`drafting_ceilings`).
"""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np

from benchmarks.harness.followers import SETS as WIDE_SETS
from benchmarks.harness.followers import wide_hits
from benchmarks.harness.replay import modelled_speedup, replay, standalone_proposer
from benchmarks.harness.step_cost import fit_step_cost, perfect_drafts

SHARES = ("choice", "context", "corpus", "either_top", "any_candidate", "text_match", "text_match_new",
          "whitespace")
DRAFT_WHILE_ANY = {"threshold": 0.0, "step_overhead": 0.0}  # no stop rule: draft while a candidate exists
TEXT_MATCH_CHARS = (24, 16, 12, 8, 6, 4)  # whitespace-free suffix lengths tried, longest first


def text_match_guess(history: str, min_chars: int = TEXT_MATCH_CHARS[-1]) -> str:
    """The characters that followed the latest earlier occurrence of the longest suffix of
    ``history`` (whitespace removed), or ``""``."""
    for n in TEXT_MATCH_CHARS:
        if n < min_chars or len(history) <= n:
            continue
        j = history.rfind(history[-n:], 0, len(history) - 1)
        if j >= 0:
            return history[j + n: j + n + 16]
    return ""


def score_positions(proposer, prompts, outputs, pieces) -> tuple[dict, list[list[bool]]]:
    """Shares of answer positions (after the first token, which prefill yields) where each
    source's guess is the model's next token, and for every answer whether any candidate was
    right at each of those positions.  ``proposer`` must draft one token whenever it has a
    candidate (``k=1``, no threshold, no step cost); ``pieces[t]``: token ``t``'s text without
    whitespace."""
    from tasc_vllm.kernels.lookups import longest_corpus_entry, request_guess

    cfg, table = proposer.cfg, proposer.table
    no_draft = np.zeros(1, np.int32)
    hits = dict.fromkeys(SHARES, 0)
    any_hits: list[list[bool]] = []
    n = 0
    for prompt, out in zip(prompts, outputs):
        answer_hits: list[bool] = []
        any_hits.append(answer_hits)
        seq = np.asarray(prompt + out, dtype=np.int32)
        buf = seq[None, :]
        history = "".join(pieces[t] for t in seq[: len(prompt) + 1])
        for pos in range(len(prompt) + 1, seq.size):
            true = int(seq[pos])
            n += 1
            # as after a step that gained seq[pos - 1]: observe it, then draft
            draft = proposer.propose([[int(seq[pos - 1])]], np.array([pos], np.int32), buf)[0]
            choice = draft[0] if draft else -1
            ptr, _, _ = request_guess(seq, pos, cfg.context_min_order, cfg.context_max_order, proposer.space)
            guess = int(seq[ptr]) if ptr >= 0 else -1
            entry, _ = longest_corpus_entry(seq, pos, no_draft, 0, table.slots, table.keys, cfg.max_order)
            top = [int(t) for t in table.nexts[entry] if t >= 0] if entry >= 0 else []
            text = pieces[true]
            matched = bool(text) and text_match_guess(history).startswith(text)
            hits["choice"] += choice == true
            hits["context"] += guess == true
            hits["corpus"] += bool(top) and top[0] == true
            hits["either_top"] += guess == true or (bool(top) and top[0] == true)
            answer_hits.append(guess == true or true in top)
            hits["any_candidate"] += answer_hits[-1]
            hits["text_match"] += matched
            hits["text_match_new"] += matched and choice != true
            hits["whitespace"] += not text
            history += text
    return {"positions": n, **{k: v / max(n, 1) for k, v in hits.items()}}, any_hits


def stop_ceilings(make_proposer, prompts, outputs, overhead: float, ceilings: dict, k: int) -> dict:
    """Modelled speed-ups of the default stop rule and of drafting while any candidate exists,
    each as drafted and cut exactly before the first wrong token; then, for each of
    ``ceilings`` (name: per answer, whether a candidate set held the next token at each
    position), the right candidate every time, cut before the first position none is right
    (``any_candidate``: the sources' ceiling), and the oracle.  Every scenario keeps its
    counts, for :func:`engine_terms`."""
    out = {}
    for name, settings in (("default", {}), ("longest", DRAFT_WHILE_ANY)):
        r = replay(make_proposer(settings), prompts, outputs)
        cut = dict(r, drafted=r["accepted"])
        out[name] = {"speedup": modelled_speedup(r, overhead), "speedup_cut": modelled_speedup(cut, overhead),
                     "mean_accepted_length": r["tokens"] / r["steps"], "steps": r["steps"], "drafted": r["drafted"],
                     "accepted": r["accepted"], "tokens": r["tokens"]}
    some = next(iter(ceilings.values()))
    for name, hits in {**ceilings, "oracle": [[True] * len(h) for h in some]}.items():
        r = perfect_drafts(hits, k)
        out[name] = {"speedup_cut": modelled_speedup(r, overhead), "mean_accepted_length": r["tokens"] / r["steps"],
                     **r}
    return out


def token_pieces(tokenizer) -> list[str]:
    """Each token's text without whitespace (for :func:`score_positions`)."""
    return [re.sub(r"\s", "", tokenizer.decode([t])) for t in range(len(tokenizer))]


def measure_index(tokenizer, cfg, prompts, outputs, k: int, overhead: float,
                  pieces: list[str] | None = None) -> tuple[dict, dict, dict]:
    """Everything this module measures for one index (``cfg.index``) over recorded greedy
    answers: the sources' shares (:func:`score_positions`), the wider candidate sets' shares
    and mean sizes (:func:`benchmarks.harness.followers.wide_hits`), and the stop rules' and ceilings'
    counts (:func:`stop_ceilings`) for :func:`engine_terms`.  ``pieces``: the tokenizer's
    :func:`token_pieces`, when the caller measures several indexes with it."""
    from tasc_vllm.index.index_file import read_index
    from tasc_vllm.index.ngram_cache import load_tokenized, whitespace_tokens

    def proposer(settings, k=k):
        return standalone_proposer(tokenizer, replace(cfg, **settings), k, cost=(overhead, 0.0, 1.0, 0.0))

    pieces = pieces if pieces is not None else token_pieces(tokenizer)
    shares, any_hits = score_positions(proposer(DRAFT_WHILE_ANY, k=1), prompts, outputs, pieces)
    corpus = load_tokenized(read_index(cfg.index), tokenizer, cfg.max_order, cfg.min_count).tokens
    wide = wide_hits(corpus, prompts, outputs, whitespace_tokens(tokenizer, len(tokenizer)), cfg.max_order)
    ceilings = {"any_candidate": any_hits, **{f"wide_{w}": v.pop("hits") for w, v in wide.items()}}
    return shares, wide, stop_ceilings(proposer, prompts, outputs, overhead, ceilings, k)


def engine_terms(stop: dict, runs: list[dict], source: str) -> dict:
    """The scenarios of :func:`stop_ceilings` priced by the engine's costs, fitted to
    ``runs`` (one task's runs of one batch size in a ``benchmarks.run`` result file), with
    that file's measured ratios to plain decoding beside them (the median over repeats).
    The replay drafts each answer alone, so the default rule's drafts are those of batch 1;
    the longest drafts, the sources' ceiling and the oracle do not depend on the batch.
    Runs that cannot be fitted raise ValueError, naming ``source`` and the batch size."""
    try:
        cost = fit_step_cost(runs)
    except ValueError as e:
        raise ValueError(f"{source}, batch {runs[0]['batch_size']}: {e}") from None
    speeds: dict[str, list[float]] = {}
    for r in runs:
        speeds.setdefault(r.get("label") or r["method"], []).append(r["tokens_per_second"])
    plain = float(np.median(speeds.pop("none")))
    measured = {label: float(np.median(v)) / plain for label, v in speeds.items()}

    def ratio(c: dict, drafted: int) -> float:
        # steps as the fit counts them (output tokens minus accepted ones: a request's last step
        # verifies its answer's end with no token of the model's own, so vLLM's counters cannot
        # tell it apart; its cost goes to the fitted per-request terms), not the replay's loops
        return cost.speedup(c["tokens"], c["tokens"] - c["accepted"], drafted)

    modelled = {"longest_cut": ratio(stop["longest"], stop["longest"]["accepted"])}
    for name in ("any_candidate", *(f"wide_{w}" for w in WIDE_SETS), "oracle"):
        if name in stop:  # files from before the wide sets have none
            modelled[name] = ratio(stop[name], stop[name]["drafted"])
    if cost.batch_size == 1:
        modelled.update(default=ratio(stop["default"], stop["default"]["drafted"]),
                        default_cut=ratio(stop["default"], stop["default"]["accepted"]))
    return {"source": source, "batch_size": cost.batch_size, "cost": cost.to_dict(), "measured": measured,
            "modelled": modelled}


def drafting_ceilings(tokenizer, cfg, prompts, outputs, k: int, runs: list[dict], source: str) -> dict:
    """The sources' shares and the drafting ceilings over one fine-tune's plain answers
    (:func:`measure_index`), priced by the engine costs fitted to its ``runs``
    (ratios to its own plain run); without a fit (fewer than two speculative methods), the
    shares alone and the reason."""
    shares, wide, stop = measure_index(tokenizer, cfg, prompts, outputs, k, overhead=12.0)
    out = {"shares": shares, "wide": wide}
    try:
        out["engine"] = engine_terms(stop, runs, source)
    except ValueError as e:
        out["no_engine_terms"] = str(e)
    return out
