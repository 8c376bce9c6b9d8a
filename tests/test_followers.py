"""benchmarks.harness.followers: the widest n-gram candidate sets, checked against a brute-force scan."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.harness.followers import SETS, ContextFollowers, RequestFollowers, wide_hits

SPACE_TOKENS = (0,)  # token 0 plays a whitespace-only token
SPACE = np.array([1, 0, 0, 0, 0, 0], dtype=np.uint8)


def _followers(sources, ctx):
    """Tokens at allowed positions of ``sources`` ((sequence, first allowed position, end)) that
    follow ``ctx``."""
    o = len(ctx)
    return {s[i] for s, lo, hi in sources for i in range(max(lo, o), hi) if list(s[i - o : i]) == list(ctx)}


def _known(sources, history, max_order):
    out = []
    for o in range(1, min(max_order, len(history)) + 1):
        f = _followers(sources, history[len(history) - o :])
        if not f:
            break
        out.append(f)
    return out


def brute_force(corpus_texts, prompts, outputs, max_order):
    """The sets of :func:`wide_hits` by scanning every sequence at every position."""
    learned = [(t, 1, len(t)) for t in corpus_texts]
    hits = {s: [] for s in SETS}
    for prompt, out in zip(prompts, outputs):
        seq = list(prompt) + list(out)
        for s in SETS:
            hits[s].append([])
        for pos in range(len(prompt) + 1, len(seq)):
            table = _known(learned + [(seq, len(prompt), pos)], seq[:pos], max_order)
            exact = _known([(seq, 1, pos)], seq[:pos], max_order)
            kept = [t for t in seq[:pos] if t not in SPACE_TOKENS]
            spaced = _known([(kept, 1, len(kept))], kept, max_order)
            longest = set().union(*table[-2:], *exact[-1:], *spaced[-1:])
            every = set().union(*table, *exact, *spaced)
            hits["longest"][-1].append(seq[pos] in longest)
            hits["every"][-1].append(seq[pos] in every)
        learned.append((seq, len(prompt), len(seq)))
    return hits


def _as_corpus(texts):
    return np.array([t for text in texts for t in [*text, -1]][:-1] if texts else [], dtype=np.int32)


token_lists = st.lists(st.integers(0, 5), min_size=2, max_size=14)


@settings(max_examples=150, deadline=None)
@given(corpus=st.lists(token_lists, min_size=1, max_size=4),
       requests=st.lists(st.tuples(token_lists, token_lists), min_size=1, max_size=3),
       max_order=st.integers(1, 4))
def test_wide_sets_equal_a_brute_force_scan(corpus, requests, max_order):
    prompts = [p for p, _ in requests]
    outputs = [o for _, o in requests]
    got = wide_hits(_as_corpus(corpus), prompts, outputs, SPACE, max_order)
    want = brute_force(corpus, prompts, outputs, max_order)
    positions = sum(len(o) - 1 for o in outputs)
    for s in SETS:
        assert got[s]["hits"] == want[s]
        assert got[s]["share"] == sum(map(sum, want[s])) / max(positions, 1)
    # every context's set holds the longest contexts' set
    assert all(not a or b for la, lb in zip(got["longest"]["hits"], got["every"]["hits"]) for a, b in zip(la, lb))
    assert got["every"]["mean_size"] >= got["longest"]["mean_size"]


def test_a_repeated_answer_is_covered_by_what_online_learning_added():
    prompt = [1, 2, 3]
    answer = [4, 5, 1, 4, 2, 5, 3]
    got = wide_hits(_as_corpus([[5, 5]]), [prompt, prompt], [answer, answer], SPACE, 3)
    assert not all(got["longest"]["hits"][0])  # the first time, 5 after 4 was never seen
    assert all(got["longest"]["hits"][1])  # the second time every token followed the same context before


def _request(seq, upto, space):
    req = RequestFollowers(4, space)
    for i in range(upto):
        req.push(seq, i)
    return req.sets(seq, upto)


def test_the_request_is_matched_with_whitespace_tokens_skipped():
    # the prompt holds 1 2 3 compact; the answer lays it out with a "whitespace" token 0 before the 3
    seq = [1, 2, 3] + [1, 2, 0, 3]
    assert _request(seq, 6, SPACE) == ({3}, {3})  # "1 2" matched past the 0: 3 followed
    assert _request(seq, 6, np.zeros(6, dtype=np.uint8)) == (set(), set())  # "0" never occurred before
    assert _request(seq, 5, SPACE) == ({3}, {3})  # before the 0, token for token and skipped alike


def test_corpus_contexts_never_cross_text_boundaries():
    table = ContextFollowers(3)
    table.add_texts(_as_corpus([[1, 2], [3, 4]]))
    assert (2,) not in table.followers  # 2 ends its text: nothing follows it
    assert table.known([2, 3], 2) == [{4}]  # "3" is known, "2 3" spans the two texts
    assert table.known([1], 1) == [{2}]
