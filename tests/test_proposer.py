"""TascProposer outside an engine: the vLLM call contract, caching and failure handling."""

from types import SimpleNamespace

import numpy as np
import pytest

from tasc_vllm.config import SETTINGS, TascConfig, load_config, resolve_config
from tasc_vllm.errors import TascError
from tasc_vllm.index.index_file import read_index, write_index
from tasc_vllm.index.ngram_cache import load_tokenized, output_frame, tokenizer_fingerprint
from tasc_vllm.proposer import TascProposer

OUTPUTS = [
    '{"AddressNumber": "%d", "StreetName": "%s", "StreetNamePostType": "St", "PlaceName": "Springfield"}' % (n, s)
    for n, s in [(12, "Main"), (400, "Oak"), (7, "Elm"), (1600, "Maple"), (55, "Pine")] * 4
]


def vllm_config(k=8, max_model_len=256, max_num_seqs=8, vocab=49152):
    return SimpleNamespace(
        speculative_config=SimpleNamespace(num_speculative_tokens=k),
        model_config=SimpleNamespace(max_model_len=max_model_len, get_vocab_size=lambda: vocab),
        scheduler_config=SimpleNamespace(max_num_seqs=max_num_seqs),
    )


@pytest.fixture
def index_path(tmp_path):
    return write_index(OUTPUTS, tmp_path / "addr.tasc")


def make(index_path, tokenizer, **cfg):
    """A proposer over ``index_path``; the formula policy unless ``policy`` is given (most tests
    here pin down the formula's mechanisms; the learned policy has tests of its own)."""
    cfg.setdefault("policy", "formula")
    return TascProposer(vllm_config(**{k: cfg.pop(k) for k in list(cfg) if k in ("k", "max_model_len", "max_num_seqs")}),
                        tokenizer=tokenizer, config=TascConfig(index=str(index_path), **cfg))


def rows(tokenizer, texts, max_model_len=256):
    ids = [tokenizer.encode(t, add_special_tokens=False) for t in texts]
    arr = np.zeros((len(ids), max_model_len), dtype=np.int32)
    for i, x in enumerate(ids):
        arr[i, : len(x)] = x
    return arr, np.array([len(x) for x in ids], dtype=np.int32)


def test_drafts_the_task_structure(index_path, tokenizer, isolated_cache):
    p = make(index_path, tokenizer)
    prefix, _ = output_frame(tokenizer)
    text = tokenizer.decode(prefix) + '{"AddressNumber": "99", "StreetName'
    tok, n = rows(tokenizer, [text])
    (d,) = p.propose([[1]], n, tok)
    assert 0 < len(d) <= 8
    assert tokenizer.decode(d).startswith('": "')


def test_prefill_rows_and_full_rows_get_no_draft(index_path, tokenizer, isolated_cache):
    p = make(index_path, tokenizer, max_model_len=64)
    tok, n = rows(tokenizer, ['{"AddressNumber": "1', '{"AddressNumber": "1'], max_model_len=64)
    assert p.propose([[], [5]], n, tok)[0] == []
    n_full = np.array([63, 63], dtype=np.int32)
    assert p.propose([[5], [5]], n_full, tok) == [[], []]
    n_near = np.array([60, 60], dtype=np.int32)
    assert all(len(d) <= 64 - 60 - 1 for d in p.propose([[5], [5]], n_near, tok))


def test_draft_length_never_exceeds_k(index_path, tokenizer, isolated_cache):
    p = make(index_path, tokenizer, k=3)
    tok, n = rows(tokenizer, ['{"AddressNumber": "12", "Street'] * 5)
    for d in p.propose([[1]] * 5, n, tok):
        assert len(d) <= 3


def test_more_rows_than_max_num_seqs(index_path, tokenizer, isolated_cache):
    p = make(index_path, tokenizer, max_num_seqs=2)
    tok, n = rows(tokenizer, ['{"AddressNumber": "12", "Street'] * 6)
    drafts = p.propose([[1]] * 6, n, tok)
    assert len(drafts) == 6 and all(drafts)


def test_second_load_comes_from_cache_and_matches(index_path, tokenizer, isolated_cache):
    idx = read_index(index_path)
    a = load_tokenized(idx, tokenizer, max_order=8)
    b = load_tokenized(idx, tokenizer, max_order=8)
    assert not a.from_cache and b.from_cache
    assert np.array_equal(a.tokens, b.tokens) and np.array_equal(a.table.keys, b.table.keys)


def test_corrupt_cache_entry_is_rebuilt(index_path, tokenizer, isolated_cache):
    idx = read_index(index_path)
    a = load_tokenized(idx, tokenizer, max_order=8)
    a.cache_path.write_bytes(b"garbage")
    b = load_tokenized(idx, tokenizer, max_order=8)
    assert not b.from_cache and np.array_equal(a.tokens, b.tokens)
    assert load_tokenized(idx, tokenizer, max_order=8).from_cache


def test_cache_of_another_tokenizer_is_not_used(index_path, tokenizer, isolated_cache):
    """A grown vocabulary (TASC-ft) changes the fingerprint, so the entry is separate."""
    import copy

    idx = read_index(index_path)
    base = load_tokenized(idx, tokenizer, max_order=8)
    grown = copy.deepcopy(tokenizer)
    grown.add_tokens(['"StreetNamePostType": "'])
    assert tokenizer_fingerprint(grown) != tokenizer_fingerprint(tokenizer)
    g = load_tokenized(idx, grown, max_order=8)
    assert not g.from_cache and g.cache_path != base.cache_path
    assert g.num_tokens < base.num_tokens  # the added token compresses the corpus


def test_unwritable_cache_still_serves(index_path, tokenizer, tmp_path, monkeypatch):
    blocker = tmp_path / "file-not-folder"
    blocker.write_text("x")
    monkeypatch.setenv("TASC_VLLM_CACHE", str(blocker))
    p = make(index_path, tokenizer)
    tok, n = rows(tokenizer, ['{"AddressNumber": "12", "Street'])
    assert p.propose([[1]], n, tok)[0]


def test_exception_in_propose_costs_only_drafts(index_path, tokenizer, isolated_cache, monkeypatch, caplog):
    real = TascProposer._propose

    def every_second_call_fails(self, *args):
        if (self.stats["calls"] + 1) % 2 == 0:
            raise RuntimeError("injected test fault")
        return real(self, *args)

    monkeypatch.setattr(TascProposer, "_propose", every_second_call_fails)
    p = make(index_path, tokenizer)
    tok, n = rows(tokenizer, ['{"AddressNumber": "12", "Street'] * 2)
    results = [p.propose([[1], [1]], n, tok) for _ in range(6)]
    assert results[1] == [[], []] and results[3] == [[], []]
    assert results[0][0] and results[2][0]
    assert p.stats["errors"] == 3
    assert sum("TASC proposer failed" in r.message for r in caplog.records) == 1


def test_missing_index_setting_and_bad_index(tokenizer, tmp_path, isolated_cache):
    with pytest.raises(TascError, match="no TASC-spec index is set"):
        TascProposer(vllm_config(), tokenizer=tokenizer, config=TascConfig())
    with pytest.raises(TascError, match="does not exist"):
        make(tmp_path / "missing.tasc", tokenizer)
    with pytest.raises(TascError, match="folder"):
        make(tmp_path, tokenizer)
    bad = tmp_path / "bad.tasc"
    bad.write_bytes(b"not an index")
    with pytest.raises(TascError, match="unreadable"):
        make(bad, tokenizer)


def test_corpus_of_special_tokens_only(tokenizer, tmp_path, isolated_cache):
    path = write_index(["<|im_end|>", "<|im_start|><|im_end|>"], tmp_path / "special.tasc")
    p = make(path, tokenizer)
    tok, n = rows(tokenizer, ["hello"])
    (d,) = p.propose([[1]], n, tok)
    assert all(0 <= t < len(tokenizer) for t in d)


def test_an_answer_that_lays_out_its_prompt_over_lines_still_copies_it(index_path, tokenizer, isolated_cache):
    prompt = 'Functions: {"name": "get_weather", "parameters": {"city": "string", "days": "integer"}}\n'
    answer = '{\n  "name": "get_weather",\n  "parameters": {\n    "city": "string",\n    "'
    tok, n = rows(tokenizer, [prompt + answer])
    spaced = make(index_path, tokenizer)
    assert spaced.space[tokenizer.encode("\n    ", add_special_tokens=False)].all()
    assert not spaced.space[tokenizer.encode(' "days', add_special_tokens=False)].any()
    (d,) = spaced.propose([[1]], n, tok)
    assert tokenizer.decode(d).startswith('days": "')
    plain = make(index_path, tokenizer, spaced_match=0)
    assert plain.space.size == 0
    (d,) = plain.propose([[1]], n, tok)
    assert not tokenizer.decode(d).startswith("days")


def test_whitespace_flags_from_any_tokenizer_and_none_from_one_that_cannot_decode(caplog):
    from tasc_vllm.index.ngram_cache import whitespace_tokens

    class DecodeOnly:  # vLLM's TokenizerLike promises decode, not batch_decode
        pieces = ["a", " ", "\n  ", "{", ""]

        def __len__(self):
            return len(self.pieces)

        def decode(self, ids):
            return "".join(self.pieces[i] for i in ids)

    assert whitespace_tokens(DecodeOnly(), 7).tolist() == [0, 1, 1, 0, 0, 0, 0]

    class Broken(DecodeOnly):
        def decode(self, ids):
            raise ValueError("no byte-level vocabulary")

    assert whitespace_tokens(Broken(), 7).size == 0
    assert "cannot decode single token ids" in caplog.text


def test_the_vocabulary_is_decoded_once_for_the_table_and_the_policy():
    """Building the table and the drafting policy both read every token's text: the second
    read reuses the first, and a tokenizer that grew is decoded again."""
    from tasc_vllm.index.ngram_cache import token_classes, token_texts

    class Counting:
        def __init__(self):
            self.pieces, self.calls = ["a", " ", "_", "{"], 0

        def __len__(self):
            return len(self.pieces)

        def decode(self, ids):
            self.calls += 1
            return "".join(self.pieces[i] for i in ids)

    tok = Counting()
    first = token_texts(tok, 10)
    token_classes(tok, 10)
    assert token_texts(tok, 10) is first and tok.calls == 4
    tok.pieces.append("b")  # a vocabulary grown by TASC-ft
    assert token_texts(tok, 10) == ["a", " ", "_", "{", "b"] and tok.calls == 9
    other = Counting()
    assert token_texts(other, 10) == first and other.calls == 4  # another tokenizer is decoded anew


def test_config_from_additional_config_with_environment_overrides():
    loaded = resolve_config({"tasc": {"threshold": 0.3, "max_order": 6, "index": "a.tasc"}, "other_plugin": 1},
                            environ={"TASC_MAX_ORDER": "5", "PATH": "/bin", "TASC_VLLM_CACHE": "/tmp/c"})
    cfg = loaded.config
    assert (cfg.threshold, cfg.max_order, cfg.index) == (0.3, 5, "a.tasc")
    assert loaded.origins == {"threshold": "additional_config", "max_order": "TASC_MAX_ORDER",
                              "index": "additional_config"}
    assert loaded.overridden == {"max_order": 6}
    line = loaded.summary()
    assert "\n" not in line and line.startswith("TASC-spec settings: index=a.tasc ")
    assert all(f" {name}=" in line for name in SETTINGS if name != "index")
    assert "from additional_config: threshold, index" in line
    assert "TASC_MAX_ORDER (over additional_config's 6)" in line
    assert resolve_config(None, environ={}).summary().endswith("(all defaults)")
    from tasc_vllm.config import given

    assert given(TascConfig(index="b.tasc", alpha=2.0)).summary().endswith("(given by the caller: index, alpha)")
    assert load_config({}, environ={}) == TascConfig()
    # an int is a valid float, a whole float a valid int
    assert load_config({"tasc": {"threshold": 1, "calibrate": 2.0}}, environ={}).calibrate == 2


@pytest.mark.parametrize("additional, environ, message", [
    ({"tasc": {"thresold": 0.3}}, {}, "unknown TASC-spec setting 'thresold'; known settings: index, policy, step_cost_model, max_draft"),
    ({}, {"TASC_THRESOLD": "0.3"}, "environment variable TASC_THRESOLD: unknown TASC-spec setting 'thresold'"),
    ({}, {"TASC_CONFIG": "x.json"}, "unknown TASC-spec setting 'config'"),
    ({"tasc": {"threshold": "high"}}, {}, r"additional_config\[\"tasc\"\].threshold: setting 'threshold' must be float"),
    ({"tasc": {"max_order": 2.5}}, {}, "setting 'max_order' must be int, got 2.5"),
    ({"tasc": {"calibrate": True}}, {}, "setting 'calibrate' must be int, got True"),
    ({"tasc": {"index": 3}}, {}, "setting 'index' must be str, got 3"),
    ({}, {"TASC_THRESHOLD": "high"}, "TASC_THRESHOLD: setting 'threshold' must be float"),
    ({}, {"TASC_THRESHOLD": "2"}, r"threshold must be in 0..1 \(threshold from TASC_THRESHOLD\)"),
    ({"tasc": {"threshold": 2}}, {}, r"threshold must be in 0..1 \(threshold from additional_config\)"),
    ({}, {"TASC_SPACED_MATCH": "2"}, "spaced_match must be 0 or 1"),
    ({"tasc": ["index", "x"]}, {}, r'additional_config\["tasc"\] must be a JSON object'),
    ("tasc", {}, "additional_config must be a JSON object"),
])
def test_bad_settings_are_refused_with_the_setting_named(additional, environ, message):
    with pytest.raises(TascError, match=message):
        load_config(additional, environ=environ)


def test_the_proposer_reads_additional_config_and_logs_the_settings_once(index_path, tokenizer, isolated_cache,
                                                                          monkeypatch, caplog):
    import logging

    monkeypatch.setenv("TASC_THRESHOLD", "0.25")
    config = vllm_config()
    config.additional_config = {"tasc": {"index": str(index_path), "threshold": 0.5, "max_draft": 3}}
    with caplog.at_level(logging.INFO, logger="tasc_vllm"):
        p = TascProposer(config, tokenizer=tokenizer)
    assert (p.cfg.index, p.cfg.threshold, p.cfg.max_draft, p.k) == (str(index_path), 0.25, 3, 3)
    lines = [r.message for r in caplog.records if r.message.startswith("TASC-spec settings:")]
    assert len(lines) == 1 and "TASC_THRESHOLD (over additional_config's 0.5)" in lines[0]
    config.additional_config = {"tasc": {"index": str(index_path), "max_drafts": 3}}
    with pytest.raises(TascError, match="unknown TASC-spec setting 'max_drafts'"):
        TascProposer(config, tokenizer=tokenizer)


def test_plugin_register_never_fails():
    from tasc_vllm.plugin import register

    register()
    register()


def test_threshold_rises_with_the_batch_under_a_step_overhead(index_path, tokenizer, isolated_cache):
    cfg = TascConfig(index="x", threshold=0.1, step_overhead=2.0)
    assert cfg.threshold_for(1) == pytest.approx(1 / 3)
    assert cfg.threshold_for(16) == pytest.approx(16 / 18)
    assert TascConfig(threshold=0.1, step_overhead=0.0).threshold_for(64) == 0.1  # off
    assert TascConfig(threshold=0.5, step_overhead=100.0).threshold_for(1) == 0.5  # never below the floor
    with pytest.raises(TascError, match="step_overhead must be >= 0"):
        load_config(environ={"TASC_STEP_OVERHEAD": "-1"})
    # the same row drafts no more (and here less) when it shares the step with many others
    text = '{"AddressNumber": "12", "StreetName": "Oak", "Street'
    alone = make(index_path, tokenizer, step_overhead=2.0)
    tok1, n1 = rows(tokenizer, [text])
    tok8, n8 = rows(tokenizer, [text] * 8)
    (d1,) = alone.propose([[1]], n1, tok1)
    d8 = alone.propose([[1]] * 8, n8, tok8)
    assert all(len(d) <= len(d1) for d in d8)
    assert sum(map(len, d8)) < 8 * len(d1)


def test_oracle_follows_whichever_known_continuation_the_output_agrees_with(tmp_path, monkeypatch):
    from tasc_vllm.eval.oracle import OracleProposer, write_oracle_file

    prompt = [5, 6, 7]
    pairs = [[prompt, [1, 2, 3, 4, 5]], [prompt, [1, 2, 9, 9, 9]], [[8, 8], [4, 4]]]
    write_oracle_file(tmp_path / "oracle.json", pairs)
    monkeypatch.setenv("TASC_ORACLE_FILE", str(tmp_path / "oracle.json"))
    oracle = OracleProposer(vllm_config(k=2, max_model_len=10))
    ctx = np.zeros((4, 10), dtype=np.int32)
    ctx[0, :5] = prompt + [1, 2]          # both continuations agree so far
    ctx[1, :6] = prompt + [1, 2, 9]       # only the second agrees
    ctx[2, :5] = prompt + [7, 7]          # neither agrees: no draft
    ctx[3, :7] = prompt + [1, 2, 3, 4]    # one known token left
    drafts = oracle.propose([[2], [9], [7], [4]], np.array([5, 6, 5, 7]), ctx)
    assert drafts[0] == [3, 4]
    assert drafts[1] == [9, 9]
    assert drafts[2] == []
    assert drafts[3] == [5]


def test_index_replaced_or_deleted_while_serving_changes_nothing(index_path, tokenizer, isolated_cache):
    p = make(index_path, tokenizer)
    prefix, _ = output_frame(tokenizer)
    tok, n = rows(tokenizer, [tokenizer.decode(prefix) + '{"AddressNumber": "99", "StreetName'])
    before = p.propose([[1]], n, tok)
    assert before[0]
    # overwritten in place with another corpus, then deleted, along with the tokenized cache
    write_index(["something else entirely"] * 5, index_path)
    for f in isolated_cache.rglob("*"):
        if f.is_file():
            f.write_bytes(b"garbage")
    assert p.propose([[1]], n, tok) == before
    index_path.unlink()
    for f in isolated_cache.rglob("*"):
        if f.is_file():
            f.unlink()
    assert p.propose([[1]], n, tok) == before


def test_online_learning_drafts_what_the_server_generated_before(index_path, tokenizer, isolated_cache):
    """An answer the corpus has never seen: once served (its tokens handed to ``propose``
    step by step, as vLLM does), the same context drafts it; with learning off it does not."""
    answer = "Zanzibar Quixotic Boulevard Yellowknife Extravaganza"
    prompt = "Q: where?\nA:"
    full = tokenizer.encode(prompt + " " + answer, add_special_tokens=False)
    start = len(tokenizer.encode(prompt, add_special_tokens=False))
    tok = np.zeros((1, 256), dtype=np.int32)
    tok[0, : len(full)] = full

    def serve_once(p):
        for n in range(start + 1, len(full) + 1):  # one token gained per step
            p.propose([[int(full[n - 1])]], np.array([n], np.int32), tok)

    def draft_after_prompt(p):
        (d,) = p.propose([[int(full[start])]], np.array([start + 1], np.int32), tok)
        return d

    learning = make(index_path, tokenizer, threshold=0.0, step_overhead=0.0, context_weight=0.0)
    static = make(index_path, tokenizer, threshold=0.0, step_overhead=0.0, context_weight=0.0, learn_entries=0)
    for p in (learning, static):
        serve_once(p)
    d = draft_after_prompt(learning)
    assert d == full[start + 1 : start + 1 + len(d)] and len(d) == 8  # the whole learned answer, up to k
    assert draft_after_prompt(static) != d
    assert learning.stats["learned"] > 0 and learning.stats["learned_contexts"] > 0
    assert static.stats["learned"] == 0
    # both scored their sources on the served tokens; with calibrate=0 the score stays empty
    assert learning.calibration[1].sum() > 0 and static.calibration[1].sum() > 0
    uncalibrated = make(index_path, tokenizer, calibrate=0)
    serve_once(uncalibrated)
    assert uncalibrated.calibration.sum() == 0
    with pytest.raises(TascError, match="calibrate must be 0, 1 or 2"):
        load_config(environ={"TASC_CALIBRATE": "3"})
    with pytest.raises(TascError, match="learn_entries must be in"):
        load_config(environ={"TASC_LEARN_ENTRIES": "-1"})


def test_learning_is_saved_on_request_and_resumed_by_the_next_start(index_path, tokenizer, isolated_cache,
                                                                    tmp_path, caplog):
    import os
    import time

    answer = "Zanzibar Quixotic Boulevard Yellowknife Extravaganza"
    full = tokenizer.encode("Q: where?\nA: " + answer, add_special_tokens=False)
    start = len(tokenizer.encode("Q: where?\nA:", add_special_tokens=False))
    tok = np.zeros((1, 256), dtype=np.int32)
    tok[0, : len(full)] = full
    state = tmp_path / "learned.npz"
    opts = {"threshold": 0.0, "step_overhead": 0.0, "context_weight": 0.0, "learned_path": str(state)}

    first = make(index_path, tokenizer, **opts)
    for n in range(start + 1, len(full) + 1):
        first.propose([[int(full[n - 1])]], np.array([n], np.int32), tok)
    assert not state.exists()  # nothing is written until asked
    trigger = tmp_path / "learned.npz.save"
    trigger.touch()
    os.utime(trigger, (time.time() + 5, time.time() + 5))  # a touch the proposer has not seen
    first._save_requests._checked -= 2  # the once-a-second check is due
    first.propose([[int(full[-1])]], np.array([len(full)], np.int32), tok)
    assert state.exists()

    def draft(p):
        (d,) = p.propose([[int(full[start])]], np.array([start + 1], np.int32), tok)
        return d

    resumed = make(index_path, tokenizer, **opts)
    assert int(resumed._used[0]) > resumed._corpus_entries  # before serving anything: the file carried it
    assert draft(resumed) == draft(first) == full[start + 1 : start + 9]
    fresh = make(index_path, tokenizer, **{**opts, "learned_path": ""})
    assert draft(fresh) != draft(first)

    # a file from another index is reported and ignored; so is a corrupt one
    other = tmp_path / "other.tasc"
    write_index(["completely different corpus text"], other)
    with caplog.at_level("WARNING", logger="tasc_vllm"):
        assert draft(make(other, tokenizer, **opts)) != draft(first)
    assert "learned with another index" in caplog.text
    state.write_bytes(b"not an npz")
    with caplog.at_level("WARNING", logger="tasc_vllm"):
        assert draft(make(index_path, tokenizer, **opts)) != draft(first)
    assert "is unreadable" in caplog.text


def test_data_parallel_replicas_learn_on_their_own_and_each_resumes_its_own_file(index_path, tokenizer,
                                                                                isolated_cache, tmp_path):
    import os
    import time

    from tasc_vllm.index.learned_state import replica_path

    assert replica_path("s/learned.npz", 0) == "s/learned.npz"
    assert replica_path("s/learned.npz", 1) == "s/learned.dp1.npz" and replica_path("", 1) == ""
    state = tmp_path / "learned.npz"
    opts = {"threshold": 0.0, "step_overhead": 0.0, "context_weight": 0.0, "learned_path": str(state)}
    answers = ["Zanzibar Quixotic Boulevard Yellowknife Extravaganza", "Ouagadougou Xylophone Parkway Kilimanjaro"]

    def replica(rank):
        config = vllm_config()
        # as vLLM configures the replicas of a dense model: each an engine of size 1, rank 0
        config.parallel_config = SimpleNamespace(data_parallel_rank=0, data_parallel_size=1,
                                                 data_parallel_index=rank)
        return TascProposer(config, tokenizer=tokenizer, config=TascConfig(index=str(index_path), **opts))

    def rows_of(answer):
        full = tokenizer.encode("Q: where?\nA: " + answer, add_special_tokens=False)
        start = len(tokenizer.encode("Q: where?\nA:", add_special_tokens=False))
        tok = np.zeros((1, 256), dtype=np.int32)
        tok[0, : len(full)] = full
        return full, start, tok

    replicas = [replica(0), replica(1)]
    for p, answer in zip(replicas, answers):  # each replica serves its own answer
        full, start, tok = rows_of(answer)
        for n in range(start + 1, len(full) + 1):
            p.propose([[int(full[n - 1])]], np.array([n], np.int32), tok)
    trigger = tmp_path / "learned.npz.save"
    trigger.touch()
    os.utime(trigger, (time.time() + 5, time.time() + 5))
    for p, answer in zip(replicas, answers):  # one touch asks every replica to save
        p._save_requests._checked -= 2
        full, _, tok = rows_of(answer)
        p.propose([[int(full[-1])]], np.array([len(full)], np.int32), tok)
    assert state.exists() and (tmp_path / "learned.dp1.npz").exists()
    for rank, answer in enumerate(answers):  # after a restart each replica drafts what it learned
        full, start, tok = rows_of(answer)
        (d,) = replica(rank).propose([[int(full[start])]], np.array([start + 1], np.int32), tok)
        assert d == full[start + 1 : start + 1 + len(d)] and len(d) >= 3, (rank, d)
        (other,) = replica(1 - rank).propose([[int(full[start])]], np.array([start + 1], np.int32), tok)
        assert other != d


def test_draft_calibration_scores_each_draft_by_what_the_next_step_kept(index_path, tokenizer, isolated_cache):
    """Drive the proposer as vLLM does (draft, verify greedily against a known answer, gain the
    accepted tokens plus one): with calibrate=2 every draft is scored once, hits never exceed
    trials, and a row taken over by another request is not scored."""
    from tasc_vllm.kernels.calibration import DRAFT_BASE

    text = OUTPUTS[0]
    frame_prefix, _ = output_frame(tokenizer)
    full = list(frame_prefix) + tokenizer.encode(text, add_special_tokens=False)
    tok = np.zeros((1, 256), dtype=np.int32)
    tok[0, : len(full)] = full
    p = make(index_path, tokenizer, calibrate=2, threshold=0.0, step_overhead=0.0)
    n, gained, drafts = len(frame_prefix) + 1, [full[len(frame_prefix)]], 0
    while n < len(full):
        (d,) = p.propose([gained], np.array([n], np.int32), tok)
        drafts += bool(d)
        a = 0
        while a < len(d) and n + a < len(full) and d[a] == full[n + a]:
            a += 1
        g = min(a + 1, len(full) - n)
        gained, n = full[n : n + g], n + g
    p.propose([gained], np.array([n], np.int32), tok)
    draft_cal = p.calibration[:, DRAFT_BASE:]
    # the last step may be cut short by the end of the known answer (no token of the model's own)
    assert drafts - 1 <= p.stats["scored_drafts"] <= drafts and drafts > 2
    assert draft_cal[1].sum() <= p.stats["draft_tokens"]
    assert np.all(draft_cal[0] <= draft_cal[1]) and draft_cal[0].sum() > 0
    # another request in row 0: its length does not follow from the last draft, nothing is scored
    (d,) = p.propose([[full[1]]], np.array([5], np.int32), tok)
    before = p.stats["scored_drafts"]
    p.propose([[full[5]]], np.array([40], np.int32), tok)
    assert p.stats["scored_drafts"] == before
