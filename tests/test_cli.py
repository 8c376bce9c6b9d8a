"""The tasc-vllm command: what users type, and the errors they see."""

import json

from tasc_vllm.cli import main
from tasc_vllm.index.index_file import read_index


def test_build_index_from_jsonl_and_txt(tmp_path, capsys):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("\n".join(json.dumps({"output": f'{{"n": {i}}}', "answer": str(i)}) for i in range(5)) + "\n")
    assert main(["build-index", str(corpus), "-o", str(tmp_path / "c.tasc")]) == 0
    assert "5 texts" in capsys.readouterr().out
    assert read_index(tmp_path / "c.tasc").texts()[0] == '{"n": 0}'
    assert main(["build-index", str(corpus), "-o", str(tmp_path / "a.tasc"), "--field", "answer"]) == 0
    assert read_index(tmp_path / "a.tasc").texts() == ["0", "1", "2", "3", "4"]
    txt = tmp_path / "c.txt"
    txt.write_text("a\nb\n")
    assert main(["build-index", str(txt), "-o", str(tmp_path / "t.tasc")]) == 0
    assert read_index(tmp_path / "t.tasc").header["num_texts"] == 2


def test_build_index_tokenizes_for_a_model(tmp_path, capsys, isolated_cache, default_model_dir):
    corpus = tmp_path / "c.txt"
    corpus.write_text('{"a": 1}\n{"a": 2}\n')
    assert main(["build-index", str(corpus), "-o", str(tmp_path / "c.tasc"), "--model", str(default_model_dir)]) == 0
    out = capsys.readouterr().out
    assert "tokenized for" in out and "cached at" in out


def test_errors_are_one_clear_line_and_exit_2(tmp_path, capsys):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"text": "x"}\n')
    assert main(["build-index", str(corpus), "-o", str(tmp_path / "c.tasc")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tasc-vllm: error:") and "'output' is missing" in err and "--field" in err
    assert not (tmp_path / "c.tasc").exists()
    assert main(["build-index", str(tmp_path / "none.jsonl"), "-o", str(tmp_path / "x.tasc")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["model", "no-such-model"]) == 2
    assert "smollm2-135m-instruct" in capsys.readouterr().err
    assert main(["task", "export", "no-such-task", "-o", str(tmp_path / "t.jsonl")]) == 2
    assert "usaddress" in capsys.readouterr().err


def test_task_export_feeds_build_index(tmp_path, capsys):
    out = tmp_path / "bfcl.jsonl"
    assert main(["task", "export", "bfcl", "--split", "test", "-o", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert len(lines) > 100 and all({"id", "prompt", "messages", "output"} <= set(json.loads(l)) for l in lines)
    assert main(["build-index", str(out), "-o", str(tmp_path / "bfcl.tasc")]) == 0
    assert read_index(tmp_path / "bfcl.tasc").header["num_texts"] == len(lines)
