"""The models the benchmarks serve for a task: its ``--no-enrich`` fine-tune ("fine-tuned", a
small model tuned for the task, as a user would serve it) and its TASC-ft model, built once
with the settings that met TASC-ft's quality target (docs/tasc-ft.md) and cached by
:func:`tasc_vllm.eval.finetunes.finetune` (keyed by the settings and the data).

HumanEval has too few examples to tune on: it keeps the default model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

TUNED_TASKS = ("usaddress", "bfcl")  # the tasks with a train split large enough to fine-tune on
MODEL_KINDS = ("fine-tuned", "tasc-ft", "default")  # what the benchmarks' --model option names


@dataclass(frozen=True)
class BuildSettings:
    """How both fine-tunes are trained (the same data, steps and seed for both)."""

    rounds: int = 2
    steps_per_round: int = 150
    tokens_per_round: int = 32
    new_token_lr_scale: float = 10.0
    length_group: int = 16
    bf16: bool = True
    json_values_out: bool = True
    prompt_tokens: int = 32  # --prompt-tokens: BFCL's schemas (usaddress's short prompts save too little: none)

    def common_flags(self) -> list[str]:
        return (["--check-test", "--rounds", str(self.rounds), "--steps-per-round", str(self.steps_per_round),
                 "--tokens-per-round", str(self.tokens_per_round), "--length-group", str(self.length_group)]
                + (["--bf16"] if self.bf16 else []))

    def enrich_flags(self) -> list[str]:
        """The enrichment settings measured best (docs/tasc-ft.md)."""
        return (["--whole-words", "--new-token-lr-scale", str(self.new_token_lr_scale)]
                + (["--json-values-out"] if self.json_values_out else [])
                + (["--prompt-tokens", str(self.prompt_tokens)] if self.prompt_tokens else []))


def build_checkpoints(task_name: str, settings: BuildSettings = BuildSettings(),
                      base: str | None = None) -> tuple[Path, Path]:
    """The TASC-ft checkpoint and its ``--no-enrich`` baseline of the ``base`` model (a known
    name or a checkpoint folder; default: the embedded default model), built on first use (the
    tool's progress bars and ETA on the terminal) and cached."""
    from tasc_vllm.eval.finetunes import finetune

    common = settings.common_flags()
    enriched = finetune(task_name, common + settings.enrich_flags(), "tasc-ft", model=base)
    return enriched, finetune(task_name, common + ["--no-enrich"], "fine-tuned", model=base)


def served_model(task_name: str, kind: str, base: str | None = None) -> str:
    """The model folder ``benchmarks`` serve for ``kind`` on the task: "default" (the
    ``base`` model as it ships), "fine-tuned" or "tasc-ft" (built from it once, then cached).
    ``base``: a known name or a checkpoint folder; default: the embedded default model."""
    from tasc_vllm.eval.models import resolve_model

    if kind == "default":
        return resolve_model(base)
    if kind not in ("fine-tuned", "tasc-ft"):
        raise ValueError(f"unknown model kind {kind!r}: default, fine-tuned or tasc-ft")
    if task_name not in TUNED_TASKS:
        raise ValueError(f"task {task_name} has no {kind} model (too few examples to tune on); "
                         f"the tuned tasks are {', '.join(TUNED_TASKS)}")
    enriched, baseline = build_checkpoints(task_name, base=base)
    return str(enriched if kind == "tasc-ft" else baseline)


def served_kinds(task_name: str, models: str) -> list[str]:
    """The models ``--model`` (comma-separated kinds) serves on the task: as given on usaddress
    and BFCL, the default model alone on a task without a fine-tune (HumanEval)."""
    kinds = [m for m in models.split(",") if m]
    return kinds if task_name in TUNED_TASKS else ["default"]


def served_messages(model: str, examples) -> list[list[dict]]:
    """The chat messages each example is served with: a fine-tune's own training format (its
    system prompt, if any, and the example's prompt) for a model built by ``tools.enrich``, the
    task's full messages (system prompt and few-shot turns) otherwise."""
    import json

    record = Path(model) / "tasc_ft.json"
    if not record.is_file():
        return [e.messages for e in examples]
    system = json.loads(record.read_text())["settings"].get("system")
    head = [{"role": "system", "content": system}] if system else []
    return [head + [{"role": "user", "content": e.prompt}] for e in examples]


if __name__ == "__main__":  # build the served models: python -m benchmarks.harness.served_models [TASK..] [--base-model M]
    import argparse

    p = argparse.ArgumentParser(description="build the fine-tuned and TASC-ft models the benchmarks serve")
    p.add_argument("tasks", nargs="*", default=list(TUNED_TASKS))
    p.add_argument("--base-model", default=None, help="known model name or checkpoint folder (default: the default model)")
    a = p.parse_args()
    for task in a.tasks:
        for path in build_checkpoints(task, base=a.base_model):
            print(path)
