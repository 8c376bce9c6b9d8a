"""The table of a ``benchmarks.ft_method`` result file (``ft-method.json``): full fine-tuning
or LoRA for TASC-ft, side by side.  Not a RESULTS.md section (the file is an experiment the
docs cite, not a stage of ``make bench``); ``benchmarks.ft_method`` prints it."""

from __future__ import annotations

from benchmarks.sections.common import fmt


def row_lr(m: dict) -> str:
    """The new token rows' peak learning rate, when it differs from the model's."""
    scale = m.get("new_rows_lr_scale", 1.0)
    return "same" if scale == 1.0 or "lr" not in m else f"{m['lr'] * scale:g} ({scale:g}x)"


def section(res: dict) -> list[str]:
    s = res["settings"]
    lines = [
        "## TASC-ft: full fine-tuning or LoRA (`ft-method.json`, `python -m benchmarks.ft_method`)",
        "",
        f"One round of {res['tokens_added']} mined usaddress tokens, then {s['steps']} steps of batch {s['batch_size']} "
        f"on the same batches; LoRA rank {s['rank']} on every linear layer with the new token rows trainable.",
        "",
        "| method | trainable parameters | peak lr | new token rows' lr | seconds per step | train loss, last quarter | held-out answer loss |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, m in res["methods"].items():
        lines.append(
            f"| {name} | {m['trainable_parameters']:,} | {m.get('lr', '-')} | "
            f"{row_lr(m)} | {fmt(m['seconds_per_step'])} | "
            f"{fmt(m['train_loss_last_quarter'], 3)} | {fmt(m['held_out_loss'], 3)} |"
        )
    return lines + [""]
