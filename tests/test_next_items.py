"""The prompt's next item: the item after the one the answer wrote last, in a list the prompt
holds (tasc_vllm.kernels.next_items)."""

import numpy as np

from synthetic_policy import SyntheticPolicy
from tasc_vllm.kernels.candidates import FEATURES
from tasc_vllm.kernels.echoes import empty_echoes
from tasc_vllm.kernels.prompt_copies import empty_copies
from tasc_vllm.kernels.input_reading import no_input_text
from tasc_vllm.kernels.next_items import ANCHOR, next_item
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
    rng = np.random.default_rng(3)

    def example():
        keys = [(int(k),) for k in rng.choice(list(KEYS), size=4, replace=False)]
        return listed(keys), written(keys), keys

    examples = [example() for _ in range(150)]
    text = no_input_text(VOCAB)._replace(header=np.array([ASK]))  # the prompt's last token: the answer's start
    policy = SyntheticPolicy([p for p, _, _ in examples], [a for _, a, _ in examples], VOCAB, CLASSES, text)
    item = FEATURES.index("the prompt's next item")
    right = {"item": 0, "none": 0}
    for _ in range(40):
        prompt, answer, keys = example()
        want = keys[2][0]  # the third key is next
        ctx = np.array(prompt + answer[:answer.index(want)], dtype=np.int64)
        m = policy.matches(ctx, len(prompt))
        for name, matches in (("item", m), ("none", m._replace(iptr=-1, iagree=0, iinto=0))):
            cand, feats, best = policy.choose(ctx, matches, empty_echoes(), empty_copies())
            if name == "item":
                (c,) = [c for c in range(len(cand)) if cand[c] == want]
                assert feats[c, item] == 1.0
            right[name] += best == want
    assert right["item"] >= 38 and right["none"] < 15  # without it, one key of thirty at a guess
