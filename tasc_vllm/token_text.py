"""The bytes each token id stands for, as flat numpy arrays the compiled lookups can read.

The in-request match compares the request's text rather than its token ids, so it finds
a match even where the prompt and the answer tokenize the same text differently, as they
do under a TASC-ft vocabulary whose fused tokens (``", "arguments": {"``) span what the
prompt spells in smaller pieces.  The byte strings come from xgrammar's tokenizer info
(vLLM's structured-output dependency, which knows byte-level, SentencePiece and byte
fallback vocabularies); without xgrammar each token is decoded on its own.
"""

from __future__ import annotations

import logging

import numpy as np

logger = logging.getLogger(__name__)


def token_bytes(tokenizer, vocab_size: int) -> list[bytes]:
    """The byte string of every id below ``vocab_size`` (empty for ids the tokenizer lacks)."""
    n = min(vocab_size, len(tokenizer))
    vocab: list[bytes] | None = None
    try:
        import xgrammar

        info = xgrammar.TokenizerInfo.from_huggingface(tokenizer, vocab_size=max(vocab_size, len(tokenizer)))
        vocab = [bytes(b) for b in info.decoded_vocab[:n]]
    except Exception as e:  # any tokenizer xgrammar cannot read: decode token by token
        logger.debug("xgrammar cannot list the vocabulary's bytes (%s); decoding each token", e)
    if vocab is None:
        vocab = [tokenizer.decode([i]).encode("utf-8") for i in range(n)]
    return vocab + [b""] * (vocab_size - n)


def token_text_table(tokenizer, vocab_size: int) -> tuple[np.ndarray, np.ndarray]:
    """``(starts, data)``: token ``t``'s bytes are ``data[starts[t]:starts[t + 1]]``."""
    return pack(token_bytes(tokenizer, vocab_size))


def pack(vocab: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """The ``(starts, data)`` table of the byte strings ``vocab`` (id ``t`` is ``vocab[t]``)."""
    lengths = np.fromiter((len(b) for b in vocab), dtype=np.int64, count=len(vocab))
    starts = np.zeros(len(vocab) + 1, dtype=np.int64)
    np.cumsum(lengths, out=starts[1:])
    data = np.frombuffer(b"".join(vocab), dtype=np.uint8).copy()
    return starts, data


def no_text_table() -> tuple[np.ndarray, np.ndarray]:
    """The empty table: the in-request match compares token ids."""
    return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.uint8)
