"""TASC-ft end to end on the default model: a tiny real run, resume after a kill, bad input,
and the written checkpoint served by a real vLLM engine."""

import json

import pytest

from tasc_vllm.cli import main as cli_main
from tasc_vllm.eval.tasks import get_task
from tools import finetune
from tools.enrich import main

TINY = ["--rounds", "2", "--tokens-per-round", "6", "--steps-per-round", "2", "--batch-size", "2",
        "--max-len", "160", "-q"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("ft-data")
    task = get_task("usaddress")
    train = d / "train.jsonl"
    test = d / "test.jsonl"
    for path, examples in ((train, task.load("train")[:24]), (test, task.load("test")[:8])):
        path.write_text("".join(json.dumps({"prompt": e.prompt, "output": e.reference}) + "\n" for e in examples))
    return {"train": train, "test": test, "dir": d}


# a structure every prompt shares, as a schema is, for --prompt-tokens (the addresses share none)
SYSTEM = "Label each part of the address (number, street, unit, city) and answer in JSON only: one object per address."


@pytest.fixture(scope="module")
def enriched(data, default_model_dir):
    out = data["dir"] / "enriched"
    assert main(["--data", str(data["train"]), "--check-data", str(data["test"]), "--out", str(out), *TINY,
                 "--system", SYSTEM, "--prompt-tokens", "4"]) == 0
    return out


@pytest.fixture(scope="module")
def enriched_gemma(data):
    """The same tiny run on a second family: Gemma-3 270M (262,144 tokens, tied embeddings,
    <bos>, no chat template)."""
    out = data["dir"] / "enriched-gemma"
    assert main(["--model", "gemma-3-270m", "--data", str(data["train"]), "--check-data", str(data["test"]),
                 "--out", str(out), *TINY]) == 0
    return out


def _texts(path):
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [r["output"] for r in rows] + [r["prompt"] for r in rows]


def test_enriched_checkpoint_is_complete_and_compresses(enriched, data, default_model_dir):
    from transformers import AutoConfig, AutoTokenizer

    names = {p.name for p in enriched.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "generation_config.json", "tasc_ft.json",
            "tasc_ft.png"} <= names
    assert "chat_template.jinja" in names or "chat_template" in (enriched / "tokenizer_config.json").read_text()
    assert not (enriched.parent / (enriched.name + ".tasc-ft-work")).exists()
    summary = json.loads((enriched / "tasc_ft.json").read_text())
    tok = AutoTokenizer.from_pretrained(enriched)
    base = AutoTokenizer.from_pretrained(default_model_dir)
    config = AutoConfig.from_pretrained(enriched)
    assert config.vocab_size == len(tok) == summary["vocab_size"] and len(tok) % 64 == 0
    assert summary["rounds_done"] == 2 and summary["total_steps"] == 4
    assert [len(r["losses"]) for r in summary["rounds"]] == [2, 2]
    assert 0 < len(summary["tokens_added"]) <= 12 + 4
    # the prompts' n-grams, in the first round only: the prompts get shorter
    first, second = summary["rounds"]
    assert 0 < len(first["prompt_mined"]) <= 4 and second["prompt_mined"] == []
    assert first["prompt_tokens_after"] < first["prompt_tokens_before"]
    assert all(not any(c.isdigit() for c in m["text"]) for m in first["prompt_mined"])
    assert summary["output_tokens_final"] < 0.8 * summary["output_tokens_base"]
    assert summary["check_output_tokens_final"] < summary["check_output_tokens_base"]
    for r in summary["rounds"]:
        assert r["tokens_after"] < r["tokens_before"] and r["added"]
    # every training and test text round-trips and never needs more tokens than before
    for text in _texts(data["train"]) + _texts(data["test"]):
        ids = tok.encode(text, add_special_tokens=False)
        assert tok.decode(ids) == text
        assert len(ids) <= len(base.encode(text, add_special_tokens=False))
    chat = [{"role": "user", "content": "hi"}]
    assert tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True) == \
        base.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    assert tok.eos_token_id == base.eos_token_id


def test_no_enrich_keeps_the_vocabulary_and_the_same_steps(data, tmp_path):
    out = tmp_path / "baseline"
    assert main(["--data", str(data["train"]), "--out", str(out), "--no-enrich", *TINY]) == 0
    summary = json.loads((out / "tasc_ft.json").read_text())
    assert summary["vocab_size"] == summary["base_vocab_size"] and summary["tokens_added"] == []
    assert summary["total_steps"] == 4 and summary["output_tokens_final"] == summary["output_tokens_base"]


def test_a_killed_run_resumes_after_the_last_finished_round(data, tmp_path, monkeypatch, capsys):
    out = tmp_path / "resumed"
    real_train = finetune.train
    calls = []

    def dies_in_round_2(*a, **kw):
        calls.append(kw["desc"])
        if kw["desc"].startswith("round 2"):
            raise KeyboardInterrupt
        return real_train(*a, **kw)

    monkeypatch.setattr(finetune, "train", dies_in_round_2)
    args = ["--data", str(data["train"]), "--out", str(out), *TINY]
    assert main(args) == 130
    assert "resume" in capsys.readouterr().err
    work = tmp_path / "resumed.tasc-ft-work"
    assert not out.exists()  # nothing vLLM could load
    assert (work / "round-001" / "model.safetensors").exists() and not (work / "round-002").exists()
    first = json.loads((work / "round-001" / "tasc_ft_round.json").read_text())

    calls.clear()
    monkeypatch.setattr(finetune, "train", lambda *a, **kw: (calls.append(kw["desc"]), real_train(*a, **kw))[1])
    assert main(args) == 0
    assert calls == ["round 2: training"]  # round 1 was not run again
    summary = json.loads((out / "tasc_ft.json").read_text())
    assert summary["rounds"][0] == first and summary["rounds_done"] == 2
    assert not work.exists()


def test_other_settings_do_not_resume_a_work_folder(data, tmp_path, monkeypatch, capsys):
    out = tmp_path / "o"
    monkeypatch.setattr(finetune, "train", lambda *a, **kw: (_ for _ in ()).throw(KeyboardInterrupt))
    assert main(["--data", str(data["train"]), "--out", str(out), *TINY]) == 130
    capsys.readouterr()
    assert main(["--data", str(data["train"]), "--out", str(out), *TINY, "--lr", "3e-4"]) == 2
    err = capsys.readouterr().err
    assert "other settings (lr)" in err and "delete it" in err


def test_bad_input_gets_a_clear_error_and_leaves_nothing(data, tmp_path, capsys, default_model_dir):
    def fails(argv, message):
        assert cli_main(["enrich", *argv]) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("tasc-vllm: error:") and message in err, err
        assert not (tmp_path / "out").exists() and not (tmp_path / "out.tasc-ft-work").exists()

    out = ["--out", str(tmp_path / "out")]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "output": "A"}\n{"prompt": "b", "output": \n')
    fails(["--data", str(bad), *out], "bad.jsonl:2: malformed JSON")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    fails(["--data", str(empty), *out], "is empty")
    nofield = tmp_path / "nofield.jsonl"
    nofield.write_text('{"input": "a", "output": "A"}\n')
    fails(["--data", str(nofield), *out], "needs a 'prompt' or a 'messages' field")
    fails(["--data", str(tmp_path / "missing.jsonl"), *out], "does not exist")
    notlm = tmp_path / "vit"
    notlm.mkdir()
    (notlm / "config.json").write_text(json.dumps({"model_type": "vit"}))
    fails(["--data", str(data["train"]), "--model", str(notlm), *out], "not a causal language model")
    empty_dir = tmp_path / "nomodel"
    empty_dir.mkdir()
    fails(["--data", str(data["train"]), "--model", str(empty_dir), *out], "no config.json")
    fails(["--data", str(data["train"]), "--tokens-per-round", "40000", *out], "may at most double")
    fails(["--data", str(data["train"]), "--rounds", "0", *out], "--rounds must be at least 1")
    fails(["--data", str(data["train"]), "--prompt-tokens", "-1", *out], "--prompt-tokens must be 0 or more")
    fails(["--data", str(data["train"]), "--prompt-tokens", "99000", *out], "may at most double")
    fails(["--data", str(data["train"]), "--new-token-lr-scale", "0", *out], "--new-token-lr-scale must be in")
    fails(["--data", str(data["train"]), "--out", str(bad / "out")], "does not exist")
    existing = tmp_path / "existing"
    existing.mkdir()
    assert cli_main(["enrich", "--data", str(data["train"]), "--out", str(existing)]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "--overwrite" in err


def test_gemma_grows_its_vocabulary_and_keeps_its_format(enriched_gemma, data):
    """TASC-ft on a 262,144-token vocabulary with tied embeddings: the grown checkpoint keeps
    them tied, puts <bos> first, and is saved with the plain prompt format it was trained on."""
    from safetensors import safe_open
    from transformers import AutoConfig, AutoTokenizer

    from tasc_vllm.eval.models import materialize
    from tasc_vllm.prompt_format import PLAIN_CHAT_TEMPLATE

    summary = json.loads((enriched_gemma / "tasc_ft.json").read_text())
    tok = AutoTokenizer.from_pretrained(enriched_gemma)
    base = AutoTokenizer.from_pretrained(materialize("gemma-3-270m", progress=False))
    config = AutoConfig.from_pretrained(enriched_gemma)
    assert summary["base_vocab_size"] == 262_144 and config.tie_word_embeddings
    assert config.vocab_size == len(tok) == summary["vocab_size"] > 262_144 and len(tok) % 64 == 0
    with safe_open(str(enriched_gemma / "model.safetensors"), framework="pt") as st:
        assert "lm_head.weight" not in st.keys()  # tied: one matrix, grown once
        assert st.get_slice("model.embed_tokens.weight").get_shape()[0] == len(tok)
    assert summary["output_tokens_final"] < 0.8 * summary["output_tokens_base"]
    assert tok.chat_template == PLAIN_CHAT_TEMPLATE and not base.chat_template
    assert tok("12 Main St").input_ids[0] == tok.bos_token_id == base.bos_token_id
    assert tok.eos_token_id == base.eos_token_id
    for text in _texts(data["train"]) + _texts(data["test"]):
        ids = tok.encode(text, add_special_tokens=False)
        assert tok.decode(ids) == text
        assert len(ids) <= len(base.encode(text, add_special_tokens=False))


@pytest.mark.engine
@pytest.mark.parametrize("checkpoint", ["enriched", "enriched_gemma"])
def test_vllm_serve_streams_the_checkpoint_exactly_as_decode(checkpoint, data, tmp_path, request):
    """`vllm serve OUT` loads the folder with no extra flags (here with TASC-spec on, its
    index tokenized with the grown vocabulary).  Restricted to the new tokens plus a few
    ordinary ones, the model must emit added tokens; the streamed text must equal
    ``tokenizer.decode`` of the streamed ids and the non-streamed answer.  Both families:
    SmolLM2 (byte-level BPE, chat template) and Gemma-3 (SentencePiece pieces with byte
    fallback, plain prompt format)."""
    import httpx
    from transformers import AutoTokenizer

    from benchmarks.serve_load import serve
    from tasc_vllm.index.index_file import write_index

    enriched = request.getfixturevalue(checkpoint)
    tok = AutoTokenizer.from_pretrained(enriched)
    summary = json.loads((enriched / "tasc_ft.json").read_text())
    new_ids = set(tok.convert_tokens_to_ids(summary["tokens_added"]))
    # as many base tokens as new ones, so that a hot sample over both mixes them
    base_ids = tok.encode("12 Main Street, Springfield, IL 62704; 9 Oak Avenue Apt 3B Chicago",
                          add_special_tokens=False)
    ordinary = [i for i in dict.fromkeys(base_ids) if i not in new_ids][:max(4, len(new_ids))]
    outputs = [json.loads(line)["output"] for line in data["train"].read_text().splitlines()]
    index = write_index(outputs, tmp_path / "train.tasc")
    base = {"model": str(enriched), "max_tokens": 40, "return_token_ids": True,
            "messages": [{"role": "user", "content": "123 Main St Chicago IL 60601"}]}
    bodies = [  # greedy over the new tokens only; sampled hot (twelve seeds) over new and ordinary tokens
        dict(base, temperature=0.0, allowed_token_ids=sorted(new_ids)),
        *(dict(base, temperature=2.0, seed=seed, allowed_token_ids=sorted(new_ids | set(ordinary)))
          for seed in range(1, 13)),
    ]
    got = []
    with serve(str(enriched), index, tmp_path, max_model_len=512, max_num_seqs=2) as srv:
        url = f"{srv['base']}/v1/chat/completions"
        for body in bodies:
            answer = httpx.post(url, json=body, timeout=300)
            assert answer.status_code == 200, answer.text
            whole = answer.json()["choices"][0]["message"]["content"]
            text, ids = "", []
            with httpx.stream("POST", url, json=dict(body, stream=True), timeout=300) as resp:
                resp.raise_for_status()
                for line in resp.iter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    for choice in json.loads(line[6:]).get("choices", []):
                        text += choice.get("delta", {}).get("content") or ""
                        ids += choice.get("token_ids") or []
            got.append((text, ids, whole))
        log = srv["log"].read_text(errors="replace")
    for text, ids, _ in got:
        assert ids and text == tok.decode(ids, skip_special_tokens=True)
    assert new_ids & set(got[0][1])  # greedy over the new tokens emits them
    assert got[0][0] == got[0][2]  # greedy: streamed and whole answers agree (samples need not)
    # a sample may pick one kind alone (about half did here); among twelve, some mix both
    assert any(new_ids & set(ids) and set(ids) - new_ids for _, ids, _ in got[1:])
    assert "TASC index" in log


def test_rounds_stop_when_the_saving_falls_under_min_saving(data, tmp_path):
    out = tmp_path / "stops"
    assert main(["--data", str(data["train"]), "--out", str(out), *TINY, "--rounds", "3", "--min-saving", "0.9"]) == 0
    summary = json.loads((out / "tasc_ft.json").read_text())
    assert summary["rounds_done"] == 1 and summary["total_steps"] == 2
    stop = summary["rounds"][-1]
    assert stop["round"] == 2 and "under --min-saving" in stop["stopped"] and "losses" not in stop
    # the stopping round's picks are not in the checkpoint or its figures
    assert summary["output_tokens_final"] == pytest.approx(summary["rounds"][0]["tokens_after"])
    assert len(summary["tokens_added"]) == len(summary["rounds"][0]["added"])
