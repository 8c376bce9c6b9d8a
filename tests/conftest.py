import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def default_model_dir():
    from tasc_vllm.eval.models import materialize

    return materialize(progress=False)


@pytest.fixture(scope="session")
def tokenizer(default_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(default_model_dir)


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch):
    """A fresh TASC cache folder for tests that must not see the user's cache."""
    monkeypatch.setenv("TASC_VLLM_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"
