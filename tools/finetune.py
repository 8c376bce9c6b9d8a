"""Full fine-tuning of a causal LM on (chat, answer) pairs, on the CPU, loss on the answer only.

The loss is computed only where the answer is: the decoder's hidden states at those
positions go through the output layer, so the (large) vocabulary projection is not spent on
prompt tokens.  Batches are drawn from a seeded shuffle, so the same settings give the same
run with any vocabulary, which is what makes ``--no-enrich`` a fair baseline.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from tasc_vllm.errors import TascError
from tasc_vllm.index.ngram_cache import output_frame
from tasc_vllm.prompt_format import render_chat


@dataclass(frozen=True)
class Sample:
    prompt_ids: list[int]
    answer_ids: list[int]  # the answer's tokens and the end-of-turn token


def encode_samples(tokenizer, examples, max_len: int) -> list[Sample]:
    """Token ids of every example: the chat template's prompt and the answer + end of turn.

    Prompts are rendered to text and then tokenized, as vLLM's chat endpoint does.
    """
    _, end = output_frame(tokenizer)
    if end < 0:
        raise TascError("the tokenizer has neither an end-of-turn nor an EOS token to end answers with")
    rendered = [render_chat(tokenizer, e.messages) for e in examples]
    prompts = tokenizer(rendered, add_special_tokens=False)["input_ids"]
    answers = tokenizer([e.output for e in examples], add_special_tokens=False)["input_ids"]
    samples = []
    for p, a in zip(prompts, answers):
        answer = list(a) + [end]
        prompt = list(p)[-max(1, max_len - len(answer)) :]  # keep the end of an over-long prompt
        samples.append(Sample(prompt, answer[: max_len - 1]))
    return samples


def lr_at(step: int, steps: int, lr: float, warmup: int) -> float:
    """Linear warm-up, then cosine decay to a tenth of ``lr``."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return lr * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))))


def batch_order(n: int, steps: int, batch_size: int, seed: int, lengths: Sequence[float] | None = None,
                group: int = 16) -> list[list[int]]:
    """Indices of each step's batch: consecutive epochs of a seeded shuffle.

    With ``lengths``, every window of ``group`` batches of that shuffle is sorted by length
    and cut into batches, whose order within the window is shuffled again: a batch then holds
    examples of similar length, so little of it is padding, and every example is still seen
    once per epoch.  Give lengths that do not depend on the vocabulary (characters), so an
    enriched run and its ``--no-enrich`` baseline see the same batches.
    """
    rng = random.Random(seed)
    order: list[int] = []
    while len(order) < steps * batch_size:
        epoch = list(range(n))
        rng.shuffle(epoch)
        order.extend(epoch)
    order = order[: steps * batch_size]
    batches = [order[i * batch_size : (i + 1) * batch_size] for i in range(steps)]
    if lengths is None or group <= 1:
        return batches
    if len(lengths) != n:
        raise TascError(f"batch_order got {len(lengths)} lengths for {n} examples")
    grouped: list[list[int]] = []
    for w in range(0, steps, group):
        window = sorted((i for b in batches[w : w + group] for i in b), key=lambda i: lengths[i])
        cut = [window[j : j + batch_size] for j in range(0, len(window), batch_size)]
        rng.shuffle(cut)
        grouped.extend(cut)
    return grouped


def _collate(samples: Sequence[Sample], pad_id: int):
    import torch

    seqs = [s.prompt_ids + s.answer_ids for s in samples]
    width = max(map(len, seqs))
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    target = torch.full((len(seqs), width), -100, dtype=torch.long)
    for row, (s, seq) in enumerate(zip(samples, seqs)):
        ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1
        start = len(s.prompt_ids)
        # position t predicts token t + 1: targets are the answer tokens, one place earlier
        target[row, start - 1 : len(seq) - 1] = torch.tensor(s.answer_ids)
    return ids, mask, target


def answer_loss(model, ids, mask, target, bf16: bool = False):
    """Mean cross-entropy over the answer tokens only.

    With ``bf16`` the forward pass runs under CPU autocast: matrix products in bfloat16,
    weights, gradients and optimizer state stay float32.
    """
    import torch

    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        hidden = model.get_decoder()(input_ids=ids, attention_mask=mask).last_hidden_state
        where = target != -100
        logits = model.get_output_embeddings()(hidden[where]).float()
    return torch.nn.functional.cross_entropy(logits, target[where])


def embedding_matrices(model) -> list:
    """The input embedding matrix and, if it is a separate tensor, the output one."""
    inp = model.get_input_embeddings().weight
    out_layer = model.get_output_embeddings()
    if out_layer is None or out_layer.weight.data_ptr() == inp.data_ptr():
        return [inp]
    return [inp, out_layer.weight]


class RowStepScale:
    """Multiplies the optimizer's step on the embedding rows from ``first_row`` on by ``scale``.

    Adam normalises gradients, so scaling a gradient would not change the step: instead the
    step just taken on those rows is stretched after ``opt.step()``.  The rows' effective
    learning rate becomes ``scale`` times the rest of the model's, following the same schedule.
    """

    def __init__(self, model, first_row: int, scale: float):
        self.rows = [w for w in embedding_matrices(model) if w.requires_grad and w.shape[0] > first_row]
        self.first_row, self.scale = first_row, scale
        self._before: list = []

    def before_step(self) -> None:
        self._before = [w.detach()[self.first_row :].clone() for w in self.rows]

    def after_step(self) -> None:
        for w, old in zip(self.rows, self._before):
            new = w.detach()[self.first_row :]
            new.copy_(old + self.scale * (new - old))


def train(model, samples: Sequence[Sample], *, steps: int, batch_size: int, lr: float, seed: int,
          pad_id: int, warmup: int | None = None, desc: str = "training", progress: bool = True,
          new_rows_from: int | None = None, new_rows_lr_scale: float = 1.0,
          lengths: Sequence[float] | None = None, length_group: int = 16, bf16: bool = False) -> list[float]:
    """Fine-tune ``model`` in place for ``steps`` AdamW steps; returns the loss of every step.

    With ``new_rows_from``, the embedding rows from that id on (the tokens TASC-ft added)
    learn at ``new_rows_lr_scale`` times the learning rate of the rest of the model.
    ``lengths`` and ``length_group`` group batches by length (see ``batch_order``); ``bf16``
    runs the forward pass under bfloat16 autocast.
    """
    import torch
    from tqdm.auto import tqdm

    if not samples:
        raise TascError("no training samples")
    if new_rows_lr_scale <= 0:
        raise TascError(f"the new rows' learning-rate scale must be positive (got {new_rows_lr_scale})")
    row_scale = (RowStepScale(model, new_rows_from, new_rows_lr_scale)
                 if new_rows_from is not None and new_rows_lr_scale != 1.0 else None)
    torch.manual_seed(seed)
    warmup = max(1, steps // 10) if warmup is None else max(1, warmup)
    params = [p for p in model.parameters() if p.requires_grad]
    # the fused update: one pass over all parameters per step, where the default runs each
    # operation over all of them in turn (a Gemma-3 270M step's update: 1 s against 4.5 s)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0, fused=True)
    model.train()
    losses: list[float] = []
    batches = batch_order(len(samples), steps, batch_size, seed, lengths, length_group)
    bar = tqdm(batches, desc=desc, unit="step", disable=not progress)
    for step, idx in enumerate(bar):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, lr, warmup)
        loss = answer_loss(model, *_collate([samples[i] for i in idx], pad_id), bf16=bf16)
        if not torch.isfinite(loss):
            raise TascError(f"training diverged at step {step + 1} (loss {loss.item()}); lower --lr")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        if row_scale:
            row_scale.before_step()
        opt.step()
        if row_scale:
            row_scale.after_step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss.item()))
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    model.eval()
    return losses
