"""The echo table: what the answers wrote next where the request's match went on alike."""

import numpy as np
import pytest

from synthetic_policy import SyntheticPolicy
from tasc_vllm.kernels.candidates import FEATURES, PolicyParams
from tasc_vllm.kernels.echoes import (ECHO_LENGTH, build_echoes, check_echoes, echo_entry, echo_key,
                                      empty_echoes)
from tasc_vllm.kernels.input_reading import no_input_text
from tasc_vllm.kernels.ngram_table import TOP_K
from tasc_vllm.kernels.prompt_copies import empty_copies
from tasc_vllm.kernels.training_rows import echo_pairs

NO_SPACE = np.zeros(0, np.uint8)


def key_of(tokens):
    """The echo key of a guess followed by exactly these tokens."""
    seq = np.asarray(tokens, dtype=np.int64)
    return np.uint64(echo_key(seq, len(seq), 0))


def test_the_table_counts_each_key_s_followers_most_frequent_first():
    a, b = key_of(range(1, 7)), key_of(range(2, 8))
    keys = [a] * 7 + [b] * 2 + [0] * 3  # 0: a position without a match, dropped
    nexts = [5, 9, 5, 3, 9, 5, 1, 4, 4] + [7] * 3
    echo = build_echoes(np.array(keys, dtype=np.uint64), np.array(nexts))
    check_echoes(echo)
    ia, ib = echo_entry(echo, a), echo_entry(echo, b)
    assert ia >= 0 and ib >= 0 and echo_entry(echo, key_of(range(3, 9))) == -1 and echo_entry(echo, np.uint64(0)) == -1
    followers = lambda i: list(zip(echo.tokens[echo.first[i]:echo.first[i + 1]].tolist(),
                                   echo.counts[echo.first[i]:echo.first[i + 1]].tolist()))
    assert followers(ia) == [(5, 3), (9, 2), (1, 1), (3, 1)]  # ties: the smaller token first
    assert echo.totals[ia] == 7 and followers(ib) == [(4, 2)] and echo.totals[ib] == 2
    many = build_echoes(np.full(TOP_K + 3, a, dtype=np.uint64), np.arange(TOP_K + 3))
    assert many.first[1] == TOP_K and many.totals[0] == TOP_K + 3  # the rest count in the total only
    assert build_echoes(np.zeros(3, np.uint64), np.arange(3)).keys.size == 0
    check_echoes(empty_echoes())


def test_a_key_is_the_guess_and_the_tokens_after_it():
    seq = np.array([9, 1, 2, 3, 4, 5, 6, 9, 1, 2, 3, 4, 5, 6, 7], dtype=np.int64)
    assert echo_key(seq, len(seq), 1) == echo_key(seq, len(seq), 8) != 0  # the same six tokens
    assert echo_key(seq, len(seq), 2) != echo_key(seq, len(seq), 1)
    assert echo_key(seq, len(seq), -1) == 0  # no match
    assert echo_key(seq, 8 + ECHO_LENGTH - 1, 8) == 0  # fewer than ECHO_LENGTH tokens known from the guess on
    assert echo_key(seq, 8 + ECHO_LENGTH, 8) == echo_key(seq, len(seq), 8)


def test_a_table_that_the_hot_path_cannot_read_is_refused():
    echo = build_echoes(np.array([key_of(range(1, 7)), key_of(range(2, 8))], dtype=np.uint64), np.array([3, 4]))
    with pytest.raises(ValueError, match="not ascending"):
        check_echoes(echo._replace(keys=echo.keys[::-1].copy()))
    with pytest.raises(ValueError, match="out of range"):
        check_echoes(echo._replace(first=np.array([0, 1, 3])))
    with pytest.raises(ValueError, match="mismatched"):
        check_echoes(echo._replace(totals=echo.totals[:1]))
    with pytest.raises(ValueError, match="negative"):
        check_echoes(echo._replace(tokens=np.array([3, -1])))


# A schema-like prompt and answer: the prompt lists keys with their types, the answer writes
# each key and then a mark that depends on the key's type (a quote for a string, a colon for a
# number), as a function call does.
OPEN, CLOSE, COLON, BRACE, TYPE, STRING, NUMBER, END, SEMI, QUOTE, NUM_MARK, VALUE, ASK = range(13)
KEYS = range(13, 33)
VOCAB = 40
CLASSES = np.array([3] * 13 + [0] * (VOCAB - 13), dtype=np.uint8)  # marks are punctuation, keys words


def schema_example(rng, n_keys=2):
    keys = rng.choice(list(KEYS), size=n_keys, replace=False)
    types = rng.integers(0, 2, size=n_keys)
    prompt = [ASK]
    answer = [OPEN]
    for k, t in zip(keys, types):
        prompt += [int(k), COLON, BRACE, TYPE, STRING if t == 0 else NUMBER, END, SEMI]
        answer += [int(k), QUOTE if t == 0 else NUM_MARK, VALUE]
    return np.array(prompt + [ASK], dtype=np.int32), np.array(answer + [CLOSE], dtype=np.int32), keys, types


def test_echo_pairs_key_each_answer_position_by_the_prompt_after_its_match():
    rng = np.random.default_rng(0)
    prompt, answer, keys, _ = schema_example(rng)
    seq = np.concatenate([prompt, answer]).astype(np.int64)
    out_keys, out_next, owner = (np.zeros(64, np.uint64), np.zeros(64, np.int64), np.zeros(64, np.int64))
    params = PolicyParams(4, 1, 8, 0, 0.0, VOCAB)
    start = len(prompt) + 1
    got = echo_pairs(seq, np.array([0, len(seq)]), np.array([start]), params, NO_SPACE, CLASSES,
                     no_input_text(VOCAB), out_keys, out_next, owner)
    assert got == len(seq) - start and np.array_equal(out_next[:got], seq[start:]) and not owner[:got].any()
    # after the answer's first key, its match in the prompt guesses COLON: the key is the six
    # prompt tokens from there, whatever key it was
    at = list(seq).index(keys[0], len(prompt)) + 1 - start
    where = list(prompt).index(keys[0]) + 1
    assert out_keys[at] == echo_key(seq, len(seq), where) == key_of(prompt[where:where + ECHO_LENGTH])


def test_the_scorer_learns_what_the_prompt_says_after_the_match():
    """Which mark follows a key depends only on the type the prompt gives that key: no n-gram
    of the answer tells it, the echo table does, and the trained scorer drafts it."""
    rng = np.random.default_rng(1)
    examples = [schema_example(rng) for _ in range(120)]
    policy = SyntheticPolicy([p for p, _, _, _ in examples], [a for _, a, _, _ in examples], VOCAB, CLASSES,
                             no_input_text(VOCAB))
    assert policy.info["echo_keys"] == 2  # a string key and a number key, however many keys
    share = FEATURES.index("share of the echo")
    right = {"echo": 0, "none": 0}
    for _ in range(40):
        prompt, answer, keys, types = schema_example(rng)
        ctx = np.concatenate([prompt, answer[:2]]).astype(np.int64)  # OPEN and the first key
        m = policy.matches(ctx, len(prompt))
        want = QUOTE if types[0] == 0 else NUM_MARK
        for name, table_of_echoes in (("echo", policy.echo), ("none", empty_echoes())):
            cand, feats, best = policy.choose(ctx, m, table_of_echoes, empty_copies())
            (c,) = [c for c in range(len(cand)) if cand[c] == want]
            assert feats[c, share] == (1.0 if name == "echo" else 0.0)
            right[name] += best == want
    assert right["echo"] == 40 and right["none"] < 30  # without the echo, a guess between two marks
