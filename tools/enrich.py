"""TASC-ft: grow the tokenizer with a task's most useful output n-grams, fine-tune, write a checkpoint.

    python -m tools.enrich --data TRAIN.jsonl --out OUT_DIR [--rounds R] [--tokens-per-round N]
    tasc-vllm enrich ...                                   (the same tool)

Each round mines the n-grams that save the most output tokens under the current
vocabulary, adds the best N as tokens (dropping any that would make some text encode
worse), starts their embeddings at the mean of their parts and fine-tunes the whole model.
Rounds stop after ``--rounds`` or once a round would save less than ``--min-saving``.
``--no-enrich`` runs the identical fine-tuning with the original vocabulary.

Every finished round is saved under ``OUT_DIR.tasc-ft-work/``; a run started again with the
same settings resumes after the last finished round.  ``OUT_DIR`` appears only when the
run is complete (written beside it and renamed), so vLLM never sees a partial checkpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from tasc_vllm.errors import TascError, exit_code
from tasc_vllm.prompt_format import give_plain_format, render_chat

WORK_SUFFIX = ".tasc-ft-work"
FORMAT_VERSION = 1
MAX_GROWTH = 1.0  # the vocabulary may at most double: beyond that the embeddings dominate the model


@dataclass(frozen=True)
class Settings:
    model: str
    data: str
    data_sha256: str
    check_data: tuple[str, ...]
    system: str | None
    enrich: bool
    tokens_per_round: int
    prompt_tokens: int
    max_ngram: int
    min_count: int
    min_saving: float
    whole_words: bool
    structure_only: bool
    json_values_out: bool
    steps_per_round: int
    batch_size: int
    lr: float
    new_token_lr_scale: float
    seed: int
    max_len: int
    length_group: int
    bf16: bool

    def fingerprint(self) -> dict:
        d = asdict(self)
        d["check_data"] = list(d["check_data"])
        d["version"] = FORMAT_VERSION
        return d


# --------------------------------------------------------------------------- checks


def _check_args(args) -> None:
    for name in ("rounds", "tokens_per_round", "steps_per_round", "batch_size", "max_len"):
        if getattr(args, name) < 1:
            raise TascError(f"--{name.replace('_', '-')} must be at least 1 (got {getattr(args, name)})")
    for name in ("prompt_tokens", "length_group"):
        if getattr(args, name) < 0:
            raise TascError(f"--{name.replace('_', '-')} must be 0 or more (got {getattr(args, name)})")
    if args.max_ngram < 2:
        raise TascError(f"--max-ngram must be at least 2 (got {args.max_ngram})")
    if args.min_count < 2:
        raise TascError(f"--min-count must be at least 2 (got {args.min_count})")
    if not 0 <= args.min_saving < 1:
        raise TascError(f"--min-saving must be a fraction in [0, 1) (got {args.min_saving})")
    if not 0 < args.lr < 1:
        raise TascError(f"--lr must be in (0, 1) (got {args.lr})")
    if not 0 < args.new_token_lr_scale <= 1000:
        raise TascError(f"--new-token-lr-scale must be in (0, 1000] (got {args.new_token_lr_scale})")


def _check_output(out: Path, overwrite: bool) -> None:
    if out.exists() and not overwrite:
        raise TascError(f"{out} already exists; choose another --out or pass --overwrite to replace it")
    parent = out.parent
    if not parent.is_dir():
        raise TascError(f"the folder for --out, {parent}, does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise TascError(f"the folder for --out, {parent}, is not writable")


def _check_causal_lm(model_dir: str) -> None:
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    try:
        config = AutoConfig.from_pretrained(model_dir)
    except Exception as e:  # transformers raises several types for unreadable configs
        raise TascError(f"{model_dir} is not a loadable model checkpoint: {e}") from e
    if config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise TascError(
            f"{model_dir} is a {config.model_type!r} model, not a causal language model; "
            f"TASC-ft needs a decoder checkpoint (e.g. Llama, Qwen, SmolLM)"
        )


def _check_growth(base_vocab: int, args) -> None:
    growth = args.rounds * args.tokens_per_round + args.prompt_tokens
    limit = int(base_vocab * MAX_GROWTH)
    if args.enrich and growth > limit:
        raise TascError(
            f"--rounds {args.rounds} x --tokens-per-round {args.tokens_per_round} + --prompt-tokens "
            f"{args.prompt_tokens} = {growth} new tokens "
            f"is more than this model can take: at most {limit} (its vocabulary of {base_vocab} may "
            f"at most double)"
        )


# --------------------------------------------------------------------------- rounds


def _load_model(path: str):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        # safetensors only: a pickled checkpoint (.bin) could run code when loaded
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, use_safetensors=True)
        tokenizer = AutoTokenizer.from_pretrained(path)
    except Exception as e:
        raise TascError(f"cannot load the model or tokenizer in {path}: {e}") from e
    give_plain_format(tokenizer)  # a base model's fine-tune is served in the format it was trained on
    return model, tokenizer


def _save_dir(model, tokenizer, folder: Path, extra: dict, *, dtype=None) -> None:
    """Write a complete checkpoint folder atomically (temp folder + rename)."""
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".tmp"))
    try:
        if dtype is not None:
            model = model.to(dtype)
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        for name, obj in extra.items():
            (tmp / name).write_text(json.dumps(obj, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        os.chmod(tmp, 0o755)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _texts_for_checks(tokenizer, examples) -> list[str]:
    rendered = [render_chat(tokenizer, e.messages) for e in examples]
    return [e.output for e in examples] + rendered


def _mean_tokens(tokenizer, texts) -> float:
    from tools.vocab_extend import encode_lengths

    return float(encode_lengths(tokenizer, texts).mean()) if texts else 0.0


def _input_text(example) -> str:
    """What the model reads for this answer: its last user turn."""
    users = [m["content"] for m in example.messages if m["role"] == "user"]
    return users[-1] if users else ""


def _prompt_texts(examples) -> list[str]:
    """Every message the model reads before its answers (system and user turns)."""
    return [m["content"] for e in examples for m in e.messages if m["role"] != "assistant"]


def _prompt_rule(prompts: list[str], outputs: list[str]):
    """The mining filter of prompt n-grams: whole words, no digit (a number the answer copies
    stays the answer's own tokens), at least one punctuation character (a schema's or a
    form's structure, not the question's prose), and leaving the answers alone: in no answer,
    and no word an answer holds (what an answer copies from the prompt keeps its tokens)."""
    from tools.vocab_mining import all_of, keeps_words_whole, leaves_alone

    def structure(text: str) -> bool:
        return not any(c.isdigit() for c in text) and any(not (c.isalnum() or c.isspace()) for c in text)

    def identifier(c: str) -> bool:  # a prompt's names hold underscores: get_weather, company_name
        return c.isalnum() or c == "_"

    return all_of(structure, keeps_words_whole("\n".join(prompts), identifier),
                  leaves_alone(outputs))


def _prompt_picks(settings: Settings, tokenizer, prompts: list[str], outputs: list[str], progress: bool):
    """The prompts' n-grams to add (--prompt-tokens) and what the round records of them.  None
    are added when together they would save less than --min-saving of the prompts' tokens
    (short prompts that share little structure): new tokens that barely shorten the prompts
    would change what the model learns for nothing."""
    picks = _mine(settings, tokenizer, prompts, settings.prompt_tokens, _prompt_rule(prompts, outputs),
                  "round 1: mining the prompts", progress)
    before = _mean_tokens(tokenizer, prompts)
    saving = sum(p.saving for p in picks) / (before * len(prompts)) if before else 0.0
    record = {"prompt_tokens_before": before, "prompt_saving": saving,
              "prompt_mined": _pick_records(picks)}
    if picks and saving < settings.min_saving:
        record["prompt_skipped"] = (f"the prompts' {len(picks)} n-grams would save {saving:.1%} of their tokens, "
                                    f"under --min-saving {settings.min_saving:.1%}: none added")
        print(f"round 1: {record['prompt_skipped']}", file=sys.stderr)
        return [], record
    return picks, record


def _pick_records(picks) -> list[dict]:
    """What a round records of its mined n-grams."""
    return [{"text": p.text, "count": p.count, "saving": p.saving} for p in picks]


def _mine(settings: Settings, tokenizer, texts: list[str], count: int, accept, desc: str, progress: bool):
    """Up to ``count`` n-grams of ``texts`` that save the most tokens, under ``accept``."""
    from tqdm.auto import tqdm

    from tools.vocab_mining import mine

    seqs = tokenizer(texts, add_special_tokens=False)["input_ids"]
    with tqdm(total=count, desc=desc, unit="token", disable=not progress) as bar:
        return mine(seqs, count, tokenizer.decode, max_n=settings.max_ngram, min_count=settings.min_count,
                    excluded=set(tokenizer.all_special_ids), progress=lambda n: bar.update(n - bar.n),
                    accept=accept)


def _accept_rule(settings: Settings, train):
    """The mining filter the settings ask for (every pick passes when they ask for none)."""
    from tools.vocab_mining import all_of, keeps_json_values_out, keeps_words_whole, leaves_values_to_the_input

    rules = []
    if settings.whole_words:
        rules.append(keeps_words_whole("\n".join(e.output for e in train)))
    if settings.structure_only:
        rules.append(leaves_values_to_the_input([(_input_text(e), e.output) for e in train]))
    if settings.json_values_out:
        rules.append(keeps_json_values_out([e.output for e in train]))
    return all_of(*rules)


def _run_round(r: int, settings: Settings, model, tokenizer, train, checks, base_lengths, first_new: int,
               progress: bool):
    """Grow the vocabulary (unless --no-enrich) and fine-tune.  Returns ``(record, model)``,
    with ``model`` None when the round would save less than --min-saving (the run stops)."""
    from tools.finetune import encode_samples
    from tools.finetune import train as train_model
    from tools.vocab_extend import add_checked_tokens, grow_embeddings

    outputs = [e.output for e in train]
    record: dict = {"round": r, "tokens_before": _mean_tokens(tokenizer, outputs)}
    t0 = time.perf_counter()
    if settings.enrich:
        import copy

        picks = _mine(settings, tokenizer, outputs, settings.tokens_per_round, _accept_rule(settings, train),
                      f"round {r}: mining", progress)
        # the prompts' structure too, once: it shortens what every request prefills
        prompt_picks, prompts = [], (_prompt_texts(train) if r == 1 and settings.prompt_tokens else [])
        record["prompt_mined"] = []
        if prompts:
            prompt_picks, prompt_record = _prompt_picks(settings, tokenizer, prompts, outputs, progress)
            record.update(prompt_record)
        before = copy.deepcopy(tokenizer)
        added, rejected = add_checked_tokens(tokenizer, [p.text for p in picks + prompt_picks], checks, base_lengths)
        record.update(mined=_pick_records(picks),
                      added=added, rejected=rejected)
        if prompt_picks:
            record["prompt_tokens_after"] = _mean_tokens(tokenizer, prompts)
        after = _mean_tokens(tokenizer, outputs)
        saving = 1.0 - after / record["tokens_before"] if record["tokens_before"] else 0.0
        record.update(tokens_after=after, saving=saving)
        if not added or (r > 1 and saving < settings.min_saving):
            record["stopped"] = (
                f"round {r} would save {saving:.1%} of the output tokens, under --min-saving "
                f"{settings.min_saving:.1%}" if added else f"round {r} found no n-gram worth a token"
            )
            return record, None
        grow_embeddings(model, before, added, len(tokenizer))
    else:
        record.update(mined=[], added=[], rejected=[], tokens_after=record["tokens_before"], saving=0.0)
    record["mine_seconds"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    samples = encode_samples(tokenizer, train, settings.max_len)
    losses = train_model(
        model, samples, steps=settings.steps_per_round, batch_size=settings.batch_size, lr=settings.lr,
        seed=settings.seed + r, pad_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0,
        desc=f"round {r}: training", progress=progress,
        new_rows_from=first_new, new_rows_lr_scale=settings.new_token_lr_scale,
        # characters, not tokens: an enriched run and its --no-enrich baseline get the same batches
        lengths=[len(e.output) + sum(len(m["content"]) for m in e.messages) for e in train],
        length_group=settings.length_group, bf16=settings.bf16,
    )
    record.update(losses=losses, train_seconds=time.perf_counter() - t1, vocab_size=len(tokenizer))
    return record, model


# --------------------------------------------------------------------------- work folder


def _work_state(work: Path, settings: Settings) -> tuple[list[dict], bool]:
    """The records of the rounds finished in ``work`` and whether the run had stopped."""
    fp = settings.fingerprint()
    path = work / "settings.json"
    if path.exists():
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise TascError(f"{path} is unreadable ({e}); delete {work} to start afresh") from e
        if saved != fp:
            changed = sorted(k for k in set(fp) | set(saved) if fp.get(k) != saved.get(k))
            raise TascError(
                f"{work} holds an unfinished run with other settings ({', '.join(changed)}); "
                f"run again with the same settings to resume it, or delete it to start afresh"
            )
    else:
        work.mkdir(parents=True, exist_ok=True)
        (work / "settings.json").write_text(json.dumps(fp, indent=1) + "\n", encoding="utf-8")
    records = []
    for r in range(1, 10_000):
        rec_path = work / f"round-{r:03d}" / "tasc_ft_round.json"
        if not rec_path.exists():
            break
        records.append(json.loads(rec_path.read_text(encoding="utf-8")))
    stop_path = work / "stopped.json"
    if stop_path.exists():
        records.append(json.loads(stop_path.read_text(encoding="utf-8")))
        return records, True
    return records, False


# --------------------------------------------------------------------------- final checkpoint


def _plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rounds = [r for r in summary["rounds"] if "losses" in r]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    step = 0
    for r in rounds:
        xs = range(step + 1, step + 1 + len(r["losses"]))
        a.plot(list(xs), r["losses"], lw=1, label=f"round {r['round']}")
        step += len(r["losses"])
    a.set_xlabel("step")
    a.set_ylabel("training loss (answer tokens)")
    a.set_title("loss curve")
    a.legend()
    labels = ["base"] + [f"after round {r['round']}" for r in rounds]
    values = [summary["output_tokens_base"]] + [r["tokens_after"] for r in rounds]
    b.bar(labels, values, color="#4c72b0")
    for i, v in enumerate(values):
        b.text(i, v, f"{v:.1f}", ha="center", va="bottom")
    b.set_ylabel("mean output tokens per answer (train)")
    b.set_title("compression per round")
    fig.suptitle(f"TASC-ft {'enrichment' if summary['settings']['enrich'] else 'baseline fine-tune (--no-enrich)'}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _write_final(out: Path, work: Path, base_dir: str, summary: dict, overwrite: bool, progress: bool) -> None:
    import torch
    from tqdm.auto import tqdm

    from tools.vocab_extend import grow_embeddings, pad_vocabulary

    last = [r for r in summary["rounds"] if "losses" in r][-1]["round"]
    with tqdm(total=5, desc="saving checkpoint", unit="step", disable=not progress) as bar:
        model, tokenizer = _load_model(str(work / f"round-{last:03d}"))
        bar.update()
        import copy

        before = copy.deepcopy(tokenizer)
        padded = pad_vocabulary(tokenizer)
        if padded or model.get_input_embeddings().weight.shape[0] < len(tokenizer):
            grow_embeddings(model, before, [], len(tokenizer))
        summary["vocab_padding"] = padded
        summary["vocab_size"] = len(tokenizer)
        bar.update()
        from transformers import AutoConfig

        base_dtype = getattr(AutoConfig.from_pretrained(base_dir), "dtype", None) or torch.float32
        if isinstance(base_dtype, str):
            base_dtype = getattr(torch, base_dtype)
        tmp_out = out.parent / f".{out.name}.writing"
        shutil.rmtree(tmp_out, ignore_errors=True)
        _save_dir(model, tokenizer, tmp_out, {"tasc_ft.json": summary}, dtype=base_dtype)
        bar.update()
        _plot(summary, tmp_out / "tasc_ft.png")
        _verify(tmp_out)
        bar.update()
        if out.exists():
            if not overwrite:
                shutil.rmtree(tmp_out, ignore_errors=True)
                raise TascError(f"{out} appeared while the run was going; the result is left in {work}")
            old = out.parent / f".{out.name}.old"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out, old)
            os.replace(tmp_out, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp_out, out)
        bar.update()


def _verify(folder: Path) -> None:
    """The written folder loads: config vocabulary == tokenizer size == weight rows."""
    from safetensors import safe_open
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    rows = None
    for f in folder.glob("*.safetensors"):
        with safe_open(f, "pt") as st:
            for key in st.keys():  # safetensors handles have no __iter__
                if key.endswith("embed_tokens.weight"):
                    rows = st.get_slice(key).get_shape()[0]
    if not (config.vocab_size == len(tokenizer) == rows):
        raise TascError(
            f"internal error: written checkpoint has config vocab {config.vocab_size}, "
            f"tokenizer {len(tokenizer)}, embedding rows {rows}"
        )


# --------------------------------------------------------------------------- entry


def enrich(args) -> Path:
    from transformers import AutoTokenizer

    from tasc_vllm.eval.models import resolve_model
    from tools.ft_data import file_sha256, read_examples
    from tools.vocab_extend import encode_lengths

    _check_args(args)
    out = Path(args.out).expanduser().absolute()
    _check_output(out, args.overwrite)
    train = read_examples(args.data, args.system)
    checks_ex = [e for path in args.check_data for e in read_examples(path, args.system)]
    model_dir = resolve_model(args.model, progress=not args.quiet)
    _check_causal_lm(model_dir)
    settings = Settings(
        model=model_dir, data=str(Path(args.data).absolute()), data_sha256=file_sha256(args.data),
        check_data=tuple(file_sha256(p) for p in args.check_data), system=args.system, enrich=args.enrich,
        tokens_per_round=args.tokens_per_round, prompt_tokens=args.prompt_tokens, max_ngram=args.max_ngram,
        min_count=args.min_count,
        min_saving=args.min_saving, whole_words=args.whole_words, structure_only=args.structure_only,
        json_values_out=args.json_values_out,
        steps_per_round=args.steps_per_round, batch_size=args.batch_size,
        lr=args.lr, new_token_lr_scale=args.new_token_lr_scale, seed=args.seed, max_len=args.max_len,
        length_group=args.length_group, bf16=args.bf16,
    )
    base_tok = AutoTokenizer.from_pretrained(model_dir)
    _check_growth(len(base_tok), args)
    work = out.parent / (out.name + WORK_SUFFIX)
    try:
        records, stopped = _work_state(work, settings)
    except OSError as e:
        raise TascError(f"cannot write the work folder {work} ({e.strerror or e})") from e
    progress = not args.quiet
    finished = [r for r in records if "losses" in r]
    if finished:
        model, tokenizer = _load_model(str(work / f"round-{finished[-1]['round']:03d}"))
        print(f"resuming after round {finished[-1]['round']} from {work}", file=sys.stderr)
    else:
        model, tokenizer = _load_model(model_dir)
    check_texts = _texts_for_checks(base_tok, train + checks_ex)
    base_lengths = encode_lengths(base_tok, check_texts)
    r = len(finished) + 1
    while not stopped and r <= args.rounds:
        try:
            record, model_out = _run_round(
                r, settings, model, tokenizer, train, check_texts, base_lengths, len(base_tok), progress)
        except KeyboardInterrupt:
            print(f"interrupted in round {r}; run the same command again to resume after round {r - 1}", file=sys.stderr)
            raise
        if model_out is None:
            (work / "stopped.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
            records.append(record)
            print(f"stopping: {record['stopped']}", file=sys.stderr)
            break
        _save_dir(model, tokenizer, work / f"round-{r:03d}", {"tasc_ft_round.json": record})
        records.append(record)
        print(
            f"round {r}: +{len(record['added'])} tokens, output tokens per answer "
            f"{record['tokens_before']:.1f} -> {record['tokens_after']:.1f}, final loss {record['losses'][-1]:.3f}",
            file=sys.stderr,
        )
        r += 1
    trained = [x for x in records if "losses" in x]
    if not trained:
        raise TascError("no round finished: nothing to write")
    # the vocabulary of the last trained round (a stopping round's picks were not kept)
    final_tok = AutoTokenizer.from_pretrained(work / f"round-{trained[-1]['round']:03d}")
    outputs = [e.output for e in train]
    check_outputs = [e.output for e in checks_ex]
    summary = {
        "format_version": FORMAT_VERSION,
        "settings": settings.fingerprint() | {"rounds": args.rounds},
        "base_model": model_dir,
        "base_vocab_size": len(base_tok),
        "rounds_done": len(trained),
        "total_steps": sum(len(x["losses"]) for x in trained),
        "output_tokens_base": _mean_tokens(base_tok, outputs),
        "output_tokens_final": _mean_tokens(final_tok, outputs),
        "check_output_tokens_base": _mean_tokens(base_tok, check_outputs),
        "check_output_tokens_final": _mean_tokens(final_tok, check_outputs),
        "tokens_added": [t for x in trained for t in x["added"]],
        "rounds": records,
    }
    _write_final(out, work, model_dir, summary, args.overwrite, progress)
    shutil.rmtree(work, ignore_errors=True)
    base, final = summary["output_tokens_base"], summary["output_tokens_final"]
    print(
        f"wrote {out}: vocabulary {summary['base_vocab_size']} -> {summary['vocab_size']}, "
        f"{summary['total_steps']} training steps, output tokens per answer {base:.1f} -> {final:.1f} "
        f"({1 - final / base:.1%} fewer)"
    )
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, help="model folder or known name (default: the embedded default model)")
    p.add_argument("--data", required=True, help="training JSONL: 'prompt' and 'output' fields, or chat 'messages'")
    p.add_argument("--out", required=True, help="checkpoint folder to write (must not exist unless --overwrite)")
    p.add_argument("--rounds", type=int, default=2, help="enrichment rounds (default 2)")
    p.add_argument("--tokens-per-round", type=int, default=32, help="new tokens per round (default 32)")
    p.add_argument("--prompt-tokens", type=int, default=0,
                   help="new tokens from the prompts' n-grams, in the first round: a schema's or a form's "
                        "structure, so every request prefills fewer tokens; none when they would save less than "
                        "--min-saving of the prompts' tokens (default 0)")
    p.add_argument("--max-ngram", type=int, default=8, help="longest n-gram, in current tokens, a pick may have (default 8)")
    p.add_argument("--min-count", type=int, default=2, help="occurrences an n-gram needs to be a candidate (default 2)")
    p.add_argument("--min-saving", type=float, default=0.02,
                   help="stop once a round would cut output tokens by less than this fraction (default 0.02)")
    p.add_argument("--whole-words", action="store_true",
                   help="never pick an n-gram that cuts a word or number in two anywhere in the outputs")
    p.add_argument("--structure-only", action="store_true",
                   help="never pick an n-gram holding a word that the example's own input holds "
                        "(values the model should copy from the prompt stay out of the vocabulary)")
    p.add_argument("--json-values-out", action="store_true",
                   help="never pick an n-gram holding part of a JSON value (a string's contents, a number, "
                        "true/false/null) where it occurs in a JSON output: keys and punctuation only")
    p.add_argument("--steps-per-round", type=int, default=150, help="fine-tuning steps per round (default 150)")
    p.add_argument("--batch-size", type=int, default=8, help="examples per step (default 8)")
    p.add_argument("--lr", type=float, default=1e-4, help="peak learning rate (default 1e-4)")
    p.add_argument("--new-token-lr-scale", type=float, default=10.0,
                   help="the added tokens' embedding rows learn at this many times --lr (default 10)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--length-group", type=int, default=16,
                   help="batches per window sorted by length, so a batch holds examples of similar "
                        "length and little padding (default 16; 0 or 1: plain shuffle)")
    p.add_argument("--bf16", action="store_true",
                   help="forward pass under bfloat16 autocast (weights and optimizer stay float32); "
                        "about 1.8x faster steps on CPUs with AVX512-BF16 or AMX")
    p.add_argument("--max-len", type=int, default=512, help="longest training sequence in tokens (default 512)")
    p.add_argument("--system", default=None, help="system prompt to put before each 'prompt' (default: none)")
    p.add_argument("--check-data", action="append", default=[],
                   help="more JSONL (e.g. the test split) whose texts new tokens must not encode worse; repeatable")
    p.add_argument("--no-enrich", dest="enrich", action="store_false",
                   help="the identical fine-tuning with the original vocabulary (the fair baseline)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def main(argv: list[str] | None = None) -> int:
    """``python -m tools.enrich ARGS``: the same tool as ``tasc-vllm enrich ARGS``."""
    parser = argparse.ArgumentParser(prog="python -m tools.enrich", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return exit_code("tools.enrich", enrich, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
