"""Tokenizing a text index with the served model's tokenizer and caching the result.

The cache entry holds the corpus as token ids and its n-gram table; it is keyed by the
index's content hash, a hash of the tokenizer's full content (vocabulary, merges, added
tokens, chat template) and the table settings, so a base model and a TASC-ft model with a
grown vocabulary each get their own entry, and a stale entry is never used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tasc_vllm.errors import TascError
from tasc_vllm.index.index_file import CorpusIndex
from tasc_vllm.kernels.ngram_table import NgramTable, build_table
from tasc_vllm.paths import atomic_file, cache_dir
from tasc_vllm.prompt_format import chat_template, render_chat

logger = logging.getLogger(__name__)

CACHE_VERSION = 3  # 2: the table also holds the contexts that skip a value; 3: values joined by ``_`` or ``-``
_PROBE = "\x00TASC\x00"


@dataclass
class TokenizedCorpus:
    tokens: np.ndarray  # int32, -1 between texts
    table: NgramTable
    num_texts: int
    num_tokens: int
    cache_path: Path
    from_cache: bool
    identity: dict | None = None  # index hash, tokenizer fingerprint, table settings


def output_frame(tokenizer) -> tuple[list[int], int]:
    """The tokens an instruct model sees right before its answer (the chat template's
    generation prompt) and the token that ends its answer (end of turn, else EOS)."""
    prefix: list[int] = []
    end = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else -1
    user = [{"role": "user", "content": "hi"}]
    try:
        plain = render_chat(tokenizer, user, add_generation_prompt=False)
        gen = render_chat(tokenizer, user, add_generation_prompt=True)
        if gen.startswith(plain) and len(gen) > len(plain):
            prefix = tokenizer.encode(gen[len(plain) :], add_special_tokens=False)
        turn = render_chat(tokenizer, user + [{"role": "assistant", "content": _PROBE}], add_generation_prompt=False)
        after = turn.split(_PROBE, 1)[1] if _PROBE in turn else ""
        if after:
            after_ids = tokenizer.encode(after, add_special_tokens=False)
            if after_ids:
                end = after_ids[0]
    except Exception as e:  # a template that cannot render these probes: no frame
        logger.warning("TASC: chat template could not be probed (%s); corpus texts get no frame", e)
    return prefix, int(end)


_last_texts: tuple = (None, -1, -1, None)  # (tokenizer, its length, size, texts): the last decode


def token_texts(tokenizer, size: int) -> list[str] | None:
    """Each token id's text below ``size`` (and the tokenizer's vocabulary), or None with a
    warning when the tokenizer cannot decode single ids (never an error at engine start).
    The last result is kept: building the table and the drafting policy both need it, and a
    262k vocabulary takes seconds to decode."""
    global _last_texts
    n = min(len(tokenizer), size)
    held, held_len, held_n, texts = _last_texts
    if held is tokenizer and held_len == len(tokenizer) and held_n == n:
        return texts
    ids = [[i] for i in range(n)]
    try:
        batch = getattr(tokenizer, "batch_decode", None)
        texts = batch(ids) if callable(batch) else [tokenizer.decode(i) for i in ids]
    except Exception as e:
        logger.warning("TASC: %s cannot decode single token ids (%s); the request is matched token for token only",
                       type(tokenizer).__name__, e)
        return None
    _last_texts = (tokenizer, len(tokenizer), n, texts)
    return texts


NOT_JOINERS = frozenset("\"'`()[]{}<>,;")  # punctuation that ends a value rather than joins its parts


def token_classes(tokenizer, size: int, texts: list[str] | None = None) -> np.ndarray:
    """One class per token id below ``size`` (:mod:`tasc_vllm.kernels.token_classes`): whitespace
    only (spaces, newlines, indents), one punctuation character that can join the parts of a
    word (not a quote, bracket, comma or semicolon), other punctuation only, letters or digits
    with two or more punctuation characters (a merged token), holding a digit, or a word (also
    every id past the tokenizer's vocabulary).  A tokenizer that cannot decode single ids gets an
    empty array (no classes; the request is then matched token for token only).  ``texts``:
    :func:`token_texts` already computed."""
    from tasc_vllm.kernels.token_classes import DIGIT, JOIN, MIXED, PUNCT, SPACE, WORD

    texts = token_texts(tokenizer, size) if texts is None else texts
    if texts is None:
        return np.zeros(0, dtype=np.uint8)
    n = len(texts)

    def kind(t) -> int:
        if not isinstance(t, str) or not t:
            return WORD
        s = t.strip()
        if not s:
            return SPACE
        if not any(ch.isalnum() for ch in s):
            return JOIN if len(t) == 1 and t not in NOT_JOINERS else PUNCT
        if sum(not ch.isalnum() and not ch.isspace() for ch in s) >= 2:
            return MIXED  # not "n't" or "St.", but '", "arguments": {"'
        if any(ch.isdigit() for ch in s):
            return DIGIT
        return WORD

    classes = np.zeros(size, dtype=np.uint8)
    classes[:n] = [kind(t) for t in texts]
    return classes


def input_text(tokenizer, size: int, texts: list[str] | None = None):
    """What the input-reading source (:mod:`tasc_vllm.kernels.input_reading`) knows of each
    token id below ``size``: its text without whitespace (UTF-8 bytes; a token longer than
    ``TEXT_WIDTH`` bytes or holding part of a character is never matched), whether it starts
    with whitespace, and the first tokens of its text without that whitespace (how a word the
    input holds after a space is written after a quote); and the chat template's tokens right
    before an answer.  ``texts``: :func:`token_texts` already computed."""
    from tasc_vllm.kernels.input_reading import BARE_TOKENS, TEXT_WIDTH, InputText, no_input_text

    texts = token_texts(tokenizer, size) if texts is None else texts
    if texts is None:
        return no_input_text(size)
    n = len(texts)
    chars = np.zeros((size, TEXT_WIDTH), dtype=np.uint8)
    length = np.zeros(size, dtype=np.uint8)
    lead = np.zeros(size, dtype=np.uint8)
    bare = np.full((size, BARE_TOKENS), -1, dtype=np.int32)
    bare[:n, 0] = np.arange(n, dtype=np.int32)
    spaced = []
    for i, t in enumerate(texts):
        if not isinstance(t, str) or not t or "\ufffd" in t:
            continue
        word = "".join(t.split()).encode("utf-8")
        if not word or len(word) > TEXT_WIDTH:
            continue
        chars[i, : len(word)] = np.frombuffer(word, dtype=np.uint8)
        length[i] = len(word)
        if t[0].isspace():
            lead[i] = 1
            spaced.append(i)
    if spaced:
        try:
            firsts = tokenizer([texts[i].lstrip() for i in spaced], add_special_tokens=False)["input_ids"]
            for i, ids in zip(spaced, firsts):
                bare[i] = -1
                bare[i, : min(len(ids), BARE_TOKENS)] = ids[:BARE_TOKENS]
        except Exception as e:  # the spaced forms stay: the source then guesses a value's first word as the input writes it
            logger.warning("TASC: %s cannot encode a batch of words (%s)", type(tokenizer).__name__, e)
    header = output_frame(tokenizer)[0][-8:]
    return InputText(chars, length, lead, bare, np.asarray(header if len(header) >= 2 else [], dtype=np.int64))


def whitespace_tokens(tokenizer, size: int, classes: np.ndarray | None = None) -> np.ndarray:
    """One flag per token id below ``size``: 1 where the token decodes to whitespace only, 0
    elsewhere and past the tokenizer's vocabulary (empty when the tokenizer cannot decode
    single ids).  ``classes``: :func:`token_classes` already computed."""
    from tasc_vllm.kernels.candidates import SPACE

    classes = token_classes(tokenizer, size) if classes is None else classes
    return (classes == SPACE).astype(np.uint8) if classes.size else np.zeros(0, dtype=np.uint8)


def tokenizer_fingerprint(tokenizer) -> str:
    h = hashlib.sha256()
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        h.update(backend.to_str().encode("utf-8"))
    else:
        h.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode("utf-8"))
    h.update(chat_template(tokenizer).encode("utf-8"))
    h.update(repr(sorted((getattr(tokenizer, "added_tokens_decoder", {}) or {}).keys())).encode())
    h.update(str(tokenizer.eos_token_id).encode())
    return h.hexdigest()


def tokenize_texts(tokenizer, texts: list[str], progress: bool = False, batch: int = 2048) -> np.ndarray:
    """Corpus token array: per text, prefix + text tokens + end token, ``-1`` between texts."""
    prefix, end = output_frame(tokenizer)
    pieces: list[np.ndarray] = []
    sep = np.array([-1], dtype=np.int32)
    pre = np.array(prefix, dtype=np.int32)
    tail = np.array([end] if end >= 0 else [], dtype=np.int32)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(texts), desc="TASC: tokenizing corpus", unit="text", leave=False)
    for i in range(0, len(texts), batch):
        chunk = texts[i : i + batch]
        enc = tokenizer(chunk, add_special_tokens=False)["input_ids"]
        for ids in enc:
            pieces.extend((pre, np.asarray(ids, dtype=np.int32), tail, sep))
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    if not pieces:
        return np.zeros(0, dtype=np.int32)
    return np.concatenate(pieces)


def _cache_path(index: CorpusIndex, tok_fp: str, max_order: int, min_count: int) -> Path:
    name = f"{index.content_hash[:24]}-{tok_fp[:24]}-o{max_order}-c{min_count}-v{CACHE_VERSION}.npz"
    return cache_dir("ngram") / name


def _try_load(path: Path, meta_expected: dict) -> TokenizedCorpus | None:
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(z["meta"].tobytes().decode("utf-8"))
            if meta != meta_expected:
                logger.warning("TASC: cached tokenization %s belongs to another tokenizer/index; rebuilding", path)
                return None
            table = NgramTable.from_arrays({k: z[k] for k in ("slots", "keys", "nexts", "counts", "totals", "max_order")})
            tokens = z["tokens"]
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError, json.JSONDecodeError, UnicodeDecodeError) as e:
        logger.warning("TASC: cached tokenization %s is unreadable (%s); rebuilding it", path, e)
        return None
    return TokenizedCorpus(tokens, table, meta["num_texts"], int(np.count_nonzero(tokens >= 0)), path, True, meta)


def _save(path: Path, tokens: np.ndarray, table: NgramTable, meta: dict) -> None:
    meta_arr = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    with atomic_file(path) as f:
        np.savez(f, meta=meta_arr, tokens=tokens, **table.arrays())


def load_tokenized(index: CorpusIndex, tokenizer, max_order: int, min_count: int = 1, progress: bool = False) -> TokenizedCorpus:
    """The tokenized corpus and n-gram table of ``index`` for ``tokenizer``, from the cache when
    it holds a matching entry, otherwise built (and cached, if the cache is writable)."""
    tok_fp = tokenizer_fingerprint(tokenizer)
    meta = {
        "version": CACHE_VERSION,
        "index_sha256": index.content_hash,
        "tokenizer": tok_fp,
        "max_order": max_order,
        "min_count": min_count,
        "num_texts": len(index),
    }
    try:
        path = _cache_path(index, tok_fp, max_order, min_count)
    except TascError as e:
        logger.warning("TASC: %s; the tokenized corpus will not be cached", e)
        path = None
    if path is not None:
        cached = _try_load(path, meta)
        if cached is not None:
            return cached
    texts = index.texts()
    tokens = tokenize_texts(tokenizer, texts, progress=progress)
    vocab = len(tokenizer)
    if tokens.size and int(tokens.max()) >= max(vocab, 1):
        raise TascError(f"tokenizer produced id {int(tokens.max())} outside its vocabulary of {vocab}")
    if not np.any(tokens >= 0):
        raise TascError(f"TASC index {index.path} tokenizes to no tokens")
    table = build_table(tokens, max_order=max_order, min_count=min_count, classes=token_classes(tokenizer, vocab))
    if path is not None:
        try:
            _save(path, tokens, table, meta)
        except OSError as e:
            logger.warning("TASC: could not cache the tokenized corpus at %s (%s)", path, e)
    return TokenizedCorpus(tokens, table, len(texts), int(np.count_nonzero(tokens >= 0)), path or Path(""), False,
                           meta)
