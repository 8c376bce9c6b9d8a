"""Growing a tokenizer with mined strings, safely, and growing the model's embeddings to match.

New tokens are added as non-special added tokens (``normalized=False``), which the
tokenizer matches before its own pre-tokenization, so a token may span words and
punctuation (``", "StreetName": "``).  A token that would change how some text encodes for
the worse is dropped: after adding, every text to check must decode back to itself and
encode to no more tokens than under the base tokenizer.  Adding a token can only change an
encoding where that token is used, so the culprits of a failing text are the new tokens in
its encoding; they are removed and the check repeats until every text passes.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np

from tasc_vllm.errors import TascError

PAD_TO_MULTIPLE = 64  # the vocabulary padding the Llama/SmolLM family and vLLM's kernels use
PAD_TOKEN = "<|tasc_pad_{}|>"


def encode_lengths(tokenizer, texts: Sequence[str]) -> np.ndarray:
    enc = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    return np.fromiter((len(ids) for ids in enc), dtype=np.int64, count=len(enc))


def _added(text: str):
    from tokenizers import AddedToken

    return AddedToken(text, normalized=False, special=False, single_word=False, lstrip=False, rstrip=False)


def add_checked_tokens(tokenizer, candidates: Sequence[str], texts: Sequence[str], base_lengths: np.ndarray):
    """Add the ``candidates`` that keep every one of ``texts`` exact and no longer than
    ``base_lengths`` (its token count under the base tokenizer).

    ``tokenizer`` is changed in place.  Returns ``(added, rejected)`` lists of strings.
    Candidates already in the vocabulary are skipped (counted as rejected).
    """
    vocab = tokenizer.get_vocab()
    rejected = [c for c in candidates if c in vocab]
    trial = [c for c in dict.fromkeys(candidates) if c not in vocab]
    if not trial:
        return [], rejected
    texts = list(texts)
    first_new = len(tokenizer)
    # A token cannot be taken back out of a tokenizer, so each trial runs on a copy.
    while trial:
        probe = copy.deepcopy(tokenizer)
        probe.add_tokens([_added(c) for c in trial])
        enc = probe(texts, add_special_tokens=False)["input_ids"]
        decoded = probe.batch_decode(enc, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        culprits: set[int] = set()
        for ids, text, back, limit in zip(enc, texts, decoded, base_lengths):
            if back != text or len(ids) > limit:
                new_ids = [i for i in ids if i >= first_new]
                if not new_ids:
                    raise TascError(
                        f"the tokenizer does not round-trip this text even before new tokens: {text[:80]!r}"
                    )
                culprits.update(new_ids)
        if not culprits:
            break
        bad = {trial[i - first_new] for i in culprits}
        rejected += [c for c in trial if c in bad]
        trial = [c for c in trial if c not in bad]
    if trial:
        tokenizer.add_tokens([_added(c) for c in trial])
    return trial, rejected


def pad_vocabulary(tokenizer, multiple: int = PAD_TO_MULTIPLE) -> int:
    """Add special placeholder tokens until the vocabulary is a multiple of ``multiple``, so
    every embedding row has a token.  Returns how many were added."""
    missing = (-len(tokenizer)) % multiple
    if missing:
        start = len(tokenizer)
        tokenizer.add_special_tokens(
            {"additional_special_tokens": [PAD_TOKEN.format(start + i) for i in range(missing)]},
            replace_extra_special_tokens=False,
        )
    return missing


def grow_embeddings(model, old_tokenizer, new_tokens: Sequence[str], new_vocab_size: int) -> None:
    """Resize ``model``'s input (and, if untied, output) embeddings to ``new_vocab_size``.

    The row of each string in ``new_tokens`` (the ids after the old vocabulary, in order)
    starts as the mean of the rows of the tokens ``old_tokenizer`` splits it into; other
    rows the resize creates (vocabulary padding) start at zero.  The matrix never shrinks.
    """
    import torch

    old_size = model.get_input_embeddings().weight.shape[0]
    first_new = len(old_tokenizer)
    if first_new > old_size:
        raise TascError(f"the tokenizer has {first_new} tokens but the model only {old_size} embedding rows")
    model.resize_token_embeddings(max(new_vocab_size, old_size), mean_resizing=False)
    inp = model.get_input_embeddings().weight
    out_layer = model.get_output_embeddings()
    out = out_layer.weight if out_layer is not None else None
    tied = out is None or out.data_ptr() == inp.data_ptr()
    with torch.no_grad():
        inp[old_size:] = 0
        if not tied:
            out[old_size:] = 0
        for j, text in enumerate(new_tokens):
            parts = old_tokenizer.encode(text, add_special_tokens=False)
            if not parts:
                raise TascError(f"new token {text!r} encodes to nothing under the previous tokenizer")
            row = first_new + j
            inp[row] = inp[parts].mean(dim=0)
            if not tied:
                out[row] = out[parts].mean(dim=0)
