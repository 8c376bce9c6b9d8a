"""Training the drafting policy's scorer on the corpus, and caching it per served model.

The scorer (:mod:`tasc_vllm.kernels.scorer`) learns "the model emits this candidate next"
from the corpus itself, replayed in folds: the texts are dealt into folds, each fold's
answers are predicted with an n-gram table built from the other folds (so a text never
predicts itself), and each of their positions gives one training row per candidate.  When the
index holds the prompts, each answer is replayed after its prompt, so the request's own
matches (an address copied from the prompt, a function name from its documentation) are
learned as they occur in serving; an index of answers alone trains without them and says so
in one log line.

Training runs when an index is tokenized for a model (``tasc-vllm build-index --model``) or at
the first engine start otherwise, and is cached beside the tokenized corpus, keyed by the
index's texts and prompts, the tokenizer, the table settings and the feature set: a scorer
trained for anything else is retrained, never used, and an unreadable one is an error that
names its file.
"""

from __future__ import annotations

import json
import logging
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tasc_vllm.errors import TascError
from tasc_vllm.kernels.candidates import FEATURE_SET, FEATURES, NUM_FEATURES, PolicyParams
from tasc_vllm.kernels.ngram_table import build_table
from tasc_vllm.paths import atomic_file, cache_dir
from tasc_vllm.prompt_format import render_chat

logger = logging.getLogger("tasc_vllm")

SCORER_VERSION = 1
FOLDS = 4
MAX_POSITIONS = 40_000  # answer positions replayed in all (a sample of the held-out answers)
MAX_ROWS = 12 * MAX_POSITIONS
L2 = 1.0  # the fit's ridge penalty, in examples

# Used only when the corpus is too small to replay in folds (fewer than two texts): a rough
# prior that trusts frequent corpus followers and long request matches.
PRIOR = np.zeros(NUM_FEATURES)
PRIOR[[FEATURES.index(n) for n in ("bias", "share of the longest context", "longest context's order",
                                    "request's guess", "request's match length",
                                    "request's guess, whitespace skipped", "share of the next shorter context")]] = (
    -3.0, 3.0, 1.0, 1.5, 2.0, 1.0, 1.0)


@dataclass
class Scorer:
    weights: np.ndarray  # float64[NUM_FEATURES]
    info: dict  # how it was trained: positions, rows, folds, log loss, prompts or not, seconds
    path: Path | None = None
    from_cache: bool = False


def fit_logistic(X: np.ndarray, y: np.ndarray, l2: float = L2, iterations: int = 25) -> np.ndarray:
    """Logistic regression by Newton's method with a ridge penalty (bias included in ``X``)."""
    w = np.zeros(X.shape[1])
    reg = l2 * np.eye(X.shape[1])
    for _ in range(iterations):
        z = np.clip(X @ w, -30, 30)
        p = 1.0 / (1.0 + np.exp(-z))
        grad = X.T @ (p - y) + reg @ w
        hess = (X * (p * (1 - p))[:, None]).T @ X + reg
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.max(np.abs(step)) < 1e-6:
            break
    return w


def log_loss(X: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    p = np.clip(1.0 / (1.0 + np.exp(-np.clip(X @ w, -30, 30))), 1e-9, 1 - 1e-9)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def split_texts(tokens: np.ndarray) -> list[np.ndarray]:
    """The texts of a corpus token array (``-1`` between texts)."""
    ends = np.flatnonzero(tokens < 0)
    starts = np.concatenate([[0], ends + 1])[: len(ends)]
    return [tokens[s:e] for s, e in zip(starts, ends) if e > s]


def prompt_token_ids(tokenizer, prompts: list[str]) -> list[np.ndarray]:
    """Each prompt as the model sees it before the answer's frame: its user turn in the chat
    format (:mod:`tasc_vllm.prompt_format`; the corpus texts carry the generation prompt
    themselves)."""
    out = []
    for p in prompts:
        try:
            text = render_chat(tokenizer, [{"role": "user", "content": p}], add_generation_prompt=False)
            ids = tokenizer.encode(text, add_special_tokens=False)
        except Exception:  # a template that rejects a lone user turn: the plain text
            ids = None
        if ids is None:
            ids = tokenizer.encode(p, add_special_tokens=True)
        out.append(np.asarray(ids, dtype=np.int32))
    return out


def train_scorer(tokens: np.ndarray, prompts: list[np.ndarray] | None, params: PolicyParams, space: np.ndarray,
                 classes: np.ndarray, text, answer_offset: int, min_count: int = 1, seed: int = 0,
                 progress: bool = False) -> tuple[np.ndarray, dict]:
    """Scorer weights trained on the corpus ``tokens`` replayed in folds, and how.
    ``answer_offset``: tokens of the answer frame before each text's first answer token."""
    from tasc_vllm.kernels.training_rows import training_rows

    t0 = time.perf_counter()
    texts = split_texts(tokens)
    n = len(texts)
    if n < 2:
        return PRIOR.copy(), {"positions": 0, "rows": 0, "folds": 0, "prompts": prompts is not None,
                              "note": "fewer than two texts: the prior weights", "seconds": 0.0}
    folds = min(FOLDS, n)
    rng = np.random.default_rng(seed)
    fold_of = rng.permutation(n) % folds
    X = np.empty((MAX_ROWS, NUM_FEATURES), dtype=np.float64)
    y = np.empty(MAX_ROWS, dtype=np.float64)
    group = np.empty(MAX_ROWS, dtype=np.int64)
    rows = positions = 0
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=folds, desc="TASC: training the drafting policy", unit="fold", leave=False)
    for f in range(folds):
        held = np.flatnonzero(fold_of == f)
        rest = [texts[i] for i in np.flatnonzero(fold_of != f)]
        sep = np.array([-1], dtype=np.int32)
        table = build_table(np.concatenate([x for t in rest for x in (t, sep)]), params.max_order, min_count)
        fold_params = params._replace(corpus_entries=int(table.keys.shape[0]))
        budget = (MAX_POSITIONS - positions) // (folds - f)
        seqs, starts, used = [], [], 0
        for i in rng.permutation(held):
            answer = texts[i]
            prompt = prompts[i] if prompts is not None else np.zeros(0, dtype=np.int32)
            seqs.append(np.concatenate([prompt, answer]))
            starts.append(len(prompt) + answer_offset + 1)  # the first answer token comes from prefill
            used += max(0, len(answer) - answer_offset - 1)
            if used >= budget:
                break
        offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
        np.cumsum([len(s) for s in seqs], out=offsets[1:])
        got, pos = training_rows(np.concatenate(seqs).astype(np.int64), offsets, np.asarray(starts, dtype=np.int64),
                                 table.view, fold_params, space, classes, text, X[rows:], y[rows:], group[rows:],
                                 positions)
        rows += int(got)
        positions += int(pos)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    X, y, group = X[:rows], y[:rows], group[:rows]
    if rows == 0 or y.min() == y.max():
        return PRIOR.copy(), {"positions": positions, "rows": rows, "folds": folds, "prompts": prompts is not None,
                              "note": "no usable examples: the prior weights", "seconds": time.perf_counter() - t0}
    w = fit_logistic(X, y)
    hits = _top_hit_rate(X, y, group, w)
    return w, {"positions": positions, "rows": rows, "folds": folds, "prompts": prompts is not None,
               "log_loss": log_loss(X, y, w), "top_candidate_right": hits,
               "seconds": round(time.perf_counter() - t0, 3)}


def _top_hit_rate(X: np.ndarray, y: np.ndarray, group: np.ndarray, w: np.ndarray) -> float:
    """How often a position's best-scored candidate was the next token (``group``: each row's
    position)."""
    z = X @ w
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    best = np.maximum.reduceat(z, starts)
    right = np.maximum.reduceat(np.where(y > 0, z, -np.inf), starts)
    return float(np.mean(right >= best))


def _scorer_path(identity: dict) -> Path:
    import hashlib

    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]
    return cache_dir("ngram") / f"scorer-{digest}.npz"


def read_scorer(path: Path, identity: dict) -> Scorer | None:
    """The scorer cached at ``path``, or None when it was trained for another index, tokenizer,
    settings or feature set.  An unreadable file is an error that names it."""
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(z["meta"].tobytes().decode("utf-8"))
            weights = np.array(z["weights"], dtype=np.float64)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise TascError(f"the drafting policy's scorer {path} is corrupt ({e}); delete it and it is trained again "
                        "at the next start") from e
    if meta.get("identity") != identity or weights.shape != (NUM_FEATURES,) or not np.all(np.isfinite(weights)):
        return None
    return Scorer(weights, meta.get("info", {}), path, True)


MIN_CONFIDENCE = 0.03  # no token is drafted whose draft is less likely than this to be accepted in full


def policy_inputs(tokenizer, cfg, vocab_size: int, corpus_entries: int):
    """The learned policy's parameters under settings ``cfg``, the whitespace flags (empty
    with ``spaced_match=0``), the token classes and the tokens' texts
    (:func:`tasc_vllm.index.ngram_cache.input_text`), for a model of ``vocab_size`` ids."""
    from tasc_vllm.index.ngram_cache import input_text, token_classes, token_texts, whitespace_tokens

    texts = token_texts(tokenizer, vocab_size)
    classes = token_classes(tokenizer, vocab_size, texts)
    space = whitespace_tokens(tokenizer, vocab_size, classes) if cfg.spaced_match else np.zeros(0, dtype=np.uint8)
    params = PolicyParams(int(cfg.max_order), int(cfg.context_min_order), int(cfg.context_max_order),
                          int(corpus_entries), float(MIN_CONFIDENCE), int(vocab_size))
    return params, space, classes, input_text(tokenizer, vocab_size, texts)


def prepare_scorer(index, tokenizer, corpus, cfg, vocab_size: int, progress: bool = False):
    """(scorer, policy parameters, whitespace flags, token classes, tokens' texts) for
    ``index`` tokenized as ``corpus`` (:class:`tasc_vllm.index.ngram_cache.TokenizedCorpus`)."""
    from tasc_vllm.index.ngram_cache import output_frame

    params, space, classes, text = policy_inputs(tokenizer, cfg, vocab_size, int(corpus.table.keys.shape[0]))
    scorer = load_or_train_scorer(index, tokenizer, corpus.tokens, params, space, classes, text,
                                  len(output_frame(tokenizer)[0]), corpus.identity, progress)
    return scorer, params, space, classes, text


def load_or_train_scorer(index, tokenizer, tokens: np.ndarray, params: PolicyParams, space: np.ndarray,
                         classes: np.ndarray, text, answer_offset: int, identity: dict,
                         progress: bool = False) -> Scorer:
    """The scorer for this index and tokenizer: from the cache, or trained and cached."""
    identity = dict(identity, prompts_sha256=index.prompts_hash, feature_set=FEATURE_SET, version=SCORER_VERSION)
    try:
        path = _scorer_path(identity)
    except TascError as e:
        logger.warning("TASC: %s; the drafting policy will not be cached", e)
        path = None
    if path is not None and path.exists():
        cached = read_scorer(path, identity)
        if cached is not None:
            return cached
        logger.warning("TASC: the scorer %s was trained for another index, tokenizer or feature set; training again",
                       path)
    texts = index.prompts()
    if texts is None:
        logger.info("TASC: the index %s holds no prompts; the drafting policy trains on the answers alone "
                    "(the request's matches within the answer so far)", index.path)
        prompts = None
    else:
        prompts = prompt_token_ids(tokenizer, texts)
    weights, info = train_scorer(tokens, prompts, params, space, classes, text, answer_offset,
                                 min_count=identity.get("min_count", 1), progress=progress)
    scorer = Scorer(weights, info, path, False)
    if path is not None:
        meta = np.frombuffer(json.dumps({"identity": identity, "info": info}).encode(), dtype=np.uint8)
        try:
            with atomic_file(path) as f:
                np.savez(f, meta=meta, weights=weights)
        except OSError as e:
            logger.warning("TASC: could not cache the drafting policy at %s (%s)", path, e)
    return scorer
