"""TASC-spec settings: defaults, overridden by a JSON file named in ``TASC_CONFIG``, overridden
by environment variables. vLLM's speculative config has no field for extra options, so this
is how users tune the proposer."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from tasc_vllm.errors import TascError


@dataclass(frozen=True)
class TascConfig:
    index: str = ""  # TASC_INDEX: path of the .tasc index (required)
    max_draft: int = 0  # TASC_MAX_DRAFT: cap below num_speculative_tokens (0: no extra cap)
    max_order: int = 8  # TASC_MAX_ORDER: longest corpus context, in tokens
    context_min_order: int = 1  # TASC_CONTEXT_MIN_ORDER: shortest in-request match used
    context_max_order: int = 8  # TASC_CONTEXT_MAX_ORDER: longest in-request match tried
    spaced_match: int = 1  # TASC_SPACED_MATCH: also match the request with whitespace-only tokens skipped (0: off)
    corpus_weight: float = 1.0  # TASC_CORPUS_WEIGHT: trust in the corpus source (0..1)
    context_weight: float = 1.0  # TASC_CONTEXT_WEIGHT: trust in the context source (0..1)
    alpha: float = 1.0  # TASC_ALPHA: corpus smoothing, p = count / (total + alpha)
    gamma: float = 2.0  # TASC_GAMMA: context confidence, p = m / (m + gamma)
    threshold: float = 0.1  # TASC_THRESHOLD: stop drafting when the draft's confidence < this
    step_overhead: float = 6.0  # TASC_STEP_OVERHEAD: a step's fixed cost in verified tokens (0: off)
    free_draft: float = 0.0  # TASC_FREE_DRAFT: drafted tokens a batch-1 step verifies at no extra cost
    stop_rule: str = "yield"  # TASC_STOP_RULE: "yield" (a token must raise the draft's yield per cost) or "first" (every token must pass the first's bar)
    calibrate: int = 1  # TASC_CALIBRATE: learn while serving how often each source is right (1), and drafts too (2); 0: off
    min_count: int = 1  # TASC_MIN_COUNT: drop corpus contexts seen fewer times
    stats_path: str = ""  # TASC_STATS_PATH: write proposer timing/draft counters here (JSON)
    learn_entries: int = 1_000_000  # TASC_LEARN_ENTRIES: room for contexts learned while serving (0: off)
    learned_path: str = ""  # TASC_LEARNED_PATH: resume learning from / save it to this .npz (touch PATH.save)

    def __post_init__(self):
        checks = [
            (self.max_draft >= 0, "max_draft must be >= 0"),
            (1 <= self.max_order <= 32, "max_order must be in 1..32"),
            (0 <= self.context_min_order <= self.context_max_order, "need 0 <= context_min_order <= context_max_order"),
            (self.context_max_order <= 64, "context_max_order must be <= 64"),
            (0.0 <= self.corpus_weight <= 1.0, "corpus_weight must be in 0..1"),
            (0.0 <= self.context_weight <= 1.0, "context_weight must be in 0..1"),
            (self.alpha >= 0.0, "alpha must be >= 0"),
            (self.gamma > 0.0, "gamma must be > 0"),
            (0.0 <= self.threshold <= 1.0, "threshold must be in 0..1"),
            (self.step_overhead >= 0.0, "step_overhead must be >= 0"),
            (0.0 <= self.free_draft <= 1024.0, "free_draft must be in 0..1024"),
            (self.stop_rule in ("yield", "first"), f"stop_rule must be 'yield' or 'first' (got {self.stop_rule!r})"),
            (self.min_count >= 1, "min_count must be >= 1"),
            (self.calibrate in (0, 1, 2), "calibrate must be 0, 1 or 2"),
            (self.spaced_match in (0, 1), "spaced_match must be 0 or 1"),
            (0 <= self.learn_entries <= 1_000_000_000, "learn_entries must be in 0..1e9"),
        ]
        for ok, msg in checks:
            if not ok:
                raise TascError(f"invalid TASC setting: {msg}")

    @property
    def table_settings(self) -> dict:
        """The settings that change the cached n-gram table."""
        return {"max_order": self.max_order, "min_count": self.min_count}

    def threshold_for(self, rows: int) -> float:
        """The confidence a draft's first token needs when ``rows`` requests draft in one step
        (under the "first" stop rule, every token's).

        A drafted token costs one verified token; the first one, accepted, saves a step, whose
        cost per request is ``step_overhead / rows + 1`` verified tokens.  So it is worth
        drafting while its chance of acceptance beats ``rows / (rows + step_overhead)``,
        which rises with the batch: big batches draft only what is nearly certain.  Later
        tokens save only a share of a step: see ``step_cost`` and the "yield" rule.
        """
        if self.step_overhead <= 0.0 or rows <= 0:
            return self.threshold
        return max(self.threshold, rows / (rows + self.step_overhead))

    def step_cost(self, rows: int) -> float:
        """A step's cost per row in verified tokens, ``step_overhead / rows + 1``, for the
        "yield" stop rule (0: the rule is off and every token faces ``threshold_for``)."""
        if self.stop_rule != "yield" or self.step_overhead <= 0.0 or rows <= 0:
            return 0.0
        return self.step_overhead / rows + 1.0

    def free_per_row(self, rows: int) -> float:
        """Drafted tokens per row that verify at no extra cost when ``rows`` requests share a
        step: ``(free_draft + 1) / rows - 1``, at least 0.

        A step's time stays flat while the tokens it verifies (one per row, plus the drafts)
        fit the kernels' smallest unit of work, and grows with each one past it
        (``benchmarks.verify_cost`` measures where).  ``free_draft`` is that unit less the one
        token a batch-1 step verifies anyway; the rows of a bigger step share it.  0 when the
        "yield" rule is off."""
        if self.step_cost(rows) <= 0.0:
            return 0.0
        return max(0.0, (self.free_draft + 1.0) / rows - 1.0)

    def to_dict(self) -> dict:
        return asdict(self)


def env_name(field_name: str) -> str:
    return "TASC_" + field_name.upper()


def _coerce(name: str, raw, typ, origin: str):
    try:
        if typ is int:
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise ValueError
            return int(raw)
        if typ is float:
            return float(raw)
        return str(raw)
    except (TypeError, ValueError):
        raise TascError(f"{origin}: {name} must be {typ.__name__}, got {raw!r}") from None


def load_config(environ=None) -> TascConfig:
    environ = os.environ if environ is None else environ
    types = {f.name: {"int": int, "float": float, "str": str}[f.type] for f in fields(TascConfig)}
    values: dict = {}
    cfg_path = environ.get("TASC_CONFIG")
    if cfg_path:
        p = Path(cfg_path)
        if not p.is_file():
            raise TascError(f"TASC_CONFIG={cfg_path}: no such file")
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise TascError(f"TASC_CONFIG={cfg_path}: not valid JSON ({e})") from e
        if not isinstance(data, dict):
            raise TascError(f"TASC_CONFIG={cfg_path}: expected a JSON object")
        unknown = set(data) - set(types)
        if unknown:
            raise TascError(f"TASC_CONFIG={cfg_path}: unknown setting(s) {sorted(unknown)}; known: {sorted(types)}")
        for k, v in data.items():
            values[k] = _coerce(k, v, types[k], f"TASC_CONFIG={cfg_path}")
    for name, typ in types.items():
        raw = environ.get(env_name(name))
        if raw is not None and raw != "":
            values[name] = _coerce(name, raw, typ, env_name(name))
    return TascConfig(**values)
