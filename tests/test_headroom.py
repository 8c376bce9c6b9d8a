"""benchmarks.headroom and its measures (benchmarks.harness.ceilings) without an engine: the
whitespace-free text match, the per-position scores of the proposer's sources, and the result
file's settings check."""

import json
import re
from types import SimpleNamespace

import numpy as np
import pytest

from benchmarks.harness.ceilings import SHARES, score_positions, text_match_guess, token_pieces
from benchmarks.headroom import check_settings
from tasc_vllm.config import TascConfig
from tasc_vllm.index.index_file import write_index
from tasc_vllm.proposer import TascProposer

ANSWERS = ['{"name": "area", "arguments": {"base": %d, "height": %d}}' % (b, h)
           for b, h in [(10, 5), (3, 4), (7, 2), (12, 9)] * 3]


def test_text_match_ignores_whitespace_and_needs_an_earlier_occurrence():
    schema = re.sub(r"\s", "", '{"type": "integer", "description": "The base."}, "height": {"type"')
    answer = re.sub(r"\s", "", '{\n    "type": "integer",\n    "desc')
    assert text_match_guess(schema + answer) == 'ription":"Thebas'  # the 16 characters after the match
    assert text_match_guess("abcdefgh") == ""


def test_sources_are_scored_at_every_answer_position(tmp_path, tokenizer, isolated_cache):
    index = write_index(ANSWERS, tmp_path / "calls.tasc")
    cfg = TascConfig(index=str(index), policy="formula", threshold=0.0, step_overhead=0.0)
    vcfg = SimpleNamespace(speculative_config=SimpleNamespace(num_speculative_tokens=1),
                           model_config=SimpleNamespace(max_model_len=4096, get_vocab_size=lambda: len(tokenizer)),
                           scheduler_config=SimpleNamespace(max_num_seqs=1))
    proposer = TascProposer(vcfg, tokenizer=tokenizer, config=cfg)
    pieces = token_pieces(tokenizer)
    prompt = tokenizer.encode('Call area with base 8 and height 6. Schema: {"base": "int", "height": "int"}')
    answer = tokenizer.encode('{"name": "area",\n  "arguments": {"base": 8, "height": 6}}')
    got, hits = score_positions(proposer, [prompt], [answer], pieces)
    assert got["positions"] == len(answer) - 1
    assert set(SHARES) <= set(got) and all(0.0 <= got[k] <= 1.0 for k in SHARES)
    assert got["corpus"] > 0.5  # the answer's structure is the corpus's
    assert got["either_top"] >= max(got["context"], got["corpus"])
    assert got["any_candidate"] >= got["either_top"] >= got["choice"] > 0.5
    assert got["text_match_new"] <= got["text_match"]
    assert got["whitespace"] == sum(not pieces[t] for t in answer[1:]) / (len(answer) - 1) > 0
    assert len(hits) == 1 and len(hits[0]) == got["positions"]
    assert sum(hits[0]) / len(hits[0]) == pytest.approx(got["any_candidate"])


def test_a_result_file_of_other_settings_is_refused_and_one_of_the_same_kept(tmp_path):
    path = tmp_path / "headroom.json"
    assert check_settings(path, {"k": 16}) is None
    path.write_text(json.dumps({"kind": "headroom", "settings": {"k": 8}, "rows": []}))
    with pytest.raises(SystemExit, match="k: 8 there, 16 now"):
        check_settings(path, {"k": 16})
    assert check_settings(path, {"k": 8})["rows"] == []
    path.write_text(json.dumps({"settings": {"k": 8}, "tasks": []}))  # another benchmark's file
    with pytest.raises(SystemExit, match="not a headroom result file"):
        check_settings(path, {"k": 8})
    path.write_text("{not json")
    with pytest.raises(SystemExit, match="not a headroom result file"):
        check_settings(path, {"k": 8})
    path.write_text(json.dumps({"kind": "headroom", "settings": {"k": 8}, "rows": {}}))
    with pytest.raises(SystemExit, match="no list of rows"):
        check_settings(path, {"k": 8})


def _stop():
    counts = {"tokens": 7000, "steps": 2500, "drafted": 9000, "accepted": 4500}
    return {"default": counts, "longest": dict(counts, steps=2000, drafted=20000, accepted=5000),
            "any_candidate": dict(counts, steps=1500, drafted=5500, accepted=5500),
            "oracle": dict(counts, steps=450, drafted=6550, accepted=6550)}


def _runs(batch, prefill=12.0, step=0.035, per_draft=0.002):
    out = []
    for method, drafted, accepted in [("none", 0, 0), ("tasc", 9000, 4500), ("oracle", 6550, 6550), ("ngram", 18000, 4000)]:
        secs = prefill + step * (7000 - accepted) / batch + per_draft * drafted
        out.append({"method": method, "batch_size": batch, "seconds": secs, "output_tokens": 7000,
                    "tokens_per_second": 7000 / secs,
                    "spec_metrics": {"num_draft_tokens": drafted, "num_accepted_tokens": accepted} if drafted else {}})
    return out


def test_engine_terms_price_every_scenario_and_the_default_rule_at_batch_1_only():
    from benchmarks.harness.ceilings import engine_terms

    one = engine_terms(_stop(), _runs(1), "full.json")
    assert one["batch_size"] == 1 and one["source"] == "full.json"
    # the replay's default drafts are the measured TASC-spec run's counts here: the model gives its ratio
    assert one["modelled"]["default"] == pytest.approx(one["measured"]["tasc"])
    assert one["modelled"]["oracle"] == pytest.approx(one["measured"]["oracle"])
    assert one["modelled"]["default"] < one["modelled"]["default_cut"] < one["modelled"]["any_candidate"]
    sixteen = engine_terms(_stop(), _runs(16), "b16-clean.json")
    assert "default" not in sixteen["modelled"] and sixteen["modelled"]["any_candidate"] < one["modelled"]["any_candidate"]
    assert "wide_every" not in one["modelled"]  # a file from before the wider sets: priced without them


def test_engine_terms_price_the_wider_candidate_sets_between_the_sources_and_the_oracle():
    from benchmarks.harness.ceilings import engine_terms

    stop = _stop()
    stop["wide_longest"] = dict(stop["any_candidate"], steps=1200, drafted=5800, accepted=5800)
    stop["wide_every"] = dict(stop["any_candidate"], steps=900, drafted=6100, accepted=6100)
    for batch in (1, 16):
        m = engine_terms(stop, _runs(batch), "full.json")["modelled"]
        assert m["any_candidate"] < m["wide_longest"] < m["wide_every"] < m["oracle"]


def test_engine_results_are_named_with_their_batch_and_checked(tmp_path, monkeypatch):
    import benchmarks.headroom as headroom

    monkeypatch.setattr(headroom, "RESULTS", tmp_path)
    (tmp_path / "full.json").write_text(json.dumps({"settings": {"dtype": "bfloat16"},
                                                    "tasks": [{"task": "bfcl", "runs": _runs(1) + _runs(16)}]}))
    got = headroom.engine_runs("full:1,missing:1", "bfloat16")
    assert list(got) == ["bfcl"] and [(name, len(runs)) for name, runs in got["bfcl"]] == [("full.json", 4)]
    with pytest.raises(SystemExit, match="not NAME:BATCH"):
        headroom.engine_runs("full", "bfloat16")
    with pytest.raises(SystemExit, match="measured in bfloat16, this replay is float32"):
        headroom.engine_runs("full:1", "float32")
    (tmp_path / "other.json").write_text(json.dumps({"kind": "headroom", "rows": []}))
    with pytest.raises(SystemExit, match="not a benchmarks.run result file"):
        headroom.engine_runs("other:1", "bfloat16")


def test_engine_runs_that_cannot_price_the_drafts_are_named():
    from benchmarks.harness.ceilings import engine_terms

    with pytest.raises(ValueError, match="full.json, batch 1: need plain decoding"):
        engine_terms(_stop(), _runs(1)[1:], "full.json")


def test_a_fine_tunes_drafting_ceilings_are_priced_by_its_own_runs_and_reported(tmp_path, tokenizer, isolated_cache):
    from benchmarks.harness.ceilings import drafting_ceilings
    from benchmarks.sections.ft import ft_ceilings

    index = write_index(ANSWERS, tmp_path / "calls.tasc")
    prompts = [tokenizer.encode(f"Call area with base {b} and height {h}.") for b, h in [(8, 6), (2, 9)]]
    outputs = [tokenizer.encode('{"name": "area", "arguments": {"base": %d, "height": %d}}' % bh) for bh in [(8, 6), (2, 9)]]
    tokens = sum(map(len, outputs))
    runs = []
    for method, drafted, accepted in [("none", 0, 0), ("tasc", 30, 15), ("oracle", 28, 28)]:
        secs = 0.5 + 0.035 * (tokens - accepted) + 0.002 * drafted
        runs.append({"model": "tasc-ft", "method": method, "batch_size": 1, "seconds": secs, "output_tokens": tokens,
                     "tokens_per_second": tokens / secs, "requests_per_second": 2 / secs,
                     "spec_metrics": {"num_draft_tokens": drafted, "num_accepted_tokens": accepted} if drafted else {}})
    cfg = TascConfig(index=str(index))
    got = drafting_ceilings(tokenizer, cfg, prompts, outputs, 8, runs, "ft-test")
    m = got["engine"]["modelled"]
    # wider sets never cost steps; the oracle may tie the widest in steps with a draft token more
    assert 1.0 < m["any_candidate"] <= m["wide_longest"] <= m["wide_every"] <= m["oracle"] * 1.01
    assert got["engine"]["measured"]["oracle"] == pytest.approx(m["oracle"], rel=0.3)
    assert got["shares"]["any_candidate"] <= got["wide"]["every"]["share"]
    # in the report, as speed-ups over baseline-ft: this fine-tune's plain run is 2x baseline-ft's
    for r in runs:
        r["speedup_requests"] = 2.0 * r["requests_per_second"] / runs[0]["requests_per_second"]
    res = {"settings": {"k": 8}, "speed": runs, "ceilings": {"tasc-ft": got}}
    lines = ft_ceilings(res)
    row = next(line for line in lines if line.startswith("| tasc-ft |"))
    assert f"**{2 * m['any_candidate']:.2f}x**" in row and f"{2 * m['oracle']:.2f}x" in row
    assert any(line.startswith("Engine costs: tasc-ft: prompt processing 0.5 s, 35.0 ms a step") for line in lines)
    # two runs cannot be fitted: the shares stay, the reason is named
    alone = drafting_ceilings(tokenizer, cfg, prompts, outputs, 8, runs[:2], "ft-test")
    assert "engine" not in alone and "ft-test, batch 1: need plain decoding" in alone["no_engine_terms"]
    res["ceilings"]["tasc-ft"] = alone
    lines = ft_ceilings(res)
    assert any("Not priced" in line and "ft-test" in line for line in lines)
    row = next(line for line in lines if line.startswith("| tasc-ft |"))
    assert "| not priced | - | - | - | not priced |" in row and "**" not in row


def test_engine_terms_count_steps_as_the_fit_does_so_the_oracle_is_priced_as_measured():
    from benchmarks.harness.ceilings import engine_terms
    from benchmarks.harness.step_cost import perfect_drafts

    # short answers whose last draft reaches the end: the replay counts a step more per answer
    # than output tokens minus accepted ones, which is all vLLM's counters show
    oracle = perfect_drafts([[True] * 21] * 24, 8)
    assert oracle["steps"] > oracle["tokens"] - oracle["accepted"]
    stop = dict(_stop(), oracle=oracle)
    tokens = oracle["tokens"]
    runs = []
    for method, drafted, accepted in [("none", 0, 0), ("tasc", 300, 200), ("oracle", oracle["drafted"], oracle["accepted"])]:
        secs = 5.0 + 0.038 * (tokens - accepted) + 0.002 * drafted
        runs.append({"method": method, "batch_size": 1, "seconds": secs, "output_tokens": tokens,
                     "tokens_per_second": tokens / secs,
                     "spec_metrics": {"num_draft_tokens": drafted, "num_accepted_tokens": accepted} if drafted else {}})
    got = engine_terms(stop, runs, "ft.json")
    assert got["modelled"]["oracle"] == pytest.approx(got["measured"]["oracle"])
