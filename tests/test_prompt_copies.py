"""The copy table: where in its prompt the answer copies from next, after the same answer
tokens (tasc_vllm.kernels.prompt_copies)."""

import numpy as np
import pytest

from synthetic_policy import SyntheticPolicy
from tasc_vllm.kernels.candidates import FEATURES
from tasc_vllm.kernels.echoes import empty_echoes
from tasc_vllm.kernels.input_reading import no_input_text
from tasc_vllm.kernels.prompt_copies import (ANCHOR, MAX_OCCURRENCES, MIN_COUNT, ORDER, build_copies, check_copies,
                                             context_key, copy_examples, copy_guess, empty_copies)

# a prompt that describes a call, then lists its keys after PROPS COLON OPEN; an answer that
# opens with CALL and writes the keys in the listed order, each with its value
ASK, CALL, OPEN, CLOSE, COLON, TYPE, END, SEMI, MARK, VALUE, PROPS, DESC = range(12)
KEYS = range(12, 42)
VOCAB = 48
CLASSES = np.array([3] * 12 + [0] * (VOCAB - 12), dtype=np.uint8)  # marks are punctuation, keys words


def schema(keys, described=()):
    """The prompt: a description that names some keys, then the keys' list."""
    prompt = [ASK, DESC, MARK, DESC] + list(described) + [PROPS, COLON, OPEN]
    for i, k in enumerate(keys):
        prompt += ([SEMI] if i else []) + [k, COLON, TYPE, END]
    return prompt + [ASK]


def call(keys):
    answer = [CALL]
    for k in keys:
        answer += [k, MARK, VALUE]
    return answer + [CLOSE]


def examples_of(seqs):
    """The copy table's examples from (prompt, answer) pairs, every predicted answer position."""
    ctx_keys = np.zeros(5000, np.uint64)
    pair_keys = np.zeros(5000, np.uint64)
    anchors = np.zeros((5000, ANCHOR), np.int64)
    weights = np.zeros(5000)
    n_keys = n_pairs = 0
    for prompt, answer in seqs:
        seq = np.array(prompt + answer, dtype=np.int64)
        for p in range(len(prompt) + 1, len(seq)):
            n_keys, n_pairs = copy_examples(seq, p, len(prompt), CLASSES, ctx_keys, n_keys, pair_keys, anchors,
                                            weights, n_pairs)
    return ctx_keys[:n_keys], pair_keys[:n_pairs], anchors[:n_pairs], weights[:n_pairs]


def guess(copies, prompt, answer_so_far, start=None):
    seq = np.array(prompt + answer_so_far, dtype=np.int64)
    g, share, length, count = copy_guess(seq, len(seq), seq[:0], 0, len(prompt) if start is None else start, copies)
    return (int(seq[g]) if g >= 0 else None), share, length, int(count)


def test_each_occurrence_in_the_prompt_counts_its_share_under_the_answers_contexts():
    prompt = schema([20, 21], described=[21])  # 21 twice in the prompt, 20 once
    answer = call([20, 21])
    ctx_keys, pair_keys, anchors, weights = examples_of([(prompt, answer)])
    # every predicted position counts its contexts: 1 to ORDER answer tokens before it
    assert len(ctx_keys) == sum(min(ORDER, p) for p in range(1, len(answer)))
    seq = np.array(prompt + answer, dtype=np.int64)
    start = len(prompt)
    (i,) = np.flatnonzero(pair_keys == context_key(seq, len(seq), seq, start + 1, 1))  # CALL, before 20
    assert anchors[i].tolist() == [PROPS, COLON, OPEN] and weights[i] == 1.0
    # 21: two occurrences, half each, under each of its contexts (VALUE; MARK VALUE; 20 MARK VALUE)
    at_21 = start + answer.index(21)
    for length in range(1, ORDER + 1):
        rows = np.flatnonzero(pair_keys == context_key(seq, len(seq), seq, at_21, length))
        assert sorted(anchors[r].tolist() for r in rows) == sorted([[DESC, MARK, DESC], [TYPE, END, SEMI]])
        assert weights[rows].tolist() == [0.5, 0.5]
    # punctuation is never copied; a token found more than MAX_OCCURRENCES times tells nothing
    assert len(pair_keys) == ORDER * 2 + 1
    crowded = schema([20], described=[20] * MAX_OCCURRENCES)
    assert len(examples_of([(crowded, call([20]))])[1]) == 0


def test_a_context_keeps_its_heaviest_anchor_when_written_often_enough():
    u = np.uint64
    ctx_keys = np.array([5, 5, 5, 7, 9, 9], u)
    pair_keys = np.array([5, 5, 5, 7, 9, 9], u)
    anchors = np.array([[4, 5, 6], [1, 2, 3], [4, 5, 6], [1, 1, 1], [4, 5, 6], [1, 2, 3]])
    copies = build_copies(ctx_keys, pair_keys, anchors, np.array([0.5, 1.0, 1.0, 1.0, 1.0, 1.0]))
    check_copies(copies)
    assert copies.keys.tolist() == [5, 9]  # 7 came once, under MIN_COUNT
    assert MIN_COUNT == 2
    assert copies.anchors.tolist() == [[4, 5, 6], [1, 2, 3]]  # 1.5 against 1.0; a tie: the first in token order
    assert copies.weights.tolist() == [1.5, 1.0] and copies.totals.tolist() == [3, 2]
    empty = build_copies(ctx_keys, pair_keys[:0], anchors[:0], np.zeros(0))
    check_copies(empty)
    assert empty.keys.size == 0 and guess(empty, [ASK] * 5, [CALL]) == (None, 0.0, 0, 0)


def test_bad_tables_are_refused():
    good = build_copies(np.array([5, 5], np.uint64), np.array([5], np.uint64), np.array([[1, 2, 3]]), np.ones(1))
    check_copies(good)
    check_copies(empty_copies())
    bad = (good._replace(anchors=good.anchors[:, :2]),
           good._replace(keys=np.array([5, 5], np.uint64), weights=np.ones(2), totals=np.array([2, 2]),
                         anchors=np.ones((2, ANCHOR), np.int64)),
           good._replace(weights=np.array([3.0])))
    for table in bad:
        with pytest.raises(ValueError):
            check_copies(table)


def test_it_guesses_the_token_after_the_learned_anchor_in_this_prompt():
    seen = [(schema([k, k + 1]), call([k, k + 1])) for k in (20, 23, 26)]
    copies = build_copies(*examples_of(seen))
    # a new request: its first key (30) follows the same anchor, after a description that names 31
    prompt = schema([30, 31], described=[31])
    assert guess(copies, prompt, [CALL]) == (30, 1.0, 1, 3)
    # after MARK VALUE (six times: before the second key, and before CLOSE) half the answers
    # copied the key after TYPE END SEMI; MARK alone is followed by punctuation, never copied
    assert guess(copies, prompt, [CALL, 30, MARK, VALUE]) == (31, 0.5, 2, 6)
    assert guess(copies, prompt, [CALL, 30, MARK]) == (None, 0.0, 0, 0)
    # the longest context the answers wrote often enough wins: 20 MARK VALUE, always before a key
    twice = build_copies(*examples_of([(schema([20, k]), call([20, k])) for k in (21, 22)]))
    assert guess(twice, schema([20, 35]), [CALL, 20, MARK, VALUE]) == (35, 1.0, ORDER, 2)
    # no guess without the answer's start, nor where the prompt lacks the anchor
    assert guess(copies, prompt, [CALL], start=-1) == (None, 0.0, 0, 0)
    assert guess(copies, [ASK, DESC, 30, 31, ASK], [CALL]) == (None, 0.0, 0, 0)
    # the context is the answer's: prompt tokens before it make no context
    assert guess(copies, prompt[:-1] + [CALL, ASK], [])[0] is None


def test_the_trained_scorer_drafts_the_first_listed_key():
    """Which key an answer writes first depends only on the prompt's list: no n-gram of the
    answer tells it, the request's match has nothing to go from after CALL, and the copy
    table points at the list; the trained scorer drafts it."""
    rng = np.random.default_rng(5)

    def example():
        keys = [int(k) for k in rng.choice(list(KEYS), size=3, replace=False)]
        described = [int(k) for k in rng.choice(list(KEYS), size=4)]
        return schema(keys, described), call(keys), keys

    examples = [example() for _ in range(150)]
    text = no_input_text(VOCAB)._replace(header=np.array([ASK]))  # the prompt's last token: the answer's start
    policy = SyntheticPolicy([p for p, _, _ in examples], [a for _, a, _ in examples], VOCAB, CLASSES, text)
    assert policy.copies.keys.size > 0
    share = FEATURES.index("share of the prompt copy")
    right = {"copies": 0, "none": 0}
    for _ in range(40):
        prompt, answer, keys = example()
        ctx = np.array(prompt + [CALL], dtype=np.int64)
        m = policy.matches(ctx, len(prompt))
        for name, copies in (("copies", policy.copies), ("none", empty_copies())):
            cand, feats, best = policy.choose(ctx, m, empty_echoes(), copies)
            if name == "copies":
                (c,) = [c for c in range(len(cand)) if cand[c] == keys[0]]
                assert feats[c, share] > 0.9
            right[name] += best == keys[0]
    assert right["copies"] >= 38 and right["none"] < 10  # without it, one key of thirty at a guess
