"""benchmarks.headroom without an engine: the whitespace-free text match, the per-position
scores of the proposer's sources, and the result file's settings check."""

import json
import re
from types import SimpleNamespace

import numpy as np
import pytest

from benchmarks.headroom import SHARES, check_settings, score_positions, text_match_guess
from tasc_vllm.config import TascConfig
from tasc_vllm.index_file import write_index
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
    cfg = TascConfig(index=str(index), threshold=0.0, step_overhead=0.0)
    vcfg = SimpleNamespace(speculative_config=SimpleNamespace(num_speculative_tokens=1),
                           model_config=SimpleNamespace(max_model_len=4096, get_vocab_size=lambda: len(tokenizer)),
                           scheduler_config=SimpleNamespace(max_num_seqs=1))
    proposer = TascProposer(vcfg, tokenizer=tokenizer, config=cfg)
    pieces = [re.sub(r"\s", "", tokenizer.decode([t])) for t in range(len(tokenizer))]
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
    from benchmarks.headroom import engine_terms

    one = engine_terms(_stop(), _runs(1), "full.json")
    assert one["batch_size"] == 1 and one["source"] == "full.json"
    # the replay's default drafts are the measured TASC-spec run's counts here: the model gives its ratio
    assert one["modelled"]["default"] == pytest.approx(one["measured"]["tasc"])
    assert one["modelled"]["oracle"] == pytest.approx(one["measured"]["oracle"])
    assert one["modelled"]["default"] < one["modelled"]["default_cut"] < one["modelled"]["any_candidate"]
    sixteen = engine_terms(_stop(), _runs(16), "b16-clean.json")
    assert "default" not in sixteen["modelled"] and sixteen["modelled"]["any_candidate"] < one["modelled"]["any_candidate"]


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
    from benchmarks.headroom import engine_terms

    with pytest.raises(SystemExit, match="full.json, batch 1: need plain decoding"):
        engine_terms(_stop(), _runs(1)[1:], "full.json")
