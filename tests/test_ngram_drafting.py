"""The n-gram table and the compiled drafting loop, against brute force and as properties."""

from collections import Counter, defaultdict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasc_vllm.kernels.calibration import LastDrafts, context_bucket, corpus_bucket, draft_bucket, new_calibration, observe_batch
from tasc_vllm.kernels.drafting import draft_batch
from tasc_vllm.kernels.params import DraftParams
from tasc_vllm.kernels.ngram_table import TOP_K, build_table, context_key, lookup

DEFAULTS = dict(max_order=6, ctx_min=1, ctx_max=8, wc=1.0, wx=1.0, alpha=1.0, gamma=2.0, threshold=0.05)
NO_SPACE = np.zeros(0, np.uint8)  # no whitespace flags: the request is matched token for token only


def corpus_array(texts):
    return np.concatenate([np.array(list(t) + [-1], dtype=np.int32) for t in texts]) if texts else np.zeros(0, np.int32)


def table_entry(table, context):
    return lookup(table.slots, table.keys, np.uint64(context_key(np.array(context, dtype=np.int64))))


def brute_force(texts, max_order):
    stats = defaultdict(Counter)
    for t in texts:
        for p in range(len(t) - 1):
            for n in range(1, max_order + 1):
                if p - n + 1 < 0:
                    break
                stats[tuple(t[p - n + 1 : p + 1])][t[p + 1]] += 1
    return stats


def params(p, vocab):
    """The kernels' parameters from a ``DEFAULTS``-style dict."""
    return DraftParams(p["max_order"], p["ctx_min"], p["ctx_max"], float(p["wc"]), float(p["wx"]), float(p["alpha"]),
                       float(p["gamma"]), float(p["threshold"]), float(p.get("step_cost", 0.0)),
                       float(p.get("free_draft", 0.0)), vocab)


def draft(table, ctx, limit, vocab=1000, cal=None, space=NO_SPACE, **over):
    p = {**DEFAULTS, **over}
    tokens = np.array([ctx + [0] * 4], dtype=np.int32)
    out = np.zeros((1, max(limit, 1)), np.int32)
    out_len = np.zeros(1, np.int32)
    draft_batch(
        np.array([0]), np.array([len(ctx)], np.int32), tokens, np.array([limit]), table.view,
        params(p, vocab), space, new_calibration() if cal is None else cal, out, out_len, np.zeros(out.shape),
    )
    return out[0, : out_len[0]].tolist()


texts_strategy = st.lists(st.lists(st.integers(0, 12), min_size=1, max_size=30), min_size=1, max_size=12)


@settings(max_examples=60, deadline=None)
@given(texts=texts_strategy)
def test_table_matches_brute_force_counts(texts):
    table = build_table(corpus_array(texts), max_order=4)
    expected = brute_force(texts, 4)
    assert len(table.keys) == len(expected)
    for context, counter in expected.items():
        e = table_entry(table, list(context))
        assert e >= 0, context
        assert table.totals[e] == sum(counter.values())
        best = max(counter.values())
        assert table.counts[e, 0] == best
        assert counter[int(table.nexts[e, 0])] == best
        kept = [int(t) for t in table.nexts[e] if t >= 0]
        assert len(kept) == min(TOP_K, len(counter))
        assert all(table.counts[e, i] == counter[t] for i, t in enumerate(kept))


# token classes for the run-skipping tests: 0..5 words, 6..7 digits, 8..10 punctuation, 11 a
# joiner (``_``), 12 whitespace
RUN_CLASSES = np.array([0] * 6 + [2] * 2 + [3] * 3 + [5] + [1], dtype=np.uint8)


def brute_force_run_skips(texts, max_order):
    """(tokens before the run, tail after it) -> followers, for every run of content tokens
    (classes 0 and 2, single joiners of class 5 between them) of at most MAX_RUN tokens and
    tails of at most MAX_TAIL other tokens; a joiner inside a run follows the run before it."""
    from tasc_vllm.kernels.ngram_table import MAX_RUN, MAX_TAIL

    content = [RUN_CLASSES[t] in (0, 2) for t in range(len(RUN_CLASSES))]
    joiner = [RUN_CLASSES[t] == 5 for t in range(len(RUN_CLASSES))]
    stats = defaultdict(Counter)
    for t in texts:
        in_run = [content[x] for x in t]
        for i in range(1, len(t) - 1):
            in_run[i] = in_run[i] or (joiner[t[i]] and content[t[i - 1]] and content[t[i + 1]])
        p = 0
        while p < len(t):
            if not content[t[p]]:
                p += 1
                continue
            s = p
            while p + 1 < len(t) and in_run[p + 1]:
                if joiner[t[p + 1]] and p - s + 1 <= MAX_RUN and s > 0:  # the run could have ended here
                    for n in range(1, min(max_order, s) + 1):
                        stats[(tuple(t[s - n:s]), ())][t[p + 1]] += 1
                p += 1
            if p - s + 1 <= MAX_RUN and s > 0:
                for f in range(p + 1, min(p + 2 + MAX_TAIL, len(t))):
                    for n in range(1, min(max_order, s) + 1):
                        stats[(tuple(t[s - n:s]), tuple(t[p + 1:f]))][t[f]] += 1
                    if content[t[f]]:
                        break
            p += 1
    return stats


@settings(max_examples=60, deadline=None)
@given(texts=st.lists(st.lists(st.integers(0, 12), min_size=1, max_size=30), min_size=1, max_size=12))
def test_contexts_that_skip_a_run_match_brute_force_counts(texts):
    """With token classes the table also counts what follows each run of word and digit
    tokens, keyed by the tokens before the run and the tail after it; the ordinary contexts
    are counted as without them."""
    from tasc_vllm.kernels.lookups import run_skipping_entry

    plain = build_table(corpus_array(texts), max_order=3)
    table = build_table(corpus_array(texts), max_order=3, classes=RUN_CLASSES)
    for e, key in enumerate(plain.keys):
        f = lookup(table.slots, table.keys, key)
        assert f >= 0 and table.totals[f] == plain.totals[e] and table.counts[f, 0] == plain.counts[e, 0]
    expected = brute_force_run_skips(texts, 3)
    assert len(table.keys) == len(plain.keys) + len(expected)
    for (before, tail), counter in expected.items():
        run = [0, 11, 6]  # any run of content tokens stands for the one the corpus held
        seq = np.array(list(before) + run + list(tail), dtype=np.int64)
        e, order, length = run_skipping_entry(seq, len(seq), seq[:0], 0, table.slots, table.keys, len(before),
                                              RUN_CLASSES)
        assert length == 3 and order == len(before) and e >= 0, (before, tail)
        assert table.totals[e] == sum(counter.values())
        assert table.counts[e, 0] == max(counter.values()) and counter[int(table.nexts[e, 0])] == table.counts[e, 0]


def test_a_value_the_corpus_never_saw_is_closed_as_its_values_were():
    """``{"k": "`` + a value + ``"`` in the corpus: after a value it never saw, the context
    that skips the value proposes the closing quote; after the quote, the next key."""
    from tasc_vllm.kernels.lookups import run_skipping_entry

    texts = [[8, 0, 9, 1, 10, 2, 11], [8, 0, 9, 3, 4, 10, 2, 11], [8, 0, 9, 6, 7, 10, 5, 11]]
    table = build_table(corpus_array(texts), max_order=4, classes=RUN_CLASSES)

    def followers(seq, table=table):
        seq = np.array(seq, dtype=np.int64)
        e, order, _ = run_skipping_entry(seq, len(seq), seq[:0], 0, table.slots, table.keys, 4, RUN_CLASSES)
        return {int(t): int(c) for t, c in zip(table.nexts[e], table.counts[e]) if t >= 0} if e >= 0 else {}

    assert followers([8, 0, 9, 5, 5, 5]) == {10: 3}  # the unseen value 5 5 5 is closed
    assert followers([8, 0, 9, 5, 5, 5, 10]) == {2: 2, 5: 1}  # then comes a key
    assert followers([8, 0, 9, 5, 12, 12, 12, 12, 12]) == {}  # a tail longer than MAX_TAIL is not followed
    assert followers([8, 0, 9, 5, 5]) == followers([8, 0, 9, 1])  # every value is the same wildcard
    assert followers([8, 0, 9, 5, 11, 4, 11, 6]) == {10: 3}  # joined parts (``calculate_area``) are one value
    assert followers([8, 0, 9, 5, 11, 11, 4]) == {}  # two joiners in a row end the value
    # where a value went on with a joiner, the table knows it could have gone on
    joined = build_table(corpus_array([[8, 0, 9, 1, 11, 2, 10], [8, 0, 9, 3, 10], [8, 0, 9, 4, 10]]), max_order=4,
                         classes=RUN_CLASSES)
    assert followers([8, 0, 9, 5], joined) == {10: 3, 11: 1}
    assert followers([8, 0, 9, 5, 11, 5], joined) == {10: 3, 11: 1}


def test_a_value_that_may_go_on_gets_its_closers_share_apart():
    """Names that went on with a joiner (``calculate`` + ``_``) make the joiner the top
    follower of the context that skips them; the closers' share among the closers alone is a
    feature of its own, set again where the request's match closes the value too."""
    from tasc_vllm.kernels.candidates import FEATURES, MAX_CANDIDATES, NUM_FEATURES, Matches, PolicyParams, gather
    from tasc_vllm.kernels.echoes import empty_echoes
    from tasc_vllm.kernels.prompt_copies import empty_copies

    texts = [[8, 1, 11, 2, 10], [8, 3, 11, 4, 10], [8, 5, 11, 1, 11, 2, 10], [8, 2, 9]]
    table = build_table(corpus_array(texts), max_order=4, classes=RUN_CLASSES)
    params = PolicyParams(4, 1, 16, len(table.keys), 0.0, 13)
    ctx = np.array([4, 9, 8, 3], dtype=np.int64)  # the answer so far: 8 + an unseen value (3)

    def features(match_at):
        m = Matches(match_at, 1 if match_at >= 0 else 0, -1, 0, -1, 0, -1, -1, 0, 0, -1, 0, 0)
        cand = np.empty(MAX_CANDIDATES, dtype=np.int64)
        feats = np.empty((MAX_CANDIDATES, NUM_FEATURES))
        nc = gather(ctx, len(ctx), ctx[:0], 0, table.view, empty_echoes(), empty_copies(), params, RUN_CLASSES, m,
                    np.empty(4, dtype=np.int64), cand, feats)
        return {int(cand[c]): dict(zip(FEATURES, feats[c])) for c in range(nc)}

    skip = "share of the context skipping the last value"
    closers = "share of the closers of the context skipping the last value"
    both = "that share, where the request's match closes the value too"
    got = features(-1)
    assert got[11][skip] == pytest.approx(4 / 8) and got[10][skip] == pytest.approx(3 / 8)
    assert got[10][closers] == pytest.approx(3 / 4) and got[9][closers] == pytest.approx(1 / 4)
    assert got[11][closers] == 0.0  # the joiner goes on with the value
    assert all(f[both] == 0.0 for f in got.values())
    matched = features(1)  # the request's match guesses 9: a closer
    assert matched[10][both] == pytest.approx(3 / 4) and matched[11][both] == 0.0
    assert features(0)[10][both] == 0.0  # its guess 4 goes on with the value


def test_every_candidate_sees_its_strongest_rival():
    """A candidate's rival features hold the largest value of the same measure among the other
    candidates: the top one sees the runner-up, every other one the top."""
    from tasc_vllm.kernels.candidates import FEATURES, MAX_CANDIDATES, NUM_FEATURES, Matches, PolicyParams, gather
    from tasc_vllm.kernels.echoes import empty_echoes
    from tasc_vllm.kernels.prompt_copies import empty_copies

    table = build_table(corpus_array([[1, 2, 3]] * 5 + [[1, 2, 4]] * 3 + [[1, 2, 5]] * 2), max_order=3)
    params = PolicyParams(3, 1, 16, len(table.keys), 0.0, 13)
    ctx = np.array([7, 6, 1, 2], dtype=np.int64)
    m = Matches(1, 2, -1, 0, -1, 0, -1, -1, 0, 0, -1, 0, 0)  # the request's match guesses 6, 2 tokens long
    cand = np.empty(MAX_CANDIDATES, dtype=np.int64)
    feats = np.empty((MAX_CANDIDATES, NUM_FEATURES))
    nc = gather(ctx, len(ctx), ctx[:0], 0, table.view, empty_echoes(), empty_copies(), params, np.zeros(0, np.int8),
                m, np.empty(3, dtype=np.int64), cand, feats)
    got = {int(cand[c]): dict(zip(FEATURES, feats[c])) for c in range(nc)}
    assert set(got) == {3, 4, 5, 6}
    share, rival = "share of the longest context", "the best rival's share of the longest context"
    assert got[3][share] == pytest.approx(0.5) and got[3][rival] == pytest.approx(0.3)
    assert all(got[t][rival] == pytest.approx(0.5) for t in (4, 5, 6))
    length, rival_length = "request's match length", "the best rival's request match length"
    assert got[6][length] == pytest.approx(2 / 16) and got[6][rival_length] == 0.0
    assert all(got[t][rival_length] == pytest.approx(2 / 16) for t in (3, 4, 5))


def test_min_count_drops_rare_contexts():
    texts = [[1, 2, 3]] * 3 + [[7, 8]]
    table = build_table(corpus_array(texts), max_order=2, min_count=2)
    assert table_entry(table, [1]) >= 0
    assert table_entry(table, [7]) == -1


@settings(max_examples=100, deadline=None)
@given(
    texts=texts_strategy,
    ctx=st.lists(st.integers(0, 12), min_size=1, max_size=60),
    limit=st.integers(0, 10),
    threshold=st.floats(0.0, 1.0),
)
def test_drafts_are_valid_bounded_and_deterministic(texts, ctx, limit, threshold):
    table = build_table(corpus_array(texts), max_order=5)
    vocab = 13
    d1 = draft(table, ctx, limit, vocab=vocab, threshold=threshold)
    d2 = draft(table, ctx, limit, vocab=vocab, threshold=threshold)
    assert d1 == d2
    assert len(d1) <= limit
    assert all(0 <= t < vocab for t in d1)


def test_vocab_bound_filters_out_of_range_tokens():
    table = build_table(corpus_array([[1, 2, 50, 3]] * 5), max_order=3)
    assert draft(table, [1], 4, vocab=100) == [2, 50, 3]
    assert draft(table, [1], 4, vocab=10) == [2]


def test_corpus_drafts_a_structure_it_knows():
    texts = [[1, 2, 3, 4, 5, 6, 7, 8]] * 20
    table = build_table(corpus_array(texts), max_order=4)
    assert draft(table, [40, 41, 1, 2], 6) == [3, 4, 5, 6, 7, 8]
    assert draft(table, [40, 41, 1, 2], 3) == [3, 4, 5]


def test_context_copies_values_the_corpus_cannot_know():
    # corpus: key tokens 1 2, a value, then 9; the value (30 31 32) is only in the prompt
    texts = [[1, 2, v, 9] for v in range(100, 140)]
    table = build_table(corpus_array(texts), max_order=4)
    prompt = [50, 30, 31, 32, 33, 51]
    # the model has produced "1 2 30": context knows 31 32 follow 30
    d = draft(table, prompt + [1, 2, 30], 3)
    assert d[:2] == [31, 32]


# whitespace-only tokens in these tests: 7 (a newline and indent) and 8 (a space)
SPACE = np.zeros(1000, np.uint8)
SPACE[[7, 8]] = 1


def test_context_match_skips_whitespace_on_both_sides():
    from tasc_vllm.kernels.lookups import find_context_match

    prompt = [50, 30, 31, 8, 32, 33, 51]  # "30 31 32 33" held on one line
    answer = [30, 7, 31, 7, 7, 32]  # the answer lays it out over lines
    seq = np.array(prompt + answer, dtype=np.int32)
    none = np.zeros(0, np.int32)
    assert find_context_match(seq, len(seq), none, 0, 1, 8, NO_SPACE) == (5, 1)  # token for token: "32" alone
    # whitespace skipped: "30 31 32" matched, and 33 (past the space token) follows
    assert find_context_match(seq, len(seq), none, 0, 1, 8, SPACE) == (5, 3)
    # the same when the answer's last token is whitespace, and when the sequence ends in a draft
    assert find_context_match(np.append(seq, 7), len(seq) + 1, none, 0, 1, 8, SPACE) == (5, 3)
    assert find_context_match(seq[:-1], len(seq) - 1, np.array([32], np.int32), 1, 1, 8, SPACE) == (5, 3)
    assert find_context_match(seq, len(seq), none, 0, 4, 8, SPACE) == (-1, 0)  # shorter than min_order
    assert find_context_match(np.array([7, 7, 7], np.int32), 3, none, 0, 1, 8, SPACE) == (-1, 0)


def test_spaced_match_drafts_through_the_answers_own_layout():
    # the corpus knows that a newline and indent (7) follows 32; the values come from the prompt,
    # which holds them on one line
    table = build_table(corpus_array([[32, 7]] * 20), max_order=4)
    prompt = [50, 30, 31, 32, 33, 34, 51]
    answer = [30, 8, 31, 8, 32]
    # the corpus drafts the newline, then the spaced match, untouched by it, goes on with 33 34
    assert draft(table, prompt + answer, 3, space=SPACE) == [7, 33, 34]
    # token for token, no earlier newline has a follower to copy
    assert draft(table, prompt + answer, 3) == [7]


def test_calibration_scores_a_spaced_guess_in_its_own_bucket():
    from tasc_vllm.kernels.calibration import spaced_bucket

    table = build_table(corpus_array([[1, 2]]), max_order=2)
    cal = new_calibration()
    # prompt 30 31 32 33; the answer's last tokens: 7 (newline), 32 (spaced "30 31" -> 32: hit)
    observe(table, [30, 31, 32, 33, 30, 7, 31, 7, 32], 1, cal, space=SPACE)
    assert (cal[0, spaced_bucket(2)], cal[1, spaced_bucket(2)]) == (1, 1)
    cal_plain = new_calibration()
    observe(table, [30, 31, 32, 33, 30, 7, 31, 7, 32], 1, cal_plain)
    assert cal_plain[1, spaced_bucket(2)] == 0  # without the flags the spaced source is never scored


def test_no_draft_when_nothing_is_known():
    table = build_table(corpus_array([[1, 2, 3]]), max_order=3)
    assert draft(table, [70, 71, 72], 5) == []


def test_low_confidence_stops_the_draft():
    # after 1, the corpus continues with 2 or 3 equally: too unsure under a high threshold
    texts = [[1, 2]] * 10 + [[1, 3]] * 10
    table = build_table(corpus_array(texts), max_order=2)
    assert draft(table, [1], 3, threshold=0.6, wx=0.0) == []
    assert len(draft(table, [1], 3, threshold=0.01, wx=0.0)) >= 1


def test_batch_rows_are_independent():
    table = build_table(corpus_array([[1, 2, 3, 4]] * 5), max_order=3)
    tokens = np.array([[1, 2, 0, 0], [9, 9, 9, 9], [2, 3, 0, 0]], dtype=np.int32)
    out = np.zeros((2, 4), np.int32)
    out_len = np.zeros(2, np.int32)
    p = DEFAULTS
    draft_batch(np.array([0, 2]), np.array([2, 4, 2], np.int32), tokens, np.array([4, 1]), table.view,
                params(p, 100), NO_SPACE, new_calibration(), out, out_len, np.zeros(out.shape))
    assert out[0, : out_len[0]].tolist() == [3, 4]
    assert out[1, : out_len[1]].tolist() == [4]


# --------------------------------------------------------------------------- online learning


def _learn(table, used, rows_tokens, new_tokens, max_order):
    """Feed ``rows_tokens`` (one context per row) to learn_batch, the last ``new_tokens[i]``
    tokens of row i being new; returns how many pairs were counted."""
    from tasc_vllm.kernels.online_learning import learn_batch

    width = max(len(t) for t in rows_tokens) + 3
    token_ids = np.full((len(rows_tokens), width), 0, dtype=np.int32)
    for i, t in enumerate(rows_tokens):
        token_ids[i, : len(t)] = t
    lengths = np.array([len(t) for t in rows_tokens], dtype=np.int32)
    return learn_batch(np.arange(len(rows_tokens), dtype=np.int64), lengths, np.asarray(new_tokens, np.int64),
                       token_ids, table.view, max_order, used)


small_texts = st.lists(st.lists(st.integers(0, 3), min_size=1, max_size=20), min_size=1, max_size=6)


@settings(max_examples=60, deadline=None)
@given(corpus=small_texts, served=small_texts, split=st.integers(1, 5))
def test_learning_served_tokens_equals_counting_them_with_the_corpus(corpus, served, split):
    """With at most TOP_K distinct followers (4 token ids), learning a request's tokens step by
    step gives the table that counting corpus + served outputs from scratch gives."""
    from tasc_vllm.kernels.online_learning import with_room

    table, used = with_room(build_table(corpus_array(corpus), max_order=4), extra_entries=10_000)
    for seq in served:
        # the request gains its tokens a few at a time, as vLLM's steps hand them over
        for end in range(1, len(seq) + 1, split):
            stop = min(len(seq), end + split - 1)
            _learn(table, used, [seq[:stop]], [stop - (end - 1) if end > 1 else stop], 4)
    expected = brute_force(corpus + served, 4)
    assert used[0] == len(expected)
    for context, counter in expected.items():
        e = table_entry(table, list(context))
        assert e >= 0, context
        assert table.totals[e] == sum(counter.values())
        got = {int(t): int(c) for t, c in zip(table.nexts[e], table.counts[e]) if t >= 0}
        assert got == dict(counter)
        assert list(table.counts[e]) == sorted(table.counts[e], reverse=True)


def test_learning_stays_within_its_room_and_keeps_counting_known_contexts():
    from tasc_vllm.kernels.online_learning import with_room

    base = build_table(corpus_array([[1, 2, 3]]), max_order=3)
    table, used = with_room(base, extra_entries=2)
    start = int(used[0])
    _learn(table, used, [[5, 6, 7, 8, 9, 1, 2]], [7], 3)
    assert used[0] == start + 2  # no more new contexts than the room
    assert table.keys.shape[0] == start + 2
    e = table_entry(table, [1])
    assert table.totals[e] == 2 and table.nexts[e, 0] == 2 and table.counts[e, 0] == 2
    # the original table is untouched (the proposer's copy learns, the cached one does not)
    assert base.totals[table_entry(base, [1])] == 1


def test_a_full_context_replaces_followers_seen_once_and_decays_the_rest():
    from tasc_vllm.kernels.online_learning import with_room

    table, used = with_room(build_table(corpus_array([[9, 1], [9, 2], [9, 3], [9, 4], [9, 4]]), max_order=1), 10)
    e = table_entry(table, [9])
    _learn(table, used, [[9, 5]], [1], 1)  # a fifth follower: takes the place of one seen once
    assert 5 in table.nexts[e] and int(table.totals[e]) == 6
    counts = {int(t): int(c) for t, c in zip(table.nexts[e], table.counts[e])}
    assert counts[4] == 2 and counts[5] == 1


def observe(table, row, new, cal, max_order=3, space=NO_SPACE):
    tokens = np.array([row], dtype=np.int32)
    observe_batch(np.array([0]), np.array([len(row)], np.int32), np.array([new]), tokens, table.view,
                  params({**DEFAULTS, "max_order": max_order, "ctx_min": 1, "ctx_max": 8, "alpha": 1.0}, 1000), space, cal)


def test_calibration_scores_each_sources_guess_in_its_bucket():
    table = build_table(corpus_array([[1, 2, 3]] * 5), max_order=3)
    cal = new_calibration()
    # the last four tokens: 5 (nobody guesses), 1 (context: hit), 2 (corpus order 1: hit; context: hit),
    # 4 (corpus "1 2" -> 3: miss; context "5 1 2" -> 3: miss)
    observe(table, [5, 1, 2, 3, 5, 1, 2, 4], 4, cal)
    p = 5 / 6  # count / (total + alpha)
    expected = {corpus_bucket(1, p): (1, 1), corpus_bucket(2, p): (0, 1),
                context_bucket(1): (1, 1), context_bucket(2): (1, 1), context_bucket(3): (0, 1)}
    for b, (hits, trials) in expected.items():
        assert (cal[0, b], cal[1, b]) == (hits, trials), b
    assert cal[1].sum() == 5 and cal[0].sum() == 3


def test_calibration_stops_drafts_from_a_source_that_keeps_missing():
    table = build_table(corpus_array([[1, 2, 3]] * 5), max_order=3)
    cal = new_calibration()
    assert draft(table, [7, 1, 2], 1, cal=cal, threshold=0.5, wx=0.0) == [3]  # empty score: the formula, 5/6
    for _ in range(10):  # the model keeps writing 4 after "1 2"
        observe(table, [5, 1, 2, 3, 5, 1, 2, 4], 1, cal)
    assert draft(table, [7, 1, 2], 1, cal=cal, threshold=0.5, wx=0.0) == []
    assert draft(table, [7, 1, 2], 1, cal=cal, threshold=0.1, wx=0.0) == [3]  # still the best guess


def test_drafts_are_scored_by_what_the_next_step_accepted():
    cal = new_calibration()
    last = LastDrafts(rows=2, k=4)
    tokens = np.zeros((2, 16), dtype=np.int32)
    tokens[0, :6] = [1, 2, 3, 7, 8, 9]
    tokens[1, :6] = [1, 2, 3, 7, 5, 5]
    # step t: both rows at length 3 draft [7, 8, 9, 4] with running confidences 0.9, 0.7, 0.5, 0.3
    out = np.array([[7, 8, 9, 4]] * 2, dtype=np.int32)
    conf = np.array([[0.9, 0.7, 0.5, 0.3]] * 2)
    last.remember(2, np.array([0, 1]), np.array([3, 3], np.int32), out, np.array([4, 4], np.int32), conf)
    # step t+1: row 0 accepted 7 8 9 and gained a fourth token of its own (4 tokens, length 7);
    # row 1 shows a length that does not follow from its draft (another request took the row)
    lengths = np.array([7, 9], np.int32)
    tokens[0, 6] = 6
    scored = last.score(np.array([0, 1]), lengths, np.array([4, 2]), tokens, cal)
    assert scored == 1
    for c, hit in [(0.9, 1), (0.7, 1), (0.5, 1), (0.3, 0)]:
        assert (cal[0, draft_bucket(c)], cal[1, draft_bucket(c)]) == (hit, 1)
    assert last.score(np.array([0]), lengths, np.array([1]), tokens, cal) == 0  # scored once only


def test_a_draft_whose_accepted_tokens_differ_is_not_scored():
    cal = new_calibration()
    last = LastDrafts(rows=1, k=2)
    tokens = np.array([[1, 2, 3, 5, 6, 0]], dtype=np.int32)
    last.remember(1, np.array([0]), np.array([3], np.int32), np.array([[7, 8]], np.int32), np.array([2], np.int32),
                  np.array([[0.9, 0.8]]))
    assert last.score(np.array([0]), np.array([5], np.int32), np.array([2]), tokens, cal) == 0
    assert cal.sum() == 0


def test_draft_calibration_shortens_drafts_that_fail_past_a_confidence():
    table = build_table(corpus_array([[1, 2, 3, 4, 5, 6, 7, 8]] * 5), max_order=3)
    cal = new_calibration()
    full = draft(table, [9, 1, 2], 6, cal=cal, threshold=0.3, wx=0.0)
    assert full == [3, 4, 5, 6, 7, 8]
    conf = np.zeros((1, 6))
    out = np.zeros((1, 6), np.int32)
    out_len = np.zeros(1, np.int32)
    p = DEFAULTS
    tokens = np.array([[9, 1, 2, 0, 0, 0, 0, 0, 0, 0]], dtype=np.int32)
    draft_batch(np.array([0]), np.array([3], np.int32), tokens, np.array([6]), table.view,
                DraftParams(3, 1, 8, 1.0, 0.0, 1.0, 2.0, 0.3, 0.0, 0.0, 1000), NO_SPACE, cal, out, out_len, conf)
    assert np.all(np.diff(conf[0]) <= 0)  # a running product
    fourth = draft_bucket(conf[0, 3])
    cal[1, fourth] += 50  # tokens drafted at the fourth token's confidence were never accepted
    assert draft(table, [9, 1, 2], 6, cal=cal, threshold=0.3, wx=0.0) == [3, 4, 5]


def test_the_yield_rule_stops_when_a_token_would_lower_the_drafts_yield_per_cost():
    table = build_table(corpus_array([[1, 2, 3, 4, 5, 6, 7, 8]] * 5), max_order=3)
    step_cost = 3.0
    # every corpus guess is right 5 times in 6 (count / (total + alpha)): the draft's chance falls as 5/6 ** n
    chances = [(5 / 6) ** n for n in range(1, 7)]
    expected, length = 1.0, 0
    for n, q in enumerate(chances):  # the rule, worked by hand: q must beat expected / (step_cost + n)
        if q < expected / (step_cost + n):
            break
        expected, length = expected + q, n + 1
    assert length == 3
    first_rule = draft(table, [9, 1, 2], 6, wx=0.0, threshold=1 / step_cost)
    yield_rule = draft(table, [9, 1, 2], 6, wx=0.0, threshold=1 / step_cost, step_cost=step_cost)
    assert first_rule == [3, 4, 5, 6, 7, 8]  # every token beats the first token's bar of 1/3
    assert yield_rule == first_rule[:length]


def test_free_draft_tokens_need_only_the_threshold_and_count_no_cost_after():
    table = build_table(corpus_array([[1, 2, 3, 4, 5, 6, 7, 8]] * 5), max_order=3)
    step_cost, free = 3.0, 2.0
    chances = [(5 / 6) ** n for n in range(1, 7)]
    expected, length = 1.0, 0
    for n, q in enumerate(chances):  # by hand: free tokens face only the threshold, later ones the yield bar
        if n >= free and q < expected / (step_cost + n - free):
            break
        expected, length = expected + q, n + 1
    assert length == 2  # the first two are free, and the third would lower the yield per cost
    assert draft(table, [9, 1, 2], 6, wx=0.0, threshold=0.05, step_cost=step_cost, free_draft=free) == [3, 4]
    # a bar the first token fails without free tokens, passed when it costs nothing
    assert draft(table, [9, 1, 2], 6, wx=0.0, threshold=0.05, step_cost=1.1) == []
    assert draft(table, [9, 1, 2], 6, wx=0.0, threshold=0.05, step_cost=1.1, free_draft=1.0) == [3]
    # free tokens beyond what the statistics allow change nothing: the threshold still stops the draft
    assert draft(table, [9, 1, 2], 6, wx=0.0, threshold=0.5, step_cost=3.0, free_draft=6.0) == [3, 4, 5]


def test_stop_rule_setting():
    from tasc_vllm.config import TascConfig, load_config
    from tasc_vllm.errors import TascError

    assert TascConfig(step_overhead=6.0).step_cost(1) == 7.0
    assert TascConfig(step_overhead=6.0).step_cost(4) == 2.5
    assert TascConfig(step_overhead=6.0, stop_rule="first").step_cost(1) == 0.0
    assert TascConfig(step_overhead=0.0).step_cost(1) == 0.0
    assert TascConfig(step_overhead=6.0, free_draft=5.0).free_per_row(1) == 5.0
    assert TascConfig(step_overhead=6.0, free_draft=5.0).free_per_row(2) == 2.0  # two rows share the six tokens
    assert TascConfig(step_overhead=6.0, free_draft=5.0).free_per_row(16) == 0.0  # past the knee already
    assert TascConfig(step_overhead=0.0, free_draft=4.0).free_per_row(1) == 0.0  # the yield rule is off
    with pytest.raises(TascError, match="free_draft must be in"):
        load_config(environ={"TASC_FREE_DRAFT": "-1"})
    with pytest.raises(TascError, match="stop_rule must be 'yield' or 'first'"):
        load_config(environ={"TASC_STOP_RULE": "longest"})


def test_token_classes_tell_a_merged_token_from_a_word():
    """A token that joins letters to two or more punctuation characters (TASC-ft merges
    ``", "arguments": {"``) is no part of a value; ``n't`` and ``St.`` still are."""
    from tasc_vllm.index.ngram_cache import token_classes
    from tasc_vllm.kernels.token_classes import DIGIT, JOIN, MIXED, PUNCT, SPACE, WORD, is_content, is_joiner

    texts = [" Avenue", "n't", "St.", '", "arguments": {"', '_name": "', "42", "2022-03", '",', "\n  ", "",
             "_", "-", '"', " -", ","]
    classes = token_classes(None, len(texts), texts)
    assert classes.tolist() == [WORD, WORD, WORD, MIXED, MIXED, DIGIT, DIGIT, PUNCT, SPACE, WORD,
                                JOIN, JOIN, PUNCT, PUNCT, PUNCT]
    assert [bool(is_content(classes, t)) for t in range(len(texts))] == [True, True, True, False, False, True, True,
                                                                        False, False, True] + [False] * 5
    assert [bool(is_joiner(classes, t)) for t in range(len(texts))] == [False] * 10 + [True, True, False, False, False]
