"""Training the drafting policy's scorer on the corpus, and caching it per served model.

The scorer (:mod:`tasc_vllm.kernels.scorer`) learns "the model emits this candidate next"
from the corpus itself, replayed in folds: the texts are dealt into folds, each fold's
answers are predicted with an n-gram table built from the other folds (so a text never
predicts itself), and each of their positions gives one training row per candidate.  When the
index holds the prompts, each answer is replayed after its prompt, so the request's own
matches (an address copied from the prompt, a function name from its documentation) are
learned as they occur in serving; an index of answers alone trains without them and says so
in one log line.  The echo table (:mod:`tasc_vllm.kernels.echoes`) and the copy table
(:mod:`tasc_vllm.kernels.prompt_copies`) are learned in the same folds, from the same replay,
and saved with the scorer.

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
from tasc_vllm.kernels.echoes import ECHO_LENGTH, EchoTable, build_echoes, check_echoes, empty_echoes
from tasc_vllm.kernels.prompt_copies import (ANCHOR, MAX_OCCURRENCES, MIN_COUNT, ORDER, CopyTable, build_copies,
                                             check_copies, empty_copies)
from tasc_vllm.kernels.ngram_table import build_table
from tasc_vllm.kernels.scorer import Trees, no_trees, raw_scores
from tasc_vllm.paths import atomic_file, cache_dir
from tasc_vllm.prompt_format import render_chat

logger = logging.getLogger("tasc_vllm")

SCORER_VERSION = 3
FOLDS = 4
MAX_POSITIONS = 40_000  # answer positions replayed in all (a sample of the held-out answers)
MAX_ROWS = 12 * MAX_POSITIONS
MAX_ECHO_POSITIONS = 400_000  # answer positions the echo and copy tables learn from (the texts in order)
MAX_COPY_PAIRS = 2_000_000  # the copy table's (context, anchor) examples, at most
# The ensemble's size: on the three tasks' folds, 40 trees of depth 5 keep nearly all of 300
# deep trees' gain over a logistic model, at about 150 nodes walked per candidate.
TREES = 40
TREE_DEPTH = 5
TREE_RATE = 0.25

# Used only when the corpus is too small to replay in folds (fewer than two texts): a rough
# prior that trusts frequent corpus followers and long request matches.
PRIOR = np.zeros(NUM_FEATURES)
PRIOR[[FEATURES.index(n) for n in ("bias", "share of the longest context", "longest context's order",
                                    "request's guess", "request's match length",
                                    "request's guess, whitespace skipped", "share of the next shorter context")]] = (
    -3.0, 3.0, 1.0, 1.5, 2.0, 1.0, 1.0)


@dataclass
class Scorer:
    trees: Trees
    weights: np.ndarray  # float64[NUM_FEATURES]: the linear term (zero beside trained trees)
    echo: EchoTable  # what the answers wrote next where the request's match went on alike
    copies: CopyTable  # where in the prompt the answers copied from next, after the same tokens
    info: dict  # how it was trained: positions, rows, folds, log loss, prompts or not, seconds
    path: Path | None = None
    from_cache: bool = False


def fit_trees(X: np.ndarray, y: np.ndarray) -> Trees:
    """A gradient-boosted tree ensemble of "this candidate is the next token" over the feature
    rows ``X`` (scikit-learn's histogram gradient boosting: a well-kept, fast fit, about a
    second on the most rows the replay gives), in the flat arrays the hot path walks."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    model = HistGradientBoostingClassifier(max_iter=TREES, max_depth=TREE_DEPTH, learning_rate=TREE_RATE,
                                           early_stopping=False, random_state=0)
    model.fit(X, y)
    return export_trees(model)


def export_trees(model) -> Trees:
    """A fitted binary ``HistGradientBoostingClassifier``'s trees as :class:`Trees`: its node
    arrays (leaf values already shrunk by the learning rate) concatenated, child indices made
    global.  ``tests/test_learned_policy.py`` checks the exported scores against the model's
    own ``decision_function``."""
    feature, threshold, left, right, value, roots = [], [], [], [], [], []
    offset = 0
    for (predictor,) in model._predictors:
        nodes = predictor.nodes
        leaf = nodes["is_leaf"].astype(bool)
        roots.append(offset)
        feature.append(np.where(leaf, 0, nodes["feature_idx"]).astype(np.int64))
        threshold.append(nodes["num_threshold"].astype(np.float64))
        left.append(np.where(leaf, -1, nodes["left"].astype(np.int64) + offset))
        right.append(np.where(leaf, -1, nodes["right"].astype(np.int64) + offset))
        value.append(np.where(leaf, nodes["value"], 0.0).astype(np.float64))
        offset += len(nodes)
    cat = (lambda parts, dtype: np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype=dtype))
    return Trees(cat(feature, np.int64), cat(threshold, np.float64), cat(left, np.int64), cat(right, np.int64),
                 cat(value, np.float64), np.asarray(roots, dtype=np.int64),
                 float(np.ravel(model._baseline_prediction)[0]))


def check_trees(trees: Trees) -> None:
    """Raise ``ValueError`` unless ``trees`` is an ensemble the hot path can walk: every index
    in range, every child after its parent (so every walk ends at a leaf), finite numbers."""
    n = trees.left.shape[0]
    if not all(a.ndim == 1 and a.shape[0] == n for a in (trees.feature, trees.threshold, trees.right, trees.value)):
        raise ValueError("tree arrays of different lengths")
    inner = trees.left >= 0
    idx = np.arange(n)
    if np.any(inner & ((trees.left <= idx) | (trees.right <= idx) | (trees.left >= n) | (trees.right >= n))):
        raise ValueError("a tree node's child is out of order")
    if np.any(inner & ((trees.feature < 0) | (trees.feature >= NUM_FEATURES))) or np.any(~inner & (trees.right != -1)):
        raise ValueError("a tree node's feature or leaf mark is out of range")
    if trees.roots.ndim != 1 or np.any((trees.roots < 0) | (trees.roots >= n)) or (n and not trees.roots.size):
        raise ValueError("a tree's root is out of range")
    if not (np.all(np.isfinite(trees.threshold)) and np.all(np.isfinite(trees.value)) and np.isfinite(trees.base)):
        raise ValueError("a tree holds a number that is not finite")


def scores(trees: Trees, weights: np.ndarray, X: np.ndarray) -> np.ndarray:
    """The scorer's log-odds for the feature rows ``X``."""
    return raw_scores(trees, weights, np.ascontiguousarray(X, dtype=np.float64))


def log_loss(z: np.ndarray, y: np.ndarray) -> float:
    p = np.clip(1.0 / (1.0 + np.exp(-np.clip(z, -30, 30))), 1e-9, 1 - 1e-9)
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


def _sequence(texts, prompts, i: int, answer_offset: int) -> tuple[np.ndarray, int]:
    """Text ``i`` after its prompt (when the corpus has them), and where its answer's first
    predicted token is (the first answer token comes from prefill)."""
    prompt = prompts[i] if prompts is not None else np.zeros(0, dtype=np.int32)
    return np.concatenate([prompt, texts[i]]), len(prompt) + answer_offset + 1


def _replayed(texts, prompts, order, answer_offset: int, budget: int):
    """Texts ``order`` after their prompts, until ``budget`` answer positions: the sequences
    packed (tokens, offsets), each one's first predicted position, and the positions taken."""
    seqs, starts, used = [], [], 0
    for i in order:
        seq, start = _sequence(texts, prompts, i, answer_offset)
        seqs.append(seq)
        starts.append(start)
        used += max(0, len(seq) - start)
        if used >= budget:
            break
    offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
    np.cumsum([len(s) for s in seqs], out=offsets[1:])
    packed = np.concatenate(seqs).astype(np.int64) if seqs else np.zeros(0, dtype=np.int64)
    return packed, offsets, np.asarray(starts, dtype=np.int64), used


def echo_pairs_of(replayed, params: PolicyParams, space, classes, text) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The echo keys, next tokens and text numbers of the answer positions of ``replayed``
    (:func:`_replayed`), in order, up to :data:`MAX_ECHO_POSITIONS`
    (:func:`tasc_vllm.kernels.training_rows.echo_pairs`)."""
    from tasc_vllm.kernels.training_rows import echo_pairs

    packed, offsets, starts, used = replayed
    keys = np.zeros(min(used, MAX_ECHO_POSITIONS), dtype=np.uint64)
    nexts = np.zeros(keys.size, dtype=np.int64)
    owner = np.zeros(keys.size, dtype=np.int64)
    got = echo_pairs(packed, offsets, starts, params, space, classes, text, keys, nexts, owner)
    return keys[:got], nexts[:got], owner[:got]


def copy_examples_of(replayed, classes, text):
    """The copy table's examples from the answer positions of ``replayed`` (:func:`_replayed`),
    in order, up to :data:`MAX_ECHO_POSITIONS` (:func:`tasc_vllm.kernels.training_rows.copy_pairs`):
    the contexts and their text numbers, and the (context, anchor, weight) pairs and theirs."""
    from tasc_vllm.kernels.training_rows import copy_pairs

    packed, offsets, starts, used = replayed
    ctx_keys = np.zeros(min(used, MAX_ECHO_POSITIONS) * ORDER, dtype=np.uint64)
    ctx_owner = np.zeros(ctx_keys.size, dtype=np.int64)
    pairs = min(ctx_keys.size * MAX_OCCURRENCES, MAX_COPY_PAIRS)
    pair_keys = np.zeros(pairs, dtype=np.uint64)
    pair_anchors = np.zeros((pairs, ANCHOR), dtype=np.int64)
    pair_weights = np.zeros(pairs, dtype=np.float64)
    pair_owner = np.zeros(pairs, dtype=np.int64)
    n_keys, n_pairs = copy_pairs(packed, offsets, starts, classes, text, ctx_keys, ctx_owner, pair_keys,
                                 pair_anchors, pair_weights, pair_owner)
    return (ctx_keys[:n_keys], ctx_owner[:n_keys], pair_keys[:n_pairs], pair_anchors[:n_pairs],
            pair_weights[:n_pairs], pair_owner[:n_pairs])


def _copies_without(examples, fold_of, f: int | None) -> CopyTable:
    """The copy table of the examples of :func:`copy_examples_of` outside fold ``f`` (None: all)."""
    ctx_keys, ctx_owner, pair_keys, pair_anchors, pair_weights, pair_owner = examples
    if f is None:
        return build_copies(ctx_keys, pair_keys, pair_anchors, pair_weights)
    keep, keep_pairs = fold_of[ctx_owner] != f, fold_of[pair_owner] != f
    return build_copies(ctx_keys[keep], pair_keys[keep_pairs], pair_anchors[keep_pairs], pair_weights[keep_pairs])


def train_scorer(tokens: np.ndarray, prompts: list[np.ndarray] | None, params: PolicyParams, space: np.ndarray,
                 classes: np.ndarray, text, answer_offset: int, min_count: int = 1, seed: int = 0,
                 progress: bool = False) -> tuple[Trees, np.ndarray, EchoTable, CopyTable, dict]:
    """The scorer (trees, linear weights, echo table, copy table) trained on the corpus
    ``tokens`` replayed in folds, and how.  ``answer_offset``: tokens of the answer frame before
    each text's first answer token.  The figures reported (log loss, how often the best-scored
    candidate is right) are those of an ensemble fitted without the last fold, on that fold."""
    from tasc_vllm.kernels.training_rows import training_rows

    t0 = time.perf_counter()
    texts = split_texts(tokens)
    n = len(texts)
    if n < 2:
        return no_trees(), PRIOR.copy(), empty_echoes(), empty_copies(), {
            "positions": 0, "rows": 0, "folds": 0, "prompts": prompts is not None,
            "note": "fewer than two texts: the prior weights", "seconds": 0.0}
    folds = min(FOLDS, n)
    rng = np.random.default_rng(seed)
    fold_of = rng.permutation(n) % folds
    in_order = _replayed(texts, prompts, range(n), answer_offset, MAX_ECHO_POSITIONS)
    echo_keys, echo_next, echo_text = echo_pairs_of(in_order, params, space, classes, text)
    copy_data = copy_examples_of(in_order, classes, text)
    del in_order
    X = np.empty((MAX_ROWS, NUM_FEATURES), dtype=np.float64)
    y = np.empty(MAX_ROWS, dtype=np.float64)
    group = np.empty(MAX_ROWS, dtype=np.int64)
    rows = positions = 0
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=folds, desc="TASC: training the drafting policy", unit="fold", leave=False)
    last_fold = 0  # the first row of the last fold
    for f in range(folds):
        last_fold = rows
        held = np.flatnonzero(fold_of == f)
        rest = [texts[i] for i in np.flatnonzero(fold_of != f)]
        sep = np.array([-1], dtype=np.int32)
        table = build_table(np.concatenate([x for t in rest for x in (t, sep)]), params.max_order, min_count,
                            classes=classes)
        others = fold_of[echo_text] != f
        echo = build_echoes(echo_keys[others], echo_next[others])
        copies = _copies_without(copy_data, fold_of, f)
        fold_params = params._replace(corpus_entries=int(table.keys.shape[0]))
        budget = (MAX_POSITIONS - positions) // (folds - f)
        packed, offsets, starts, _ = _replayed(texts, prompts, rng.permutation(held), answer_offset, budget)
        got, pos = training_rows(packed, offsets, starts, table.view, echo, copies, fold_params, space, classes, text,
                                 X[rows:], y[rows:], group[rows:], positions)
        rows += int(got)
        positions += int(pos)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    X, y, group = X[:rows], y[:rows], group[:rows]
    echo = build_echoes(echo_keys, echo_next)
    copies = _copies_without(copy_data, fold_of, None)
    if rows == 0 or y.min() == y.max():
        return no_trees(), PRIOR.copy(), echo, copies, {
            "positions": positions, "rows": rows, "folds": folds, "prompts": prompts is not None,
            "note": "no usable examples: the prior weights", "seconds": time.perf_counter() - t0}
    weights = np.zeros(NUM_FEATURES)
    info = {"positions": positions, "rows": rows, "folds": folds, "prompts": prompts is not None,
            "echo_keys": int(echo.keys.shape[0]), "copy_keys": int(copies.keys.shape[0])}
    fit, held = slice(0, last_fold), slice(last_fold, rows)
    if 0 < last_fold < rows and y[fit].min() < y[fit].max():
        z = scores(fit_trees(X[fit], y[fit]), weights, X[held])
        info.update(log_loss=log_loss(z, y[held]), top_candidate_right=_top_hit_rate(z, y[held], group[held]))
    trees = fit_trees(X, y)
    info["trees"] = int(trees.roots.shape[0])
    info["seconds"] = round(time.perf_counter() - t0, 3)
    return trees, weights, echo, copies, info


def _top_hit_rate(z: np.ndarray, y: np.ndarray, group: np.ndarray) -> float:
    """How often a position's best-scored candidate (log-odds ``z``) was the next token
    (``group``: each row's position)."""
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
            if meta.get("identity") != identity:
                return None
            weights = np.array(z["weights"], dtype=np.float64)
            trees = Trees(*(np.array(z[f"tree_{name}"], dtype=dtype) for name, dtype in _TREE_ARRAYS),
                          float(z["tree_base"]))
            check_trees(trees)
            echo = EchoTable(*(np.array(z[f"echo_{name}"], dtype=dtype) for name, dtype in _ECHO_ARRAYS))
            check_echoes(echo)
            copies = CopyTable(*(np.array(z[f"copy_{name}"], dtype=dtype) for name, dtype in _COPY_ARRAYS))
            check_copies(copies)
            if weights.shape != (NUM_FEATURES,) or not np.all(np.isfinite(weights)):
                raise ValueError("its linear weights are not one finite number per feature")
    except (zipfile.BadZipFile, ValueError, TypeError, OSError, EOFError, KeyError, json.JSONDecodeError,
            UnicodeDecodeError) as e:
        raise TascError(f"the drafting policy's scorer {path} is corrupt ({e}); delete it and it is trained again "
                        "at the next start") from e
    return Scorer(trees, weights, echo, copies, meta.get("info", {}), path, True)


_TREE_ARRAYS = (("feature", np.int64), ("threshold", np.float64), ("left", np.int64), ("right", np.int64),
                ("value", np.float64), ("roots", np.int64))
_ECHO_ARRAYS = (("keys", np.uint64), ("first", np.int64), ("tokens", np.int64), ("counts", np.int64),
                ("totals", np.int64))
_COPY_ARRAYS = (("keys", np.uint64), ("anchors", np.int64), ("weights", np.float64), ("totals", np.int64))


def trees_digest(trees: Trees) -> str:
    """A short checksum of an ensemble: online weights saved beside one are used only with it."""
    import hashlib

    h = hashlib.sha256()
    for a in trees[:-1]:
        h.update(np.ascontiguousarray(a).tobytes())
    h.update(repr(trees.base).encode())
    return h.hexdigest()[:16]


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
    identity = dict(identity, prompts_sha256=index.prompts_hash, feature_set=FEATURE_SET, version=SCORER_VERSION,
                    ensemble=f"{TREES} trees, depth {TREE_DEPTH}, rate {TREE_RATE}",
                    echoes=f"{ECHO_LENGTH} tokens, from {MAX_ECHO_POSITIONS} positions",
                    copies=f"contexts of 1 to {ORDER}, anchors of {ANCHOR}, at most {MAX_OCCURRENCES} occurrences, "
                           f"at least {MIN_COUNT} times, {MAX_COPY_PAIRS} examples")
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
    trees, weights, echo, copies, info = train_scorer(tokens, prompts, params, space, classes, text, answer_offset,
                                                      min_count=identity.get("min_count", 1), progress=progress)
    scorer = Scorer(trees, weights, echo, copies, info, path, False)
    if path is not None:
        meta = np.frombuffer(json.dumps({"identity": identity, "info": info}).encode(), dtype=np.uint8)
        try:
            with atomic_file(path) as f:
                np.savez(f, meta=meta, weights=weights, tree_base=np.float64(trees.base),
                         **{f"tree_{name}": getattr(trees, name) for name, _ in _TREE_ARRAYS},
                         **{f"echo_{name}": getattr(echo, name) for name, _ in _ECHO_ARRAYS},
                         **{f"copy_{name}": getattr(copies, name) for name, _ in _COPY_ARRAYS})
        except OSError as e:
            logger.warning("TASC: could not cache the drafting policy at %s (%s)", path, e)
    return scorer
