"""The ``tasc-vllm`` command."""

from __future__ import annotations

import argparse
import sys
import time

from tasc_vllm.errors import exit_code


def _cmd_model(args) -> None:
    from tasc_vllm.eval.models import materialize

    print(materialize(args.name, progress=not args.quiet))


def _cmd_build_index(args) -> None:
    from tasc_vllm.index.corpus import read_records
    from tasc_vllm.index.index_file import read_index, write_index

    t0 = time.perf_counter()
    prompt_fields = tuple(f for f in args.prompt_field.split(",") if f)
    texts, prompts = read_records(args.corpus, field=args.field, prompt_fields=prompt_fields)
    out = write_index(texts, args.output, source=args.corpus, field=args.field, prompts=prompts)
    index = read_index(out)
    print(
        f"wrote {out}: {len(index)} texts, {index.header['num_bytes']:,} bytes, "
        + ("with their prompts" if prompts else f"no prompts (no {' or '.join(prompt_fields) or 'prompt'} field)")
        + f", in {time.perf_counter() - t0:.2f} s"
    )
    if args.model:
        from transformers import AutoTokenizer

        from tasc_vllm.config import load_config
        from tasc_vllm.eval.models import resolve_model
        from tasc_vllm.index.ngram_cache import load_tokenized

        cfg = load_config()
        t1 = time.perf_counter()
        tokenizer = AutoTokenizer.from_pretrained(resolve_model(args.model))
        corpus = load_tokenized(index, tokenizer, cfg.max_order, cfg.min_count, progress=True)
        print(
            f"tokenized for {args.model}: {corpus.num_tokens:,} tokens, n-gram table "
            f"{corpus.table.nbytes / 2**20:.1f} MiB, cached at {corpus.cache_path} "
            f"in {time.perf_counter() - t1:.2f} s"
        )
        from tasc_vllm.index.policy import prepare_scorer

        t2 = time.perf_counter()
        scorer = prepare_scorer(index, tokenizer, corpus, cfg, len(tokenizer), progress=True)[0]
        info = scorer.info
        print(
            f"drafting policy ({info.get('trees', 0)} trees) trained on {info.get('positions', 0):,} answer positions "
            f"({'with' if info.get('prompts') else 'without'} prompts; the best candidate right at "
            f"{info.get('top_candidate_right', 0):.0%} of the held-out fold's), cached at {scorer.path} "
            f"in {time.perf_counter() - t2:.2f} s"
        )


def _cmd_task_export(args) -> None:
    from tasc_vllm.eval.tasks import export_jsonl, get_task

    task = get_task(args.name)
    n = export_jsonl(task, args.split, args.output)
    print(f"wrote {args.output}: {n} {args.split} examples of {task.name}")


def _cmd_demo(args) -> None:
    from tasc_vllm.eval.demo import run_demo

    run_demo(num_prompts=args.prompts, k=args.k, batch_size=args.batch, task_name=args.task,
             finetune_steps=args.finetune_steps, json_path=args.json)


def _cmd_enrich(args) -> None:
    from tools.enrich import enrich

    enrich(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tasc-vllm", description="Task-Adaptive Sequence Compression for vLLM")
    sub = p.add_subparsers(dest="command", required=True)

    m = sub.add_parser("model", help="print the local path of an embedded model, materialising it on first use")
    from tasc_vllm.eval.models import DEFAULT_MODEL

    m.add_argument("name", nargs="?", default=DEFAULT_MODEL)
    m.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    m.set_defaults(func=_cmd_model)

    b = sub.add_parser("build-index", help="build a .tasc index from a task's output corpus")
    b.add_argument("corpus", help="JSONL (one object per line) or plain text (one output per line)")
    b.add_argument("-o", "--output", required=True, help="index file to write, e.g. TASK.tasc")
    b.add_argument("--field", default="output", help="JSONL field holding the output text (default: output)")
    b.add_argument("--prompt-field", default="prompt,messages",
                   help="JSONL field(s) holding each output's prompt, a string or chat messages; the first found "
                        "is kept, and the drafting policy trains on them (default: prompt,messages; none found: "
                        "an index of outputs alone)")
    b.add_argument("--model", default=None,
                   help="also tokenize for this model now (name or path) and train the drafting policy, so engine "
                        "start is fast")
    b.set_defaults(func=_cmd_build_index)

    t = sub.add_parser("task", help="task data")
    tsub = t.add_subparsers(dest="task_command", required=True)
    te = tsub.add_parser("export", help="write a task split as JSONL (id, prompt, messages, output)")
    te.add_argument("name")
    te.add_argument("--split", default="train", choices=["train", "test"])
    te.add_argument("-o", "--output", required=True)
    te.set_defaults(func=_cmd_task_export)

    from tools.enrich import add_arguments as add_enrich_arguments

    e = sub.add_parser("enrich", help="TASC-ft: grow the vocabulary with output n-grams, fine-tune, write a checkpoint")
    add_enrich_arguments(e)
    e.set_defaults(func=_cmd_enrich)

    d = sub.add_parser("demo", help="the default model fine-tuned on the default task, served by vLLM without and with TASC-spec")
    d.add_argument("--prompts", type=int, default=32, help="held-out prompts to run (default 32)")
    d.add_argument("--k", type=int, default=8, help="num_speculative_tokens (default 8)")
    d.add_argument("--batch", type=int, default=1, help="concurrent requests (default 1)")
    d.add_argument("--task", default="usaddress")
    d.add_argument("--finetune-steps", type=int, default=100,
                   help="steps of the fine-tune the demo serves (default 100; built once, then cached)")
    d.add_argument("--json", default=None, metavar="FILE",
                   help="also write the summary table (method, model, tokens/s, speed-up, task score) as JSON")
    d.set_defaults(func=_cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return exit_code("tasc-vllm", args.func, args)


if __name__ == "__main__":
    sys.exit(main())
