"""The learned drafting policy: the scorer trained on the corpus, its cache, the batch cut by
step cost, the measured step time, and the scorer's online updates and saved state."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from tasc_vllm.config import TascConfig
from tasc_vllm.errors import TascError
from tasc_vllm.index.index_file import read_index, write_index
from tasc_vllm.kernels.calibration import new_calibration
from tasc_vllm.kernels.candidates import FEATURE_SET, FEATURES, NUM_FEATURES
from tasc_vllm.kernels.learned_drafting import cut_batch
from tasc_vllm.proposer import TascProposer
from tasc_vllm.step_timing import MIN_SAMPLES, StepTimer, parse_cost_model

from test_proposer import rows, vllm_config

STREETS = ["Main", "Oak", "Pine", "Maple", "Cedar", "Elm", "Birch", "Walnut", "Spruce", "Willow", "Ash", "Poplar"]
CITIES = ["Springfield", "Riverton", "Lakeside", "Hillcrest", "Fairview", "Greenville", "Bristol", "Clayton"]


def address_examples(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """(prompt, answer) pairs where the answer labels words copied from the prompt: the
    request's own matches decide most tokens, the corpus the labels around them."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        num, street, city = int(rng.integers(1, 9999)), STREETS[rng.integers(len(STREETS))], CITIES[rng.integers(len(CITIES))]
        prompt = f"Label the parts of this address: {num} {street} St {city}"
        answer = json.dumps({"AddressNumber": str(num), "StreetName": street, "StreetNamePostType": "St",
                             "PlaceName": city, "Line": f"{num} {street} St {city}"})
        out.append((prompt, answer))
    return out


@pytest.fixture
def prompted_index(tmp_path):
    pairs = address_examples(120)
    return write_index([a for _, a in pairs], tmp_path / "addr-prompts.tasc", prompts=[p for p, _ in pairs])


def learned(index_path, tokenizer, **cfg):
    cfg.setdefault("step_cost_model", "16,0,1,4")
    return TascProposer(vllm_config(**{k: cfg.pop(k) for k in list(cfg) if k in ("k", "max_model_len", "max_num_seqs")}),
                        tokenizer=tokenizer, config=TascConfig(index=str(index_path), policy="learned", **cfg))


def chat_rows(tokenizer, prompt: str, answer_so_far: str):
    text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                         add_generation_prompt=True) + answer_so_far
    return rows(tokenizer, [text], max_model_len=512)


def test_the_index_keeps_the_prompts_and_their_checksum(prompted_index, tmp_path):
    index = read_index(prompted_index)
    assert index.has_prompts and index.prompts()[0].startswith("Label the parts")
    assert len(index.prompts()) == len(index)
    plain = read_index(write_index(["a", "b"], tmp_path / "plain.tasc"))
    assert not plain.has_prompts and plain.prompts() is None and plain.prompts_hash == ""
    with pytest.raises(TascError, match="2 prompts for 3 texts"):
        write_index(["a", "b", "c"], tmp_path / "x.tasc", prompts=["p", "q"])


def test_the_learned_policy_copies_the_request_and_labels_from_the_corpus(prompted_index, tokenizer, isolated_cache):
    p = learned(prompted_index, tokenizer, learn_entries=0)
    info = p.scorer_info
    assert info["prompts"] and info["positions"] > 1000 and not info["cached"]
    assert info["top_candidate_right"] > 0.8  # held-out answers, replayed with their prompts
    assert info["trees"] > 0 and not p.weights.any()  # an ensemble, its online term not yet moved
    split_on = {FEATURES[f] for f in p.trees.feature[p.trees.left >= 0]}
    assert {"request's guess", "request's match length"} & split_on  # trusting the request was learned
    # an address the corpus does not hold: the labels come from the corpus, the words from the prompt
    prompt = "Label the parts of this address: 4321 Cedar St Clayton"
    tok, n = chat_rows(tokenizer, prompt, '{"AddressNumber": "4321", "StreetName": "Cedar')
    (d,) = p.propose([[1]], n, tok)
    assert tokenizer.decode(d).startswith('", "StreetNamePostType":')
    tok, n = chat_rows(tokenizer, prompt, '{"AddressNumber": "4321", "StreetName": "Cedar", '
                                          '"StreetNamePostType": "St", "PlaceName": "Clayton", "Line": "4321 Cedar')
    (d,) = p.propose([[1]], n, tok)
    assert tokenizer.decode(d).startswith(' St Clayton"}')
    # digits come from the prompt, whatever numbers the corpus counted after the same key
    tok, n = chat_rows(tokenizer, prompt, '{"AddressNumber": "43')
    (d,) = p.propose([[1]], n, tok)
    assert tokenizer.decode(d).startswith('21"')


def test_the_scorer_is_cached_and_retrained_for_another_feature_set(prompted_index, tokenizer, isolated_cache):
    first = learned(prompted_index, tokenizer, learn_entries=0)
    again = learned(prompted_index, tokenizer, learn_entries=0)
    assert again.scorer_info["cached"] and np.array_equal(again.weights, first.weights)
    assert all(np.array_equal(a, b) for a, b in zip(again.trees, first.trees))
    assert first.echo.keys.size > 0 and all(np.array_equal(a, b) for a, b in zip(again.echo, first.echo))
    (path,) = (isolated_cache / "ngram").glob("scorer-*.npz")
    with np.load(path) as z:
        meta = json.loads(z["meta"].tobytes())
    meta["identity"]["feature_set"] = "v0:another"
    np.savez(path, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), weights=np.ones(NUM_FEATURES))
    retrained = learned(prompted_index, tokenizer, learn_entries=0)
    assert not retrained.scorer_info["cached"] and np.allclose(retrained.weights, first.weights)
    assert all(np.array_equal(a, b) for a, b in zip(retrained.trees, first.trees))  # the same fit again


def test_a_corrupt_scorer_is_refused_naming_the_file(prompted_index, tokenizer, isolated_cache):
    learned(prompted_index, tokenizer, learn_entries=0)
    (path,) = (isolated_cache / "ngram").glob("scorer-*.npz")
    path.write_bytes(b"not a zip")
    with pytest.raises(TascError, match=f"scorer {path} is corrupt"):
        learned(prompted_index, tokenizer, learn_entries=0)


def test_a_scorer_whose_trees_cannot_be_walked_is_refused(prompted_index, tokenizer, isolated_cache):
    learned(prompted_index, tokenizer, learn_entries=0)
    (path,) = (isolated_cache / "ngram").glob("scorer-*.npz")
    with np.load(path) as z:
        arrays = dict(z)
    inner = int(np.flatnonzero(arrays["tree_left"] >= 0)[-1])
    arrays["tree_left"][inner] = inner  # a node that is its own child: a walk would never end
    np.savez(path, **arrays)
    with pytest.raises(TascError, match=f"scorer {path} is corrupt.*out of order"):
        learned(prompted_index, tokenizer, learn_entries=0)


def test_a_scorer_whose_echo_table_cannot_be_read_is_refused(prompted_index, tokenizer, isolated_cache):
    learned(prompted_index, tokenizer, learn_entries=0)
    (path,) = (isolated_cache / "ngram").glob("scorer-*.npz")
    with np.load(path) as z:
        arrays = dict(z)
    arrays["echo_keys"] = arrays["echo_keys"][::-1].copy()  # a binary search would miss keys
    np.savez(path, **arrays)
    with pytest.raises(TascError, match=f"scorer {path} is corrupt.*not ascending"):
        learned(prompted_index, tokenizer, learn_entries=0)


@pytest.mark.parametrize("damage, message", [
    (lambda a: a.pop("copy_weights"), "copy_weights"),  # a scorer saved without its copy table
    (lambda a: a.update(copy_anchors=a["copy_anchors"][:, :2].copy()), "mismatched shapes"),
])
def test_a_scorer_whose_copy_table_cannot_be_read_is_refused(prompted_index, tokenizer, isolated_cache, damage,
                                                            message):
    learned(prompted_index, tokenizer, learn_entries=0)
    (path,) = (isolated_cache / "ngram").glob("scorer-*.npz")
    with np.load(path) as z:
        arrays = dict(z)
    damage(arrays)
    np.savez(path, **arrays)
    with pytest.raises(TascError, match=f"scorer {path} is corrupt.*{message}"):
        learned(prompted_index, tokenizer, learn_entries=0)


def test_the_exported_trees_score_as_scikit_learn_does():
    from sklearn.ensemble import HistGradientBoostingClassifier

    from tasc_vllm.index.policy import check_trees, export_trees, scores

    rng = np.random.default_rng(0)
    X = rng.random((3000, NUM_FEATURES))
    X[:, 5] = rng.integers(0, 3, 3000)  # ties on a threshold go left, as in scikit-learn
    y = (X[:, 1] + 0.5 * X[:, 5] * X[:, 9] + 0.2 * rng.standard_normal(3000) > 0.9).astype(float)
    model = HistGradientBoostingClassifier(max_iter=20, max_depth=4, early_stopping=False, random_state=0).fit(X, y)
    trees = export_trees(model)
    check_trees(trees)
    assert trees.roots.shape[0] == 20
    assert np.allclose(scores(trees, np.zeros(NUM_FEATURES), X), model.decision_function(X), atol=1e-9)


def test_an_index_without_prompts_trains_on_answers_and_says_so(tmp_path, tokenizer, isolated_cache, caplog):
    index = write_index([a for _, a in address_examples(60)], tmp_path / "answers.tasc")
    with caplog.at_level(logging.INFO, logger="tasc_vllm"):
        p = learned(index, tokenizer, learn_entries=0)
    said = [r.getMessage() for r in caplog.records if "holds no prompts" in r.getMessage()]
    assert len(said) == 1 and str(index) in said[0]
    assert not p.scorer_info["prompts"] and p.scorer_info["positions"] > 0


def brute_force_cut(n_rows, conf, cost):
    """The best lengths per row by trying every combination (tiny cases only)."""
    import itertools

    fixed, per_row, per_token, knee = cost
    best = None
    for lens in itertools.product(*[range(len(c) + 1) for c in conf]):
        expected = n_rows + sum(sum(c[:L]) for c, L in zip(conf, lens))
        t = fixed + per_row * n_rows + per_token * max(0.0, n_rows + sum(lens) - knee)
        if best is None or expected / t > best[0] + 1e-12:
            best = (expected / t, lens)
    return list(best[1])


@pytest.mark.parametrize("cost", [(16, 0, 1, 4), (16, 0, 1, 1), (2, 0, 1, 1), (40, 3, 2.3, 6), (80, 0, 35, 16)])
def test_the_batch_cut_keeps_the_lengths_with_the_most_tokens_per_time(cost):
    rng = np.random.default_rng(1)
    for n_rows in (1, 2, 3):
        conf = [np.cumprod(rng.uniform(0.5, 1.0, size=4)) for _ in range(n_rows)]
        out_len = np.array([4] * n_rows, dtype=np.int32)
        out_conf = np.zeros((n_rows, 4))
        for i, c in enumerate(conf):
            out_conf[i] = c
        cut_batch(n_rows, n_rows, out_len, out_conf, new_calibration(), np.array(cost, dtype=np.float64))
        assert out_len.tolist() == brute_force_cut(n_rows, conf, cost), (cost, n_rows)


def test_a_bigger_batch_drafts_less_per_row():
    conf = np.tile(np.cumprod(np.full(8, 0.9)), (16, 1))
    cost = np.array([40.0, 0.0, 2.3, 6.0])
    one = np.array([8], dtype=np.int32)
    cut_batch(1, 1, one, conf[:1].copy(), new_calibration(), cost)
    many = np.full(16, 8, dtype=np.int32)
    cut_batch(16, 16, many, conf.copy(), new_calibration(), cost)
    assert one[0] >= 6 and many.max() < one[0]


def test_the_step_timer_recovers_the_engine_cost_model():
    rng = np.random.default_rng(0)
    timer = StepTimer()
    assert not timer.measured and timer.cost()[3] > 0  # the prior until enough steps are seen
    assert timer.predict(16, 16) > timer.predict(1, 16)  # where a row costs something
    for _ in range(400):
        rows_ = int(rng.integers(1, 17))
        tokens = rows_ + int(rng.integers(0, 6 * rows_ + 1))
        true = 0.040 + 0.001 * rows_ + 0.0023 * max(0, tokens - 8)
        timer.record(rows_, tokens, true * rng.uniform(0.97, 1.03))
    fixed, per_row, per_token, knee = timer.cost()
    assert timer.measured and timer.samples >= MIN_SAMPLES
    assert knee == 8 and abs(per_token - 0.0023) < 0.0003 and abs(fixed - 0.040) < 0.005
    timer.record(4, 10, 5.0)  # an idle gap or a prefill: left out
    assert timer.cost()[0] == fixed


def test_the_step_timer_fits_a_batch_of_16_and_bounds_what_a_token_costs():
    """A batch of 16 verifies 16 tokens or more in every step, so no step shows the flat part
    of a step directly; and a few slow steps past a high knee cannot make a token dearer than
    the flat part of a step allows."""
    rng = np.random.default_rng(1)
    timer = StepTimer()
    for _ in range(600):
        rows_ = 16
        tokens = rows_ + int(rng.poisson(20))
        true = 0.080 + 0.0022 * max(0, tokens - 16)
        timer.record(rows_, tokens, true * rng.uniform(0.97, 1.03))
    fixed, per_row, per_token, knee = timer.cost()
    assert abs(per_token - 0.0022) < 0.0004
    assert abs(timer.predict(16, 40) - (0.080 + 0.0022 * 24)) < 0.01

    slow = StepTimer()
    for i in range(300):  # no drafts past 64 tokens but three steps, made slow by something else
        tokens = 70 if i % 100 == 0 else 16 + int(rng.integers(0, 20))
        seconds = 0.9 if tokens == 70 else 0.080 + 0.0022 * (tokens - 16)
        slow.record(16, tokens, seconds * rng.uniform(0.97, 1.03))
    fixed, per_row, per_token, knee = slow.cost()
    assert per_token * knee <= fixed + per_row * 16 + 1e-9
    assert per_token < 0.01  # the three slow steps alone would price a token past 64 at about 0.1 s


def test_the_step_rows_tell_requests_that_joined(prompted_index, tokenizer, isolated_cache):
    """vLLM gives no request ids and moves rows when a request leaves: the rows are matched by
    their lengths and last tokens; a step in which a request joined (its prompt prefilled) or
    a row still prefilled in chunks is not timed."""
    from tasc_vllm.step_timing import StepRows

    toks = np.zeros((4, 64), dtype=np.int32)
    toks[0, :41], toks[1, :52], toks[2, :30] = 7, 8, 9
    before = StepRows(np.array([40, 52, 30]), toks, [3, 0, 5])
    after = toks.copy()  # request 2 left; request 1 moved to row 0 and gained 1; a request joined in row 1
    after[0, :53] = 8
    after[1, :19] = 5
    after[2, :44] = 7  # request 0 moved to row 2 and gained 4 (3 drafts accepted)
    assert before.step([1, 1, 4], np.array([53, 19, 44]), after) == (3, 1 + 0 + 1 + 1 + 3, 1)
    assert before.step([0, 1, 4], np.array([52, 19, 44]), after) is None  # row 0 still prefilling
    same_length = after.copy()
    same_length[1, :41] = 5  # a joined request whose prompt is as long as request 0 was, but ends otherwise
    assert before.step([1, 1], np.array([53, 41]), same_length)[2] == 1

    p = learned(prompted_index, tokenizer, step_cost_model="")
    first, n_first = chat_rows(tokenizer, "Label the parts of this address: 77 Larch St Oakham", '{"AddressNumber": "77"')
    second, n_second = chat_rows(tokenizer, "Label the parts of this address: 9 Elm Rd Bristol", '{"AddressNumber": "9"')
    end = int(n_first[0]) - 6
    for end in range(end, end + 6):  # one request, a token a step: 5 steps timed, none prefilled a prompt
        p.propose([[int(first[0, end - 1])]], np.array([end], dtype=np.int32), first)
    assert p.timer.samples == 5
    end = int(n_second[0]) - 6  # the next request in the same row: its first step prefilled it
    p.propose([[int(second[0, end - 1])]], np.array([end], dtype=np.int32), second)
    assert p.timer.samples == 5  # not timed: the step prefilled its prompt
    p.propose([[int(second[0, end])]], np.array([end + 1], dtype=np.int32), second)
    assert p.timer.samples == 6


def test_a_fixed_step_cost_model_is_checked():
    assert parse_cost_model("") is None
    assert parse_cost_model("16,0,1,4").tolist() == [16, 0, 1, 4]
    for bad in ("16,0,1", "a,b,c,d", "-1,0,1,4", "0,0,0,4"):
        with pytest.raises(TascError, match="step_cost_model"):
            TascConfig(index="x", step_cost_model=bad)
    with pytest.raises(TascError, match="policy must be"):
        TascConfig(index="x", policy="best")


def test_serving_updates_the_scorer_and_the_learned_state_keeps_it(prompted_index, tokenizer, isolated_cache, tmp_path):
    state = tmp_path / "learned.npz"
    p = learned(prompted_index, tokenizer, learned_path=str(state))
    trained = p.weights.copy()
    prompt = "Label the parts of this address: 77 Larch St Oakham"
    answer = '{"AddressNumber": "77", "StreetName": "Larch", "StreetNamePostType": "St", "PlaceName": "Oakham"}'
    tok, n = chat_rows(tokenizer, prompt, answer)
    start = int(n[0]) - 20
    for end in range(start, int(n[0]) + 1):  # the request gains one token a step
        p.propose([[int(tok[0, end - 1])]], np.array([end], dtype=np.int32), tok)
    assert not np.array_equal(p.weights, trained)
    p.save_learned(str(state))
    resumed = learned(prompted_index, tokenizer, learned_path=str(state))
    assert resumed.scorer_info["resumed"] and np.array_equal(resumed.weights, p.weights)
    assert np.array_equal(resumed.anchor, trained)  # online steps are pulled towards the trained weights
    with np.load(state) as z:
        assert z["feature_set"].tobytes().decode().startswith(FEATURE_SET + "|trees:")
        arrays = dict(z)
    arrays["feature_set"] = np.frombuffer(f"{FEATURE_SET}|trees:another".encode(), dtype=np.uint8)
    np.savez(state, **arrays)  # online weights saved beside another ensemble
    again = learned(prompted_index, tokenizer, learned_path=str(state))
    assert not again.scorer_info["resumed"] and np.array_equal(again.weights, trained)


def test_no_token_below_the_batch_rate_is_drafted():
    from tasc_vllm.step_timing import worth_drafting

    cost = np.array([80.0, 0.0, 2.2, 6.0])
    assert worth_drafting(cost, 1) == 0.0  # under the knee a drafted token may be free
    floor = worth_drafting(cost, 64)
    assert 0.6 < floor < 0.75  # 2.2 * 64 / (80 + 2.2 * 58)
    # the cut agrees: a token just below the floor is never kept
    conf = np.full((64, 1), floor * 0.99)
    out_len = np.ones(64, dtype=np.int32)
    cut_batch(64, 64, out_len, conf, new_calibration(), cost)
    assert out_len.sum() == 0


def test_kernel_caches_are_dropped_when_any_kernel_source_changes(tmp_path, monkeypatch):
    from tasc_vllm.kernels import drop_stale_caches

    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "__pycache__").mkdir()
    stale = tmp_path / "__pycache__" / "a.f-1.py311.nbi"
    stale.write_bytes(b"old")
    assert drop_stale_caches(tmp_path) and not stale.exists()
    fresh = tmp_path / "__pycache__" / "a.f-1.py311.1.nbc"
    fresh.write_bytes(b"new")
    assert not drop_stale_caches(tmp_path) and fresh.exists()  # same sources: kept
    (tmp_path / "b.py").write_text("y = 2\n")  # another kernel module changed
    assert drop_stale_caches(tmp_path) and not fresh.exists()


def test_an_engine_run_gets_the_replays_estimate_beside_it(prompted_index, tokenizer, isolated_cache):
    """benchmarks.run prices each TASC-spec run by replaying its settings over the answers of
    the plain run of its batch size, served as many at a time, with the step cost its proposer
    measured; the report shows both."""
    from benchmarks.run import add_replay_estimates
    from benchmarks.sections.offline import replay_gap

    pairs = address_examples(6, seed=7)
    prompts = [tokenizer.encode(tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                                              add_generation_prompt=True), add_special_tokens=False)
               for p, _ in pairs]
    answers = [tokenizer.encode(a, add_special_tokens=False) + [tokenizer.eos_token_id] for _, a in pairs]
    settings = TascConfig(index=str(prompted_index), learn_entries=0).to_dict()
    cost = [0.040, 0.0, 0.0023, 6.0]  # seconds: flat up to 6 verified tokens, then 2.3 ms per token
    plain_seconds = 0.035 * sum(map(len, answers))  # a plain step cheaper than the model's step without drafts
    runs = [{"method": "none", "batch_size": 1, "repeat": 0, "token_ids": answers, "tokens_per_second": 10.0,
             "seconds": plain_seconds},
            {"method": "tasc", "batch_size": 1, "repeat": 0, "tasc_settings": settings, "tokens_per_second": 30.0,
             "seconds": 1.3,
             "proposer": {"step_cost": cost}, "spec_metrics": {"mean_acceptance_length": 4.0}},
            {"method": "tasc", "batch_size": 16, "repeat": 0, "tasc_settings": settings, "tokens_per_second": 90.0,
             "proposer": {"step_cost": cost}},
            {"method": "tasc", "batch_size": 4, "repeat": 0, "tasc_settings": settings, "tokens_per_second": 60.0,
             "seconds": 0.5, "proposer": {"step_cost": cost}},
            {"method": "none", "batch_size": 4, "repeat": 0, "token_ids": answers, "tokens_per_second": 20.0,
             "seconds": plain_seconds / 2}]
    add_replay_estimates(runs, tokenizer, prompts, 16)
    est = runs[1]["replay"]
    assert "replay" not in runs[0] and "replay" not in runs[2]  # no plain run at batch 16: nothing to replay
    together = runs[3]["replay"]  # four answers at a time: fewer steps, still drafted
    assert together["steps"] < est["steps"] and together["accepted"] > 0
    tokens = sum(map(len, answers))
    assert est["steps"] < tokens and est["accepted"] > tokens / 2  # the labels and the copied words are drafted
    assert est["mean_accepted_length"] == pytest.approx(1 + est["accepted"] / est["drafts"])
    # the modelled speed-up is plain decoding's steps over these steps, priced by the cost given
    assert 1.5 < est["speedup"] <= tokens / est["steps"]
    assert est["step_cost"] == cost
    # the modelled time: a step without drafts (each answer's first, from prefill, among them) at
    # the model's 40 ms, a drafted step at 40 ms plus 2.3 per token past 6
    assert est["steps"] * 0.040 <= est["seconds"] <= est["steps"] * 0.040 + 0.0023 * est["drafted"]
    assert est["speedup"] == pytest.approx(0.040 * tokens / est["seconds"])
    table = replay_gap(runs)
    assert table[2].startswith("| batch | method | seconds, measured | replay | speed-up (tokens/s), measured |")
    # the replay's speed-up: the plain run's measured time over the replay's modelled time
    assert table[4] == (f"| 1 | tasc | 1.3 | {est['seconds']:.1f} | 3.00 | {plain_seconds / est['seconds']:.2f} | "
                        f"4.00 | {est['mean_accepted_length']:.2f} |")
    assert table[5].startswith(f"| 4 | tasc | 0.5 | {together['seconds']:.1f} | 3.00 | "
                               f"{plain_seconds / 2 / together['seconds']:.2f} |")
    assert "†" not in "\n".join(table) and "‡" not in "\n".join(table)
    # a run too short to time its steps: its cost is the unitless prior, so no time, the modelled ratio
    runs[3]["proposer"]["step_cost_measured"] = False
    table = replay_gap(runs)
    assert table[5].split(" | ")[2:6] == ["0.5", "-", "3.00", f"{together['speedup']:.2f}‡"]
    assert table[-2].startswith("‡ the run was too short") and table[4].split(" | ")[3] == f"{est['seconds']:.1f}"
    runs[3]["proposer"]["step_cost_measured"] = True
    del est["seconds"]  # a file from before the replay recorded its time: the model's own plain price, marked
    table = replay_gap(runs)
    assert table[4].split(" | ")[5] == f"{est['speedup']:.2f}†" and table[-2].startswith("† measured before")
    assert replay_gap(runs[:1]) == []  # no TASC-spec run, no table


def test_the_input_is_read_where_the_answer_left_it(tokenizer):
    """The input-reading source: after a label, the input's next word after the last value
    the answer copied, written as after a quote (" Cedar" is "C" + "edar" there); inside a
    value, the input's next token, also in the middle of a word written with other tokens."""
    from tasc_vllm.index.ngram_cache import input_text, token_classes, token_texts
    from tasc_vllm.kernels.input_reading import answer_start, next_input_token, no_input_text

    texts = token_texts(tokenizer, len(tokenizer))
    classes = token_classes(tokenizer, len(tokenizer), texts)
    text = input_text(tokenizer, len(tokenizer), texts)
    prompt = "Label the parts of this address: 4321 Cedar St Clayton"

    def first(word):
        return tokenizer.encode(word, add_special_tokens=False)

    def read(answer, text=text):
        tok, n = chat_rows(tokenizer, prompt, answer)
        start = answer_start(tok[0], n[0], text.header)
        got, inside = next_input_token(tok[0], n[0], tok[0][:0], 0, classes, text, start)
        return got, inside

    assert first("Cedar") == [tokenizer.convert_tokens_to_ids("C"), tokenizer.convert_tokens_to_ids("edar")]
    assert read('{"AddressNumber": "4321", "StreetName": "') == (first("Cedar")[0], 0)
    assert read('{"AddressNumber": "4321", "StreetName": "C') == (first("Cedar")[1], 1)  # the rest of the word
    assert read('{"AddressNumber": "43') == (first("2")[0], 1)
    # a label between: the reading position stays after the last value copied
    assert read('{"AddressNumber": "4321", "StreetName": "Cedar", "StreetNamePostType": "') == (first("St")[0], 0)
    cl = first("Clayton")
    assert len(cl) == 3
    assert read('{"AddressNumber": "4321", "StreetName": "Cedar", "StreetNamePostType": "St", "PlaceName": "Cl') \
        == (cl[1], 1)
    assert read('{"Colour": "Blue", "Shape": "') == (-1, 0)  # nothing copied from the input
    # the answer starts after the chat template's generation prompt
    tok, n = chat_rows(tokenizer, prompt, '{"A')
    assert answer_start(tok[0], n[0], text.header) == n[0] - len(first('{"A'))
    # walked one position at a time (learning, training), the start is the same as found afresh
    from tasc_vllm.kernels.input_reading import answer_start_after
    two, m = chat_rows(tokenizer, prompt, '{"A": "4321"}<|im_end|>\n<|im_start|>assistant\n{"B": "C')
    start = answer_start(two[0], 1, text.header)
    for p in range(2, m[0] + 1):
        start = answer_start_after(two[0], p, text.header, start)
        assert start == answer_start(two[0], p, text.header), p
    assert start > n[0]  # the second answer's
    # without it, the whole sequence before the value is read
    assert read('{"AddressNumber": "4321", "StreetName": "', text._replace(header=text.header[:0])) \
        == (first("Cedar")[0], 0)
    # a tokenizer that cannot decode single ids: nothing is read
    assert read('{"AddressNumber": "4321", "StreetName": "', no_input_text(len(tokenizer))) == (-1, 0)


def test_a_fit_at_one_batch_size_puts_the_step_in_its_fixed_part():
    """At batch 1 every step has one row, so the fixed part and the cost per row are one
    unknown: the fit gives it all to the fixed part (a later batch size then measures the
    cost per row) instead of splitting it evenly, which priced a batch-4 step at 1.8 times
    what the batch-4 run then measured."""
    rng = np.random.default_rng(3)
    timer = StepTimer()
    for _ in range(400):
        tokens = 1 + int(rng.integers(0, 16))
        timer.record(1, tokens, (0.050 + 0.001 * max(0, tokens - 8)) * rng.uniform(0.98, 1.02))
    fixed, per_row, per_token, knee = timer.cost()
    assert fixed == pytest.approx(0.050, rel=0.03) and per_row < 1e-5 and knee == 8


def test_a_request_guess_is_marked_by_where_its_match_lies(prompted_index, tokenizer, isolated_cache):
    """A request's guess matched in the answer so far (the answer's own structure) is told
    from one matched in the prompt (which may run on past what the answer copies), and a guess
    no corpus context knows is marked with the longest context's size."""
    from tasc_vllm.kernels.candidates import MAX_CANDIDATES, gather
    from tasc_vllm.kernels.input_reading import answer_start
    from tasc_vllm.kernels.learned_drafting import request_matches

    p = learned(prompted_index, tokenizer, learn_entries=0)
    prompt = "Label the parts of this address: 4321 Cedar St Clayton"
    tok, n = chat_rows(tokenizer, prompt, '{"AddressNumber": "4321", "StreetName": "Cedar", '
                                          '"StreetNamePostType": "St", "PlaceName": "Clayton", "Line": "4321 Cedar')
    ctx, n0 = tok[0], int(n[0])
    start = answer_start(ctx, n0, p.text.header)
    m = request_matches(ctx, n0, ctx[:0], 0, p.policy_params, p.space, p.classes, p.text, start)
    assert 0 < start and 0 <= m.ptr < start  # "4321 Cedar" is matched in the prompt, where " St" follows it

    def features(matches, token, ctx=ctx):
        cand = np.empty(MAX_CANDIDATES, dtype=np.int64)
        feats = np.empty((MAX_CANDIDATES, NUM_FEATURES))
        entries = np.empty(p.policy_params.max_order, dtype=np.int64)
        nc = gather(ctx, n0, ctx[:0], 0, p._view, p.echo, p.copies, p.policy_params, p.classes, matches, entries, cand,
                    feats)
        (c,) = [c for c in range(nc) if cand[c] == token]
        return dict(zip(FEATURES, feats[c]))

    in_answer = "request's guess, matched in the answer"
    f = features(m, ctx[m.ptr])
    assert f["request's guess"] == 1.0 and f[in_answer] == 0.0
    g = features(m._replace(ptr=start + 1), ctx[start + 1])  # the same match, moved into the answer
    assert g["request's guess"] == 1.0 and g[in_answer] == 1.0
    assert features(m._replace(ptr=start + 1, start=-1), ctx[start + 1])[in_answer] == 0.0  # no answer start known
    spaced = "request's guess, whitespace skipped, matched in the answer"
    assert f[spaced] == 0.0 and features(m._replace(sptr=start + 1), ctx[start + 1])[spaced] == 1.0
    unknown = "request's guess, unknown to every corpus context"
    assert f[unknown] == 0.0  # " St" follows "Cedar" in the corpus
    odd = tokenizer.encode(" zebra", add_special_tokens=False)[-1]
    odd_ctx = ctx.copy()
    odd_ctx[m.ptr] = odd  # the prompt's next word, replaced by one the corpus never saw there
    h = features(m, odd, odd_ctx)
    assert h["request's guess"] == 1.0 and h[unknown] == h["longest context's size"] > 0.0


def test_an_ensemble_with_roots_but_no_nodes_is_refused():
    from tasc_vllm.index.policy import check_trees
    from tasc_vllm.kernels.scorer import no_trees

    check_trees(no_trees())  # the prior's empty ensemble walks nothing
    with pytest.raises(ValueError, match="root is out of range"):
        check_trees(no_trees()._replace(roots=np.zeros(1, dtype=np.int64)))


def test_a_value_the_corpus_never_saw_gets_its_closing_quote_as_a_candidate(prompted_index, tokenizer,
                                                                              isolated_cache):
    """After a street name no corpus answer holds, no ordinary corpus context is known; the
    context that skips the value proposes what closed street names there.  Inside a word the
    input goes on with, the candidates say so."""
    from tasc_vllm.kernels.candidates import MAX_CANDIDATES, gather
    from tasc_vllm.kernels.input_reading import answer_start
    from tasc_vllm.kernels.learned_drafting import request_matches

    p = learned(prompted_index, tokenizer, learn_entries=0)

    def features(prompt, answer):
        tok, n = chat_rows(tokenizer, prompt, answer)
        ctx, n0 = tok[0], int(n[0])
        m = request_matches(ctx, n0, ctx[:0], 0, p.policy_params, p.space, p.classes, p.text,
                            answer_start(ctx, n0, p.text.header))
        cand = np.empty(MAX_CANDIDATES, dtype=np.int64)
        feats = np.empty((MAX_CANDIDATES, NUM_FEATURES))
        entries = np.empty(p.policy_params.max_order, dtype=np.int64)
        nc = gather(ctx, n0, ctx[:0], 0, p._view, p.echo, p.copies, p.policy_params, p.classes, m, entries, cand, feats)
        return {tokenizer.decode([int(cand[c])]): dict(zip(FEATURES, feats[c])) for c in range(nc)}

    got = features("Label the parts of this address: 4321 Zqxvorbl St Clayton",
                   '{"AddressNumber": "4321", "StreetName": "Zqxvorbl')
    skip = "share of the context skipping the last value"
    assert got['",'][skip] > 0.5
    assert got['",']["share of the longest context"] == 0.0  # no ordinary context knows the value's end
    assert all(f["the input's word goes on"] == 0.0 for f in got.values())  # the input's next word is " St"
    inside = features("Label the parts of this address: 4321 Cedar St Clayton",
                      '{"AddressNumber": "4321", "StreetName": "Cedar", "StreetNamePostType": "St", "PlaceName": "Cl')
    assert all(f["the input's word goes on"] == 1.0 for f in inside.values())
