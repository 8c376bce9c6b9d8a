"""The prompt format: a tokenizer's own chat template, or the plain format for one without."""

import logging

import pytest

from tasc_vllm.index.ngram_cache import output_frame, tokenizer_fingerprint
from tasc_vllm.index.policy import prompt_token_ids
from tasc_vllm.prompt_format import PLAIN_CHAT_TEMPLATE, chat_template, give_plain_format, render_chat

CHAT = [{"role": "system", "content": "Label it."}, {"role": "user", "content": "12 Main St"},
        {"role": "assistant", "content": '{"a": 1}'}, {"role": "user", "content": "9 Oak Ave"}]


@pytest.fixture
def bare(tokenizer):
    """The default model's tokenizer with its chat template taken away, as a base model's."""
    import copy

    tok = copy.deepcopy(tokenizer)
    tok.chat_template = None
    tok.name_or_path = f"bare-{id(tok)}"  # a name of its own: its log line is said once, here
    return tok


def test_a_tokenizer_with_a_template_keeps_it(tokenizer):
    assert chat_template(tokenizer) == tokenizer.chat_template
    assert render_chat(tokenizer, CHAT) == tokenizer.apply_chat_template(CHAT, tokenize=False,
                                                                          add_generation_prompt=True)


def test_without_a_template_the_plain_format_is_used_and_said_once(bare, caplog):
    with caplog.at_level(logging.WARNING, logger="tasc_vllm"):
        text = render_chat(bare, CHAT)
        assert render_chat(bare, CHAT, add_generation_prompt=False) == text  # no generation prompt
    bos = bare.bos_token or ""
    assert text == f'{bos}Label it.\n\n12 Main St\n\n{{"a": 1}}{bare.eos_token}\n\n9 Oak Ave\n\n'
    said = [r.getMessage() for r in caplog.records if "no chat template" in r.getMessage()]
    assert len(said) == 1 and bare.name_or_path in said[0] and "plain format" in said[0]
    assert bare.chat_template is None  # rendering does not change the tokenizer


def test_the_plain_format_frames_answers_and_prompts(bare, tokenizer):
    prefix, end = output_frame(bare)
    assert prefix == [] and end == bare.eos_token_id  # the answer follows the blank line; EOS ends it
    (ids,) = prompt_token_ids(bare, ["12 Main St"])
    assert bare.decode(ids) == render_chat(bare, [{"role": "user", "content": "12 Main St"}])
    # tokens cached for the plain format are not taken for the same vocabulary with a template
    assert tokenizer_fingerprint(bare) != tokenizer_fingerprint(tokenizer)


def test_a_fine_tune_is_saved_with_the_format_it_was_trained_on(bare, tokenizer, tmp_path):
    from transformers import AutoTokenizer

    assert give_plain_format(bare) and bare.chat_template == PLAIN_CHAT_TEMPLATE
    assert not give_plain_format(tokenizer)  # a template of its own is kept
    bare.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert again.chat_template == PLAIN_CHAT_TEMPLATE
    assert render_chat(again, CHAT) == render_chat(bare, CHAT)
