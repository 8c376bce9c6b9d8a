"""The fine-tune cache: built on first use, reused only when complete and made the same way."""

import json
import sys

import pytest

from tasc_vllm.errors import TascError
from tasc_vllm.eval import finetunes
from tasc_vllm.eval.finetunes import FILES, finetune
from tools.ft_data import file_sha256


@pytest.fixture
def fake_enrich(isolated_cache, monkeypatch):
    """``python -m tools.enrich`` replaced by a writer of a checkpoint's files (no training):
    records every build, and writes what its ``tasc_ft.json`` would say."""
    builds = []

    def build(cmd):
        assert cmd[:3] == [sys.executable, "-m", "tools.enrich"]
        args = dict(zip(cmd[3::2], cmd[4::2]))
        out = finetunes.Path(args["--out"])
        out.mkdir()
        for name in FILES:
            (out / name).write_text("{}")
        settings = {"model": args["--model"], "data_sha256": file_sha256(args["--data"]),
                    "enrich": "--no-enrich" not in cmd}
        (out / "tasc_ft.json").write_text(json.dumps({"settings": settings}))
        builds.append(cmd)
        return 0

    monkeypatch.setattr(finetunes, "_build", build)
    monkeypatch.setattr("tasc_vllm.eval.models.resolve_model", lambda model, progress=True: "/models/base")
    return builds


def test_built_once_then_reused_and_keyed_by_the_settings(fake_enrich):
    flags = ["--no-enrich", "--rounds", "1", "--steps-per-round", "3"]
    first = finetune("usaddress", flags, "fine-tuned")
    assert first.name.startswith("fine-tuned-") and len(fake_enrich) == 1
    assert finetune("usaddress", flags, "fine-tuned") == first and len(fake_enrich) == 1  # cached
    other = finetune("usaddress", flags[:-1] + ["4"], "fine-tuned")  # other settings: another entry
    assert other != first and len(fake_enrich) == 2
    checked = finetune("usaddress", ["--check-test", *flags], "fine-tuned")
    assert checked not in (first, other) and "--check-data" in fake_enrich[-1]
    assert "--check-test" not in fake_enrich[-1]


@pytest.mark.parametrize("damage, reason", [
    (lambda out: (out / "model.safetensors").unlink(), "incomplete (no model.safetensors)"),
    (lambda out: (out / "tasc_ft.json").write_text("not json"), "tasc_ft.json is unreadable"),
    (lambda out: (out / "tasc_ft.json").write_text(json.dumps({"settings": {
        "model": "/models/base", "data_sha256": "0" * 64, "enrich": False}})), "built from other train data"),
    (lambda out: (out / "tasc_ft.json").write_text(json.dumps({"settings": {
        "model": "/models/other", "data_sha256": json.loads((out / "tasc_ft.json").read_text())["settings"]["data_sha256"],
        "enrich": False}})), "built from another model or with other settings"),
])
def test_an_incomplete_or_foreign_entry_is_rebuilt_never_used(fake_enrich, capsys, damage, reason):
    flags = ["--no-enrich", "--rounds", "1"]
    out = finetune("usaddress", flags, "fine-tuned")
    damage(out)
    assert finetune("usaddress", flags, "fine-tuned") == out
    assert len(fake_enrich) == 2
    assert reason in capsys.readouterr().err
    assert all((out / f).is_file() for f in FILES)


def test_a_failed_build_and_a_task_without_train_data_are_errors(fake_enrich, monkeypatch):
    monkeypatch.setattr(finetunes, "_build", lambda cmd: 1)
    with pytest.raises(TascError, match="building the fine-tune .* failed .* run the same command again"):
        finetune("usaddress", ["--no-enrich"], "fine-tuned")
    monkeypatch.setattr("tasc_vllm.eval.tasks.export_jsonl", lambda task, split, path: 0)
    with pytest.raises(TascError, match="task usaddress has an empty train split"):
        finetune("usaddress", ["--no-enrich"], "fine-tuned")
    with pytest.raises(TascError, match="unknown task"):
        finetune("no-such-task", ["--no-enrich"], "fine-tuned")


def test_the_tool_runs_with_tcmalloc_first_in_ld_preload_when_the_system_has_it():
    iomp = "/venv/lib/libiomp5.so"
    env = finetunes.build_env({"LD_PRELOAD": iomp, "HOME": "/root"}, "libtcmalloc_minimal.so.4")
    assert env["LD_PRELOAD"] == f"libtcmalloc_minimal.so.4 {iomp}" and env["HOME"] == "/root"
    assert finetunes.build_env(env, "libtcmalloc_minimal.so.4")["LD_PRELOAD"] == env["LD_PRELOAD"]  # not twice
    assert finetunes.build_env({}, "libtcmalloc_minimal.so.4")["LD_PRELOAD"] == "libtcmalloc_minimal.so.4"
    assert finetunes.build_env({"LD_PRELOAD": iomp}, None) == {"LD_PRELOAD": iomp}  # none on the system
    assert "LD_PRELOAD" not in finetunes.build_env({}, None)
