"""How a chat becomes the text a model reads: the tokenizer's own chat template, or, for a
model that has none (a base model such as Gemma-3 270M), the plain format.

The plain format is BOS (when the tokenizer has one), then every message's text followed
by a blank line; an assistant message ends with EOS before its blank line.  The answer
follows the user's text and its blank line directly: there is no generation prompt.  A
fine-tune of such a model is saved with the plain format as its chat template
(:func:`give_plain_format`), so ``vllm serve DIR`` answers chat requests as it was trained.

Every place that renders a chat goes through :func:`render_chat` (or :func:`chat_template`),
so training, the index's frame, the drafting policy and the benchmarks agree on one format.
The first use of the plain format for a tokenizer says so in one log line.
"""

from __future__ import annotations

import logging

logger = logging.getLogger("tasc_vllm")

PLAIN_CHAT_TEMPLATE = (
    "{% if bos_token %}{{ bos_token }}{% endif %}"
    "{% for message in messages %}"
    "{{ message['content'] }}"
    "{% if message['role'] == 'assistant' and eos_token %}{{ eos_token }}{% endif %}"
    "{{ '\\n\\n' }}"
    "{% endfor %}"
)

_announced: set[str] = set()


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def chat_template(tokenizer) -> str:
    """The tokenizer's chat template, or the plain format if it has none (said once per model)."""
    own = getattr(tokenizer, "chat_template", None)
    if own:
        return own
    name = str(getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__)
    if name not in _announced:
        _announced.add(name)
        logger.warning("%s has no chat template: prompts use the plain format (text, blank line, answer)", name)
    return PLAIN_CHAT_TEMPLATE


def render_chat(tokenizer, messages: list[dict], *, add_generation_prompt: bool = True) -> str:
    """The text of ``messages`` as the model reads it (special tokens written out)."""
    return tokenizer.apply_chat_template(messages, chat_template=chat_template(tokenizer), tokenize=False,
                                         add_generation_prompt=add_generation_prompt)


def chat_token_ids(tokenizer, messages: list[dict]) -> list[int]:
    """The token ids of a prompt: the rendered chat with its generation prompt, tokenized as
    vLLM's chat endpoint does (the special tokens are in the text, none are added)."""
    return list(tokenizer.encode(render_chat(tokenizer, messages), add_special_tokens=False))


def give_plain_format(tokenizer) -> bool:
    """Write the plain format into a tokenizer that has no chat template (before it is saved
    with a fine-tune); True if it did."""
    if has_chat_template(tokenizer):
        return False
    chat_template(tokenizer)  # the log line
    tokenizer.chat_template = PLAIN_CHAT_TEMPLATE
    return True
