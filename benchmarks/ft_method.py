"""Full fine-tuning or LoRA for TASC-ft? Both, side by side, on the same enriched vocabulary.

    python -m benchmarks.ft_method [--steps 40] [--tokens 32]

Grows the default model's vocabulary by one round of mined usaddress tokens (as
``tools.enrich`` does), then trains copies on the same batches: full fine-tuning; full
fine-tuning with the new token rows at 10 times the learning rate (``tools.enrich
--new-token-lr-scale 10``); and LoRA (rank 16 on every linear layer, PEFT) with the new
token rows trainable (``trainable_token_indices``; the new tokens have no pretrained rows,
so LoRA alone could not learn them) at 10 times full fine-tuning's rate.  Reports seconds
per step, the loss over the last quarter of the steps, and held-out loss on test answers.
Writes ``benchmarks/results/ft-method.json`` and prints its table (an experiment the docs
cite, not a RESULTS.md section).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time

from benchmarks import report
from benchmarks.harness.machine import machine
from benchmarks.harness.paths import RESULTS
from benchmarks.sections.ft_method import section

# arm -> (method, peak learning rate, learning-rate scale of the new token rows):
# tools.enrich's default rate for full fine-tuning, 10x that for LoRA (its usual range)
ARMS = {
    "full": ("full", 1e-4, 1.0),
    "full, new rows x10": ("full", 1e-4, 10.0),
    "lora": ("lora", 1e-3, 1.0),
}


def main(argv=None) -> int:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tasc_vllm.eval.models import materialize
    from tasc_vllm.eval.tasks import get_task
    from tools.finetune import _collate, answer_loss, encode_samples, train
    from tools.ft_data import FtExample
    from tools.vocab_extend import add_checked_tokens, encode_lengths, grow_embeddings
    from tools.vocab_mining import mine

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--tokens", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--rank", type=int, default=16)
    args = p.parse_args(argv)
    t_start = time.time()

    model_dir = str(materialize())
    task = get_task("usaddress")
    to_ex = lambda exs: [FtExample([{"role": "user", "content": e.prompt}], e.reference) for e in exs]
    train_ex, test_ex = to_ex(task.load("train")), to_ex(task.load("test")[:64])
    tok = AutoTokenizer.from_pretrained(model_dir)
    before = copy.deepcopy(tok)
    outputs = [e.output for e in train_ex]
    picks = mine(tok(outputs, add_special_tokens=False)["input_ids"], args.tokens, tok.decode,
                 excluded=set(tok.all_special_ids))
    texts = outputs + [e.output for e in test_ex]
    added, _ = add_checked_tokens(tok, [c.text for c in picks], texts, encode_lengths(before, texts))
    samples = encode_samples(tok, train_ex, 512)
    held_out = encode_samples(tok, test_ex, 512)
    new_ids = list(range(len(before), len(tok)))
    results = {"name": "ft-method", "started_unix": int(t_start), "machine": machine(), "settings": vars(args),
               "tokens_added": len(added), "methods": {}}

    def held_out_loss(model) -> float:
        model.eval()
        with torch.no_grad():
            losses = [answer_loss(model, *_collate(held_out[i:i + 16], tok.pad_token_id)).item()
                      for i in range(0, len(held_out), 16)]
        return sum(losses) / len(losses)

    for arm, (method, lr, row_scale) in ARMS.items():
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        grow_embeddings(model, before, added, len(tok))
        if method == "lora":
            from peft import LoraConfig, get_peft_model

            model = get_peft_model(model, LoraConfig(
                r=args.rank, lora_alpha=2 * args.rank, target_modules="all-linear",
                trainable_token_indices={"embed_tokens": new_ids}, task_type="CAUSAL_LM"))
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        t0 = time.perf_counter()
        losses = train(model, samples, steps=args.steps, batch_size=args.batch_size,
                       lr=lr, seed=0, pad_id=tok.pad_token_id, desc=f"{arm}: training",
                       new_rows_from=len(before), new_rows_lr_scale=row_scale)
        seconds = time.perf_counter() - t0
        tail = losses[-max(1, args.steps // 4):]
        results["methods"][arm] = {
            "method": method, "trainable_parameters": trainable, "lr": lr, "new_rows_lr_scale": row_scale,
            "seconds_per_step": seconds / args.steps,
            "train_loss_last_quarter": sum(tail) / len(tail), "held_out_loss": held_out_loss(model),
            "losses": losses,
        }
        print(arm, {k: v for k, v in results["methods"][arm].items() if k != "losses"}, flush=True)
    results["seconds"] = time.time() - t_start
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ft-method.json").write_text(json.dumps(results, indent=1))
    print("\n".join(section(results)))
    report.write_report()  # RESULTS.md lists the file (its table is printed above, not rendered there)
    return 0


if __name__ == "__main__":
    sys.exit(main())
