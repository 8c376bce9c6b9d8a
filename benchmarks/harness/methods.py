"""The speculation methods the benchmarks compare, and TASC-spec variants.

A method is vLLM's plain decoding (``none``), one of its drafters (``ngram``, ``suffix``...),
TASC-spec (``tasc``; ``tasc-self`` in ``benchmarks.run``: TASC-spec over an index of the
model's own answers) or the oracle.  ``tasc@NAME=V+NAME=V`` is TASC-spec with other settings,
measured side by side with its defaults: the settings go to the engine in vLLM's
``additional_config`` under ``"tasc"``, by their lower-case names.
"""

from __future__ import annotations

import json

TASC_BASES = ("tasc", "tasc-self")  # the methods that take TASC-spec settings


def _setting_value(raw: str, typ: type | None):
    """``raw`` as JSON (``0.2`` a float, ``0`` an int), else as the text itself; a string
    setting keeps its text whatever it looks like (``stats_path=2024`` is a path)."""
    try:
        value = json.loads(raw)
    except ValueError:
        return raw
    return raw if typ is str and not isinstance(value, str) else value


def tasc_variant(method: str) -> tuple[str, dict]:
    """``tasc@threshold=0.2+calibrate=0`` -> ``("tasc", {"threshold": 0.2, "calibrate": 0})``:
    the method and the TASC-spec settings it sets, for ``additional_config={"tasc": ...}``.

    A malformed item, a setting on another method or an unknown setting raises ValueError
    naming it; a bad value raises :class:`tasc_vllm.errors.TascError` (from
    :func:`tasc_vllm.config.load_config`), before any engine starts."""
    from tasc_vllm.config import SETTING_TYPES as types
    from tasc_vllm.config import load_config

    base, _, spec = method.partition("@")
    items = []
    for item in filter(None, spec.split("+")):
        name, eq, value = item.partition("=")
        if not eq:
            raise ValueError(f"{method}: expected NAME=VALUE, got {item!r}")
        items.append((name.lower(), value))
    if spec and base not in TASC_BASES:
        raise ValueError(f"{method}: only tasc and tasc-self take settings")
    unknown = [name for name, _ in items if name not in types]
    if unknown:
        raise ValueError(f"{method}: unknown TASC setting(s) {unknown}")
    settings = {name: _setting_value(value, types[name]) for name, value in items}
    load_config({"tasc": settings}, environ={})  # a bad value fails here, before any engine starts
    return base, settings


def unknown_methods(methods, known, aliases=None) -> list[str]:
    """The entries of ``methods`` whose method (after ``aliases``, before any ``@`` settings) is
    not in ``known``.  A malformed variant, an unknown setting or a bad value raises
    ``ValueError`` naming it, before any engine starts."""
    from tasc_vllm.errors import TascError

    aliases = aliases or {}
    unknown = []
    for m in methods:
        try:
            base = tasc_variant(aliases.get(m, m))[0]
        except TascError as e:
            raise ValueError(f"{m}: {e}") from e
        if base not in known:
            unknown.append(m)
    return unknown


def keeps_state(method: str) -> bool:
    """Whether ``method`` learns from the outputs it serves: suffix decoding, and TASC-spec
    (online learning and calibration).  Every batch size serves the same prompts, so such a
    method gets a fresh engine per batch size, or a later batch size would draft answers it
    learned at an earlier one; the others measure all batch sizes in one engine."""
    return method.startswith("suffix") or tasc_variant(method)[0] in TASC_BASES


def methods_order(methods: list[str]) -> list[str]:
    """Plain decoding first, then the others as given."""
    return ["none"] + [m for m in methods if m != "none"]
