"""The prompt's next item: the item after the one the answer wrote last, in a list the prompt
holds (tasc_vllm.kernels.next_items)."""

import numpy as np

from tasc_vllm.kernels.candidates import FEATURES, MAX_CANDIDATES, NUM_FEATURES, PolicyParams, gather
from tasc_vllm.kernels.echoes import empty_echoes
from tasc_vllm.kernels.input_reading import no_input_text
from tasc_vllm.kernels.learned_drafting import request_matches
from tasc_vllm.kernels.next_items import ANCHOR, next_item
from tasc_vllm.kernels.ngram_table import build_table
from tasc_vllm.kernels.scorer import best_candidate

NO_SPACE = np.zeros(0, np.uint8)
# a prompt that lists keys, each as KEY COLON TYPE END, with SEMI between them; an answer that
# writes them in that order, OPEN KEY MARK VALUE, then COMMA QUOTE before each next key
ASK, OPEN, CLOSE, COLON, TYPE, END, SEMI, MARK, VALUE, COMMA, QUOTE = range(11)
KEYS = range(11, 41)
VOCAB = 48
CLASSES = np.array([3] * 11 + [0] * (VOCAB - 11), dtype=np.uint8)  # marks are punctuation, keys words


def listed(keys):
    """The prompt: each key (one or more tokens) with its schema."""
    prompt = [ASK]
    for i, k in enumerate(keys):
        prompt += ([SEMI] if i else []) + list(k) + [COLON, TYPE, END]
    return prompt + [ASK]


def written(keys):
    """The answer: the keys in order, each with its value."""
    answer = [OPEN]
    for i, k in enumerate(keys):
        answer += ([COMMA, QUOTE] if i else []) + list(k) + [MARK, VALUE]
    return answer + [CLOSE]


def guess(prompt, answer_so_far, start=None):
    seq = np.array(prompt + answer_so_far, dtype=np.int64)
    g, agree, into = next_item(seq, len(seq), seq[:0], 0, len(prompt) if start is None else start)
    return (int(seq[g]) if g >= 0 else None), agree, into


def test_after_a_separator_it_guesses_the_key_the_prompt_lists_next():
    keys = [(21,), (22,), (23,)]
    prompt, answer = listed(keys), written(keys)
    after_second = answer.index(22) + 5  # ... 22 MARK VALUE COMMA QUOTE
    assert guess(prompt, answer[:after_second]) == (23, ANCHOR + 2, 0)  # END SEMI lead in, and TYPE, COLON before
    after_first = answer.index(21) + 5
    assert answer[after_first - 2:after_first] == [COMMA, QUOTE]
    # the separator's first time: no earlier item to go on from
    assert guess(prompt, answer[:after_first]) == (None, 0, 0)
    # after the last key the prompt lists none
    assert guess(prompt, answer[:-1] + [COMMA, QUOTE]) == (None, 0, 0)
    # without the answer's start there is no prompt to read
    assert guess(prompt, answer[:after_second], start=-1) == (None, 0, 0)


def test_inside_a_key_it_goes_on_with_the_listed_one_not_the_written_one():
    mass1, temp1, mass2 = (31, 24), (32, 24), (31, 25)  # "mass" "1", "temp" "1", "mass" "2"
    keys = [mass1, temp1, mass2]
    prompt, answer = listed(keys), written(keys)
    so_far = answer[:answer.index(32) + 6] + [31]  # ... COMMA QUOTE "mass"
    assert so_far[-3:] == [COMMA, QUOTE, 31]
    assert guess(prompt, so_far) == (25, ANCHOR + 2, 1)  # "2", where the answer's own "mass" went on with "1"


def test_the_trained_scorer_drafts_the_next_listed_key():
    """Which key comes next depends only on the prompt's order: no n-gram of the answer tells
    it, the prompt's next item does, and the trained scorer drafts it."""
    from tasc_vllm.index.policy import train_scorer

    rng = np.random.default_rng(3)

    def example():
        keys = [(int(k),) for k in rng.choice(list(KEYS), size=4, replace=False)]
        return listed(keys), written(keys), keys

    examples = [example() for _ in range(150)]
    corpus = np.concatenate([np.r_[a, -1] for _, a, _ in examples]).astype(np.int32)
    params = PolicyParams(4, 1, 8, 0, 0.0, VOCAB)
    text = no_input_text(VOCAB)._replace(header=np.array([ASK]))  # the prompt's last token: the answer's start
    trees, weights, _, _ = train_scorer(corpus, [np.array(p, np.int32) for p, _, _ in examples], params, NO_SPACE,
                                        CLASSES, text, 0)
    table = build_table(corpus, 4, classes=CLASSES)
    params = params._replace(corpus_entries=int(table.keys.shape[0]))
    cand = np.empty(MAX_CANDIDATES, dtype=np.int64)
    feats = np.empty((MAX_CANDIDATES, NUM_FEATURES))
    entries = np.empty(4, dtype=np.int64)
    item = FEATURES.index("the prompt's next item")
    right = {"item": 0, "none": 0}
    for _ in range(40):
        prompt, answer, keys = example()
        so_far = answer[:answer.index(keys[2][0])]  # the third key is next
        ctx = np.array(prompt + so_far, dtype=np.int64)
        m = request_matches(ctx, len(ctx), ctx[:0], 0, params, NO_SPACE, CLASSES, text, len(prompt))
        for name, matches in (("item", m), ("none", m._replace(iptr=-1, iagree=0, iinto=0))):
            nc = gather(ctx, len(ctx), ctx[:0], 0, table.view, empty_echoes(), params, CLASSES, matches, entries,
                        cand, feats)
            if name == "item":
                (c,) = [c for c in range(nc) if cand[c] == keys[2][0]]
                assert feats[c, item] == 1.0
            right[name] += nc > 0 and cand[best_candidate(trees, weights, feats, nc)[0]] == keys[2][0]
    assert right["item"] >= 38 and right["none"] < 15  # without it, one key of thirty at a guess
