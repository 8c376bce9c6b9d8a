"""TascProposer: the vLLM ``custom_class`` speculative proposer of TASC-spec.

vLLM builds it as ``TascProposer(vllm_config)`` in the worker and calls ``propose`` after
every step with each running request's tokens. Its settings come from
``vllm_config.additional_config["tasc"]`` and ``TASC_*`` overrides (:mod:`tasc_vllm.config`);
the settings in effect are logged once, on one line, when the engine starts.
"""

from __future__ import annotations

import json
import logging
import os
import time
import traceback
from pathlib import Path

import numpy as np

from tasc_vllm.kernels.calibration import LastDrafts, new_calibration, observe_batch
from tasc_vllm.config import TascConfig, given, resolve_config
from tasc_vllm.kernels.drafting import draft_batch
from tasc_vllm.errors import TascError
from tasc_vllm.index.index_file import read_index
from tasc_vllm.index.ngram_cache import load_tokenized, whitespace_tokens
from tasc_vllm.index.learned_state import (SaveRequests, data_parallel_rank, load_learned, load_learned_scorer,
                                          replica_path, save_learned)
from tasc_vllm.index.policy import prepare_scorer, trees_digest
from tasc_vllm.kernels import learned_drafting
from tasc_vllm.kernels.candidates import FEATURE_SET, NUM_FEATURES
from tasc_vllm.kernels.online_learning import learn_batch, with_room
from tasc_vllm.kernels.params import draft_params
from tasc_vllm.step_timing import StepRows, StepTimer, parse_cost_model, worth_drafting

logger = logging.getLogger("tasc_vllm")


def _load_tokenizer(model_config):
    try:
        from vllm.tokenizers.registry import cached_tokenizer_from_config

        tok = cached_tokenizer_from_config(model_config)
        if tok is not None and callable(tok) and hasattr(tok, "apply_chat_template"):
            return tok
    except Exception as e:  # fall back to transformers below
        logger.debug("vLLM tokenizer loader failed (%s); using transformers", e)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(
        model_config.tokenizer,
        revision=model_config.tokenizer_revision,
        trust_remote_code=model_config.trust_remote_code,
    )


class TascProposer:
    """Drafts from the task corpus n-gram model mixed with in-request n-gram matches."""

    def __init__(self, vllm_config, *, tokenizer=None, config: TascConfig | None = None):
        spec = vllm_config.speculative_config
        model_config = vllm_config.model_config
        self.k = int(spec.num_speculative_tokens)
        self.max_model_len = int(model_config.max_model_len)
        loaded = given(config) if config is not None else resolve_config(
            getattr(vllm_config, "additional_config", None))
        self.cfg = loaded.config
        if not self.cfg.index:
            raise TascError(
                'no TASC-spec index is set: give additional_config {"tasc": {"index": "TASK.tasc"}} '
                "(or TASC_INDEX), a .tasc index built with `tasc-vllm build-index CORPUS.jsonl -o TASK.tasc`"
            )
        logger.info("%s", loaded.summary())
        if self.cfg.max_draft:
            self.k = min(self.k, self.cfg.max_draft)
        t0 = time.perf_counter()
        index = read_index(self.cfg.index)
        tokenizer = tokenizer if tokenizer is not None else _load_tokenizer(model_config)
        corpus = load_tokenized(index, tokenizer, self.cfg.max_order, self.cfg.min_count)
        self.table = corpus.table
        self._used = None  # online learning off
        self._corpus_entries = int(corpus.table.keys.shape[0])
        self._identity = corpus.identity
        self._save_requests = None
        resumed = ""
        self._resumed_state = False  # the table came from the learned-state file
        self.learned_path = replica_path(self.cfg.learned_path, data_parallel_rank(vllm_config))
        if self.cfg.learn_entries:
            state = load_learned(self.learned_path, self._identity) if self.learned_path else None
            if state is not None:
                self.table, self._used = state
                self._resumed_state = True
                resumed = f", resumed from {self.learned_path}"
            else:
                self.table, self._used = with_room(corpus.table, self.cfg.learn_entries)
            if self.learned_path:
                self._save_requests = SaveRequests(self.cfg.learned_path)
                resumed += f"; saves to {self.learned_path} when {self._save_requests.trigger} is touched"
        self.vocab_size = int(model_config.get_vocab_size())
        self.learned = self.cfg.policy == "learned"
        if not self.learned:  # the learned policy gets its flags with its scorer, below (one decode of the vocabulary)
            self.space = (whitespace_tokens(tokenizer, self.vocab_size) if self.cfg.spaced_match
                          else np.zeros(0, dtype=np.uint8))
        self.calibration = new_calibration()  # stays empty (the formulas) when calibrate=0
        self.timer = StepTimer(parse_cost_model(self.cfg.step_cost_model))
        self._last_step = None  # (start time, StepRows) of the last call
        # whole drafts are scored by what the model accepted: always with the learned policy (unless calibrate=0)
        self._scores_drafts = self.cfg.calibrate >= 2 or (self.learned and self.cfg.calibrate > 0)
        self.scorer_info = {}
        if self.learned:
            scorer, self.policy_params, self.space, self.classes, self.text = prepare_scorer(
                index, tokenizer, corpus, self.cfg, self.vocab_size)
            self.trees = scorer.trees
            self.echo = scorer.echo
            self.copies = scorer.copies
            self.anchor = scorer.weights.copy()
            # online weights are saved for one feature set and one trained ensemble
            self._scorer_set = f"{FEATURE_SET}|trees:{trees_digest(scorer.trees)}"
            saved = (load_learned_scorer(self.learned_path, self._scorer_set, NUM_FEATURES)
                     if self._resumed_state else None)
            self.weights = saved if saved is not None else scorer.weights.copy()
            self.scorer_info = dict(scorer.info, cached=scorer.from_cache, resumed=saved is not None)
        self.index_path = str(Path(self.cfg.index).resolve())
        max_rows = int(getattr(vllm_config.scheduler_config, "max_num_seqs", 256) or 256)
        self._out = np.zeros((max_rows, max(self.k, 1)), dtype=np.int32)
        self._out_len = np.zeros(max_rows, dtype=np.int32)
        self._out_conf = np.zeros((max_rows, max(self.k, 1)), dtype=np.float64)
        self._last_drafts = LastDrafts(max_rows, max(self.k, 1))
        self.stats = {"calls": 0, "rows": 0, "drafted_rows": 0, "draft_tokens": 0, "seconds": 0.0, "errors": 0,
                      "learned": 0, "learned_contexts": 0, "scored_drafts": 0}
        self._view = self.table.view  # the kernels' view of the arrays learning fills in place
        self._warm_up()
        self.load_seconds = time.perf_counter() - t0
        logger.info(
            "TASC index %s: %d texts, %d tokens, %.1f MiB n-gram table, loaded in %.2f s%s; %s",
            self.index_path,
            corpus.num_texts,
            corpus.num_tokens,
            self.table.nbytes / 2**20,
            self.load_seconds,
            " (cached tokenization)" if corpus.from_cache else " (tokenized and cached)",
            f"learns online ({int(self._used[0]) - self._corpus_entries:,} contexts learned of room for "
            f"{self.table.keys.shape[0] - self._corpus_entries:,}{resumed})" if self._used is not None
            else "online learning off",
        )
        if self.learned:
            info = self.scorer_info
            logger.info("TASC drafting policy: learned scorer (%d trees, %s; %s positions, %s echo keys, "
                        "%s copy keys%s), %s", info.get("trees", 0),
                        "cached" if info.get("cached") else f"trained in {info.get('seconds', 0):.1f} s",
                        f"{info.get('positions', 0):,}", f"{self.echo.keys.shape[0]:,}",
                        f"{self.copies.keys.shape[0]:,}",
                        ", resumed from the learned state" if info.get("resumed") else "", self.timer.summary())
        self._error_logged = False
        self._stats_written = 0.0

    def _warm_up(self) -> None:
        """Compile the drafting kernel for the dtypes vLLM passes, before serving starts."""
        params = draft_params(self.cfg, 1, self.vocab_size)
        for dtype in (np.int32, np.int64):
            toks = np.zeros((1, 8), dtype=dtype)
            if self.learned:
                self._draft_learned(1, np.zeros(1, np.int64), np.array([4], np.int32), toks, np.array([2], np.int64))
                self._observe(np.zeros(1, np.int64), np.array([4], np.int32), np.zeros(1, np.int64), toks, params)
                continue
            draft_batch(np.zeros(1, np.int64), np.array([4], np.int32), toks, np.array([2], np.int64),
                        self._view, params, self.space, self.calibration,
                        self._out[:1], self._out_len[:1], self._out_conf[:1])
            # zero new tokens: compiles, learns nothing
            self._observe(np.zeros(1, np.int64), np.array([4], np.int32), np.zeros(1, np.int64), toks, params)

    def _observe(self, rows, lengths, new_tokens, token_ids, params) -> None:
        """Score the sources on the new tokens (calibration), then count them (learning)."""
        c, t = self.cfg, self._view
        if self._scores_drafts:
            self.stats["scored_drafts"] += self._last_drafts.score(rows, lengths, new_tokens, token_ids,
                                                                   self.calibration)
        if self.learned and c.calibrate:
            learned_drafting.learn_batch(rows, lengths, new_tokens, token_ids, t, self.echo, self.copies,
                                         self.policy_params, self.space, self.classes, self.text, self.trees,
                                         self.weights, self.anchor)
        elif c.calibrate:
            observe_batch(rows, lengths, new_tokens, token_ids, t, params, self.space, self.calibration)
        if self._used is not None:
            self.stats["learned"] += int(learn_batch(rows, lengths, new_tokens, token_ids, t, c.max_order,
                                                     self._used))
            self.stats["learned_contexts"] = int(self._used[0]) - self._corpus_entries

    def load_model(self, *args, **kwargs) -> None:
        """No draft model to load."""

    def propose(self, sampled_token_ids, num_tokens_no_spec, token_ids_cpu, slot_mappings=None, **kwargs):
        n = len(sampled_token_ids)
        t0 = time.perf_counter()
        lengths = np.array(num_tokens_no_spec[:n], dtype=np.int32)  # a copy: vLLM reuses its array
        gained = [len(x) for x in sampled_token_ids]  # 0: a row still prefilling, or discarded
        if self._last_step is not None:
            start, before = self._last_step
            step = before.step(gained, lengths, token_ids_cpu)
            if step is not None and not step[2]:  # a step that also prefilled a prompt is not timed
                self.timer.record(*step[:2], t0 - start)
        try:
            drafts = self._propose(gained, lengths, token_ids_cpu)
        except Exception:
            self.stats["errors"] += 1
            if not self._error_logged:
                self._error_logged = True
                logger.error(
                    "TASC proposer failed; this step gets no drafts and serving goes on. "
                    "Further errors are counted, not logged. Batch of %d rows, index %s:\n%s",
                    n, self.index_path, traceback.format_exc(),
                )
            drafts = [[] for _ in range(n)]
        t1 = time.perf_counter()
        if self.timer.fixed is None:  # a step runs from one call's start to the next's
            self._last_step = (t0, StepRows(lengths, token_ids_cpu, [len(d) for d in drafts]))
        self.stats["seconds"] += t1 - t0
        self.stats["calls"] += 1
        self.stats["rows"] += n
        if self.cfg.stats_path:
            self._maybe_write_stats()
        if self._save_requests is not None and self._save_requests.due():
            self.save_learned(self.learned_path)
        return drafts

    def save_learned(self, path: str) -> None:
        """Write the table with what was learned so far (a failure is logged, never raised)."""
        try:
            save_learned(path, self.table, self._used, self._identity,
                         self.weights if self.learned else None,
                         self._scorer_set if self.learned else "")
            logger.info("TASC: saved what was learned (%d contexts) to %s",
                        int(self._used[0]) - self._corpus_entries, path)
        except (OSError, TascError) as e:
            logger.warning("TASC: cannot save what was learned to %s (%s)", path, e)

    def _propose(self, gained, lengths, token_ids_cpu):
        """The drafts of the rows, which gained ``gained`` tokens and are ``lengths`` long."""
        n = len(gained)
        params = draft_params(self.cfg, n, self.vocab_size)
        if self.cfg.calibrate or self._used is not None:
            self._observe_new_tokens(gained, lengths, token_ids_cpu, params)
        rows, limits = [], []
        for i in range(n):
            if not gained[i]:
                continue  # prefill or discarded row: no draft
            limit = min(self.k, self.max_model_len - int(lengths[i]) - 1)
            if limit > 0:
                rows.append(i)
                limits.append(limit)
        drafts: list[list[int]] = [[] for _ in range(n)]
        m = len(rows)
        if m > self._out.shape[0]:
            self._out = np.zeros((m, self._out.shape[1]), dtype=np.int32)
            self._out_len = np.zeros(m, dtype=np.int32)
            self._out_conf = np.zeros((m, self._out.shape[1]), dtype=np.float64)
        rows_arr = np.asarray(rows, dtype=np.int64)
        if m and self.learned:
            self._draft_learned(n, rows_arr, lengths, token_ids_cpu, np.asarray(limits, dtype=np.int64))
        elif m:
            draft_batch(rows_arr, lengths, token_ids_cpu, np.asarray(limits, dtype=np.int64), self._view,
                        params, self.space, self.calibration, self._out, self._out_len, self._out_conf)
        out, out_len = self._out, self._out_len
        if self._scores_drafts:
            self._last_drafts.remember(n, rows_arr, lengths, out, out_len, self._out_conf)
        for j, r in enumerate(rows):
            L = int(out_len[j])
            if L:
                drafts[r] = out[j, :L].tolist()
                self.stats["drafted_rows"] += 1
                self.stats["draft_tokens"] += L
        return drafts

    def _draft_learned(self, n, rows, lengths, token_ids, limits) -> None:
        """The learned policy: draft each row, then cut the batch's drafts by the step cost."""
        m = rows.shape[0]
        cost = self.timer.cost()
        params = self.policy_params._replace(min_confidence=max(self.policy_params.min_confidence,
                                                                worth_drafting(cost, n)))
        learned_drafting.draft_batch(rows, lengths, token_ids, limits, self._view, self.echo, self.copies, params,
                                     self.space, self.classes, self.text, self.trees, self.weights, self.calibration,
                                     self._out, self._out_len, self._out_conf)
        learned_drafting.cut_batch(n, m, self._out_len, self._out_conf, self.calibration, cost)

    def _observe_new_tokens(self, gained, lengths, token_ids_cpu, params) -> None:
        """Observe the tokens each row gained this step (the ends of their contexts)."""
        gained = [(i, g) for i, g in enumerate(gained) if g]
        if not gained:
            return
        rows = np.fromiter((i for i, _ in gained), dtype=np.int64, count=len(gained))
        new = np.fromiter((g for _, g in gained), dtype=np.int64, count=len(gained))
        self._observe(rows, lengths, new, token_ids_cpu, params)

    def _maybe_write_stats(self) -> None:
        now = time.monotonic()
        if now - self._stats_written < 1.0:
            return
        self._stats_written = now
        self.write_stats(self.cfg.stats_path)

    def write_stats(self, path: str) -> None:
        data = dict(self.stats, pid=os.getpid(), index=self.index_path, load_seconds=self.load_seconds,
                    step_cost=self.timer.cost().tolist(), step_cost_measured=self.timer.measured)
        tmp = f"{path}.{os.getpid()}.tmp"
        try:
            with open(tmp, "w") as f:
                json.dump(data, f)
            os.replace(tmp, path)
        except OSError as e:
            logger.warning("TASC: cannot write stats to %s (%s)", path, e)
