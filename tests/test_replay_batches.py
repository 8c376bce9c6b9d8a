"""The replay served several requests at a time, and the rival drafters it replays beside
TASC-spec (benchmarks.harness.replay, benchmarks.harness.replay_drafters)."""

from __future__ import annotations

import pytest

from benchmarks.harness.replay import replay
from benchmarks.harness.replay_drafters import BestOf, OracleCut, OracleDrafter, SuffixDrafter

COST = (10.0, 2.0, 1.0, 3.0)  # fixed, per row, per token past the knee, knee


def step(rows, tokens):
    return COST[0] + COST[1] * rows + COST[2] * max(0.0, tokens - COST[3])


class Recorder:
    """Drafts nothing; checks every call against the requests' known tokens."""

    k = 4

    def __init__(self, prompts, outputs):
        self.seqs = [p + o for p, o in zip(prompts, outputs)]
        self.calls = []

    def propose_rows(self, sampled, lengths, token_ids, requests):
        for i, ((req, prompt_len), n) in enumerate(zip(requests, lengths)):
            seq = self.seqs[req]
            assert prompt_len == len(seq) - len(seq) + prompt_len  # the row's prompt length, as given
            assert token_ids[i, :n].tolist() == seq[:n]  # the row holds its own request's tokens
            assert not token_ids[i, n:].any()  # and nothing it has not produced yet
            assert sampled[i] == seq[n - len(sampled[i]):n]
        self.calls.append([req for req, _ in requests])
        return [[] for _ in requests]


def test_served_two_at_a_time_as_the_scheduler_serves_them():
    prompts = [[7, 8], [9], [5, 6, 4]]
    outputs = [[1, 2, 3], [1, 2, 3, 4, 5], [6, 7]]
    rec = Recorder(prompts, outputs)
    r = replay(rec, prompts, outputs, COST, batch=2)
    # step 1: requests 0 and 1 prefill (a token each); 2: both decode; 3: request 0 ends;
    # 4: request 1 decodes while request 2 joins in the freed row; 5: both end
    assert r["steps"] == 5 and r["drafted"] == 0 and r["tokens"] == 10
    assert rec.calls == [[0, 1], [0, 1], [1], [1, 2]]
    assert r["time"] == pytest.approx(5 * step(2, 2))
    assert r["plain_time"] == r["time"]


def test_a_request_that_ends_leaves_its_row_to_the_last_one():
    prompts = [[1], [2], [3]]
    outputs = [[4, 4], [5, 5, 5, 5], [6, 6, 6, 6]]
    rec = Recorder(prompts, outputs)
    replay(rec, prompts, outputs, COST, batch=3)
    assert rec.calls[0] == [0, 1, 2] and rec.calls[1] == [2, 1]  # request 0 ended: request 2 took row 0


def test_the_oracle_is_accepted_in_full_and_priced_per_verified_token():
    prompts, outputs = [[1, 2]], [list(range(10, 20))]
    r = replay(OracleDrafter(4, prompts, outputs), prompts, outputs, COST, batch=1)
    # prefill yields 1 token; then 4 drafted + 1 per step: 5, then the last 4 (drafted in full)
    assert (r["steps"], r["drafted"], r["accepted"]) == (3, 8, 8)
    assert r["time"] == pytest.approx(step(1, 1) + 2 * step(1, 5))
    assert r["plain_time"] == pytest.approx(10 * step(1, 1))


def test_batch_one_gives_the_same_counts_at_any_batch_size_for_the_oracle():
    prompts = [[1, 2], [3], [4, 5, 6]]
    outputs = [list(range(10, 30)), list(range(40, 45)), list(range(50, 63))]
    alone = replay(OracleDrafter(4, prompts, outputs), prompts, outputs, COST, batch=1)
    together = replay(OracleDrafter(4, prompts, outputs), prompts, outputs, COST, batch=3)
    assert (alone["drafted"], alone["accepted"]) == (together["drafted"], together["accepted"])
    assert together["steps"] < alone["steps"] and together["time"] < alone["time"]


class Fixed:
    """Drafts ``tokens`` after each row's last token, whatever the request: right where the
    answer goes on with them, wrong elsewhere."""

    k = 4

    def __init__(self, tokens):
        self.tokens = tokens

    def propose_rows(self, sampled, lengths, token_ids, requests):
        return [list(self.tokens) for _ in requests]


class ProposeOnly:
    """As TASC-spec: ``propose``, given no request numbers."""

    k = 4

    def __init__(self, tokens):
        self.tokens = tokens

    def propose(self, sampled, lengths, token_ids):
        return [list(self.tokens) for _ in lengths]


def test_the_oracle_cut_keeps_only_the_accepted_part_of_each_draft():
    prompts, outputs = [[1]], [[2, 3, 9, 2, 3, 4, 5]]
    full = replay(Fixed([3, 4, 5, 6]), prompts, outputs, COST, batch=1)
    cut = replay(OracleCut(Fixed([3, 4, 5, 6]), prompts, outputs), prompts, outputs, COST, batch=1)
    assert (full["steps"], full["accepted"]) == (cut["steps"], cut["accepted"])  # the same tokens accepted
    assert cut["drafted"] == cut["accepted"] < full["drafted"]  # none of the rejected ones verified
    assert cut["time"] < full["time"]


def test_best_of_takes_the_draft_accepted_furthest_at_each_step():
    prompts, outputs = [[1]], [[2, 3, 4, 9, 8, 7, 6, 5]]
    a, b = Fixed([3, 4, 9, 8]), Fixed([6, 5])  # right after the 2 / after the 7
    best = replay(BestOf([a, b], prompts, outputs), prompts, outputs, COST, batch=1)
    alone = [replay(OracleCut(d, prompts, outputs), prompts, outputs, COST, batch=1) for d in (a, b)]
    assert best["accepted"] > max(r["accepted"] for r in alone)
    assert best["drafted"] == best["accepted"]
    # prefill yields the 2; a's draft accepted, and the 7; b's draft ends the answer
    assert best["steps"] == 3 and best["accepted"] == 6


def test_the_bounds_take_tasc_specs_propose_as_well():
    prompts, outputs = [[1]], [[2, 3, 4, 5]]
    r = replay(BestOf([ProposeOnly([3, 4]), Fixed([7])], prompts, outputs), prompts, outputs, COST, batch=1)
    assert r["accepted"] == 2
    with pytest.raises(ValueError, match="at least one drafter"):
        BestOf([], prompts, outputs)


def test_a_bad_batch_size_is_refused():
    with pytest.raises(ValueError, match="batch must be at least 1"):
        replay(OracleDrafter(4, [[1]], [[2]]), [[1]], [[2]], COST, batch=0)


def test_warm_suffix_drafts_an_answer_it_has_seen():
    pytest.importorskip("arctic_inference", reason="vLLM's suffix method needs arctic-inference (make test builds it)")
    answer = list(range(100, 130))
    prompts, outputs = [[1, 2, 3]], [answer]
    cold = replay(SuffixDrafter(8), prompts, outputs, COST, batch=1)
    warm = replay(SuffixDrafter(8).warm([[4, 5]], [answer]), prompts, outputs, COST, batch=1)
    assert cold["accepted"] == 0  # nothing seen: nothing to draft from
    # all accepted; vLLM's default caps a draft at its match's length, so the first drafts are short
    assert warm["accepted"] == warm["drafted"] > 20
    assert warm["steps"] < cold["steps"]


def test_suffix_learns_from_the_answers_it_served():
    pytest.importorskip("arctic_inference", reason="vLLM's suffix method needs arctic-inference (make test builds it)")
    answer = list(range(100, 130))
    prompts, outputs = [[1], [2]], [answer, answer]
    r = replay(SuffixDrafter(8), prompts, outputs, COST, batch=1)
    assert r["accepted"] == r["drafted"] > 20  # the second request drafts from the first one's answer
    drafter = SuffixDrafter(8)
    replay(drafter, prompts, outputs, COST, batch=1)
    assert set(drafter.cache.active_requests) == {1}  # request 0 left the batch: stopped at the next call
    assert len(drafter.cache.cached_requests) == 2  # and both answers stay cached
