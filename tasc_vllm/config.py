"""TASC-spec settings, read in one place.

They reach the proposer through vLLM's own channel for a plugin's options, the top-level
``additional_config`` dict, under the key ``"tasc"``::

    vllm serve MODEL --speculative-config '{"method": "custom_class",
        "model": "tasc_vllm.TascProposer", "num_speculative_tokens": 8}' \\
        --additional-config '{"tasc": {"index": "usaddress.tasc"}}'
    LLM(MODEL, speculative_config={...}, additional_config={"tasc": {"index": "usaddress.tasc"}})

An environment variable ``TASC_<NAME>`` (``TASC_INDEX``, ``TASC_THRESHOLD``, ...) overrides
the setting of that name, for scripts; the one-line summary the proposer logs at engine
start says where each setting that is not a default came from.  An unknown name, a value of
the wrong type or out of range, and an ``additional_config`` or ``"tasc"`` entry that is not
an object are errors that name the setting.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields

from tasc_vllm.errors import TascError

SECTION = "tasc"  # the key of additional_config that holds these settings
ENV_PREFIX = "TASC_"
# TASC_* variables that are not proposer settings: the cache folder and the benchmarks' oracle
OTHER_ENV = frozenset({"TASC_VLLM_CACHE", "TASC_ORACLE_FILE"})


@dataclass(frozen=True)
class TascConfig:
    index: str = ""  # the .tasc index (required)
    policy: str = "learned"  # "learned": a scorer trained on the task chooses, the measured step cost stops; "formula": the fixed formulas below
    step_cost_model: str = ""  # "" measures the step time; "FIXED,PER_ROW,PER_TOKEN,KNEE" fixes it (learned policy)
    max_draft: int = 0  # cap below num_speculative_tokens (0: no extra cap)
    max_order: int = 8  # longest corpus context, in tokens
    context_min_order: int = 1  # shortest in-request match used
    context_max_order: int = 8  # longest in-request match tried
    spaced_match: int = 1  # also match the request with whitespace-only tokens skipped (0: off)
    corpus_weight: float = 1.0  # trust in the corpus source (0..1)
    context_weight: float = 1.0  # trust in the context source (0..1)
    alpha: float = 1.0  # corpus smoothing, p = count / (total + alpha)
    gamma: float = 2.0  # context confidence, p = m / (m + gamma)
    threshold: float = 0.1  # stop drafting when the draft's confidence < this
    step_overhead: float = 6.0  # a step's fixed cost in verified tokens (0: off)
    free_draft: float = 0.0  # drafted tokens a batch-1 step verifies at no extra cost
    stop_rule: str = "yield"  # "yield" (a token must raise the draft's yield per cost) or "first" (every token must pass the first's bar)
    calibrate: int = 1  # learn while serving how often each source is right (1), and drafts too (2); 0: off
    min_count: int = 1  # drop corpus contexts seen fewer times
    stats_path: str = ""  # write proposer timing/draft counters here (JSON)
    learn_entries: int = 1_000_000  # room for contexts learned while serving (0: off)
    learned_path: str = ""  # resume learning from / save it to this .npz (touch PATH.save)

    def __post_init__(self):
        checks = [
            (self.policy in ("learned", "formula"), f"policy must be 'learned' or 'formula' (got {self.policy!r})"),
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
        from tasc_vllm.step_timing import parse_cost_model

        parse_cost_model(self.step_cost_model)

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


SETTINGS = tuple(f.name for f in fields(TascConfig))
# each setting's type: int, float or str
SETTING_TYPES = {f.name: {"int": int, "float": float, "str": str}[f.type] for f in fields(TascConfig)}


def env_name(name: str) -> str:
    """The environment variable that overrides setting ``name``: ``TASC_`` + its name in capitals."""
    return ENV_PREFIX + name.upper()


@dataclass(frozen=True)
class LoadedConfig:
    """The settings in effect and where each one that is not a default came from."""

    config: TascConfig
    origins: dict = field(default_factory=dict)  # name -> "additional_config", "TASC_NAME" or "caller"
    overridden: dict = field(default_factory=dict)  # name -> the additional_config value the environment replaced

    def summary(self) -> str:
        """One line: every setting in effect, then the sources of those that are not defaults."""
        values = " ".join(f"{k}={v}" for k, v in self.config.to_dict().items())
        given = [name for name, where in self.origins.items() if where == "additional_config"]
        direct = [name for name, where in self.origins.items() if where == "caller"]
        envs = [f"{where}" + (f" (over additional_config's {self.overridden[name]!r})" if name in self.overridden else "")
                for name, where in self.origins.items() if where.startswith(ENV_PREFIX)]
        parts = [f"from additional_config: {', '.join(given)}"] if given else []
        parts += [f"from the environment: {', '.join(envs)}"] if envs else []
        parts += [f"given by the caller: {', '.join(direct)}"] if direct else []
        return f"TASC-spec settings: {values}" + (f" ({'; '.join(parts)})" if parts else " (all defaults)")


def given(config: TascConfig) -> LoadedConfig:
    """Settings a caller built itself (a test, a replay): those that are not defaults are
    marked as given by the caller."""
    defaults = TascConfig().to_dict()
    return LoadedConfig(config, {k: "caller" for k, v in config.to_dict().items() if v != defaults[k]})


def _unknown(name: str, where: str) -> TascError:
    return TascError(f"{where}: unknown TASC-spec setting {name!r}; known settings: {', '.join(SETTINGS)}")


def _from_json(name: str, value, where: str):
    """A value given in additional_config, checked against the setting's type."""
    typ = SETTING_TYPES[name]
    ok = (
        (typ is str and isinstance(value, str))
        or (typ is float and isinstance(value, (int, float)) and not isinstance(value, bool))
        or (typ is int and isinstance(value, (int, float)) and not isinstance(value, bool) and float(value).is_integer())
    )
    if not ok:
        raise TascError(f"{where}: setting {name!r} must be {typ.__name__}, got {value!r}")
    return typ(value)


def _from_env(name: str, raw: str, var: str):
    typ = SETTING_TYPES[name]
    try:
        if typ is int:
            return int(float(raw)) if float(raw).is_integer() else int(raw)
        return typ(raw)
    except (TypeError, ValueError):
        raise TascError(f"{var}: setting {name!r} must be {typ.__name__}, got {raw!r}") from None


def settings_section(additional_config) -> Mapping:
    """The ``"tasc"`` object of vLLM's ``additional_config`` (empty when absent)."""
    if additional_config is None:
        return {}
    if not isinstance(additional_config, Mapping):
        raise TascError(f"additional_config must be a JSON object (a dict), got {type(additional_config).__name__}")
    section = additional_config.get(SECTION, {})
    if not isinstance(section, Mapping):
        raise TascError(f'additional_config["{SECTION}"] must be a JSON object of TASC-spec settings, '
                        f"got {section!r}")
    return section


def resolve_config(additional_config=None, environ: Mapping | None = None) -> LoadedConfig:
    """The settings: defaults, then ``additional_config["tasc"]``, then ``TASC_*`` variables of
    ``environ`` (default ``os.environ``), with where each came from."""
    environ = os.environ if environ is None else environ
    values: dict = {}
    origins: dict = {}
    overridden: dict = {}
    where = f'additional_config["{SECTION}"]'
    for name, value in settings_section(additional_config).items():
        if name not in SETTING_TYPES:
            raise _unknown(name, where)
        values[name] = _from_json(name, value, f"{where}.{name}")
        origins[name] = "additional_config"
    for var, raw in environ.items():
        if not var.startswith(ENV_PREFIX) or var in OTHER_ENV:
            continue
        name = var[len(ENV_PREFIX):].lower()
        if name not in SETTING_TYPES:
            raise _unknown(name, f"environment variable {var}")
        if raw == "":
            continue
        if name in values:
            overridden[name] = values[name]
        values[name] = _from_env(name, raw, var)
        origins[name] = var
    try:
        config = TascConfig(**values)
    except TascError as e:
        culprits = [f"{k} from {origins[k]}" for k in origins if re.search(rf"\b{k}\b", str(e))]
        raise TascError(f"{e}" + (f" ({', '.join(culprits)})" if culprits else "")) from None
    return LoadedConfig(config, origins, overridden)


def load_config(additional_config=None, environ: Mapping | None = None) -> TascConfig:
    """The settings in effect (see :func:`resolve_config`)."""
    return resolve_config(additional_config, environ).config
