"""GGUF export through llama.cpp's own tools, and reading a GGUF's tokenizer facts back.

ftwizard never reimplements the conversion: it runs llama.cpp's `convert_hf_to_gguf.py` (f32, f16,
bf16, q8_0 and the ternary types come straight from it) and, for k-quants and the other quantizations,
the compiled `llama-quantize` on the f16 file. Where the tools are looked for, in order:

1. `LLAMA_CPP_DIR`: a llama.cpp checkout (convert_hf_to_gguf.py at its top, gguf-py/ beside it;
   llama-quantize in the directory, in build/bin/ or on PATH).
2. PATH: a `convert_hf_to_gguf.py` (or `convert-hf-to-gguf`) and `llama-quantize` installed there.
3. An installed llama-cpp-python that ships its vendored llama.cpp sources.
4. The cache `$FTWIZARD_CACHE/llama.cpp` (default ~/.cache/ftwizard/llama.cpp), which
   `ftwizard export --get-converter` fills from llama-cpp-python's source distribution on PyPI (pip
   download, ~77 MB, about 35 s; only the converter's Python files are kept, ~2 MB).

The converter's Python needs numpy, torch, transformers and sentencepiece (the `export` extra).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError

# Types convert_hf_to_gguf.py writes itself; anything else goes through llama-quantize from f16.
CONVERTER_TYPES = ("f32", "f16", "bf16", "q8_0", "tq1_0", "tq2_0")
QUANTIZE_TYPES = ("q4_0", "q4_1", "q5_0", "q5_1", "q2_k", "q3_k_s", "q3_k_m", "q3_k_l", "q4_k_s", "q4_k_m",
                  "q5_k_s", "q5_k_m", "q6_k", "iq4_nl", "iq4_xs")
GGUF_TYPES = CONVERTER_TYPES + QUANTIZE_TYPES

# The llama-cpp-python release whose vendored llama.cpp `--get-converter` fetches (tested here).
LLAMA_CPP_PYTHON = "llama-cpp-python==0.3.36"
HOW_TO_GET = (
    "llama.cpp's converter was not found. Get it with `ftwizard export --get-converter` (downloads the "
    "llama-cpp-python source from PyPI, ~77 MB, keeps ~2 MB in ~/.cache/ftwizard/llama.cpp), or point "
    "LLAMA_CPP_DIR at a llama.cpp checkout, or put convert_hf_to_gguf.py on PATH")
HOW_TO_QUANTIZE = (
    "needs llama.cpp's compiled llama-quantize (k-quants are not made by the Python converter): build "
    "llama.cpp (cmake -B build && cmake --build build --target llama-quantize) and set LLAMA_CPP_DIR to "
    "the checkout or put llama-quantize on PATH; or export --gguf q8_0 / f16, which need no build")


@dataclass
class Converter:
    script: Path  # convert_hf_to_gguf.py
    pythonpath: list[Path]  # gguf-py (and the script's directory, for its `conversion` package)
    quantize: Path | None  # llama-quantize, when found
    where: str  # how it was found, for messages

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        parts = [str(p) for p in self.pythonpath] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
        env["PYTHONPATH"] = os.pathsep.join(parts)
        env["HF_HUB_OFFLINE"] = "1"  # the converter must never fetch a tokenizer or config
        return env


def cache_dir() -> Path:
    return Path(os.environ.get("FTWIZARD_CACHE") or Path.home() / ".cache" / "ftwizard") / "llama.cpp"


def _from_tree(root: Path, where: str) -> Converter | None:
    for name in ("convert_hf_to_gguf.py", "convert-hf-to-gguf.py"):
        script = root / name
        if script.is_file():
            break
    else:
        return None
    pp = [p for p in (root / "gguf-py", root) if p.is_dir()]
    quantize = None
    for cand in (root / "llama-quantize", root / "build" / "bin" / "llama-quantize", root / "bin" / "llama-quantize"):
        if cand.is_file() and os.access(cand, os.X_OK):
            quantize = cand
            break
    if quantize is None and shutil.which("llama-quantize"):
        quantize = Path(shutil.which("llama-quantize"))
    return Converter(script, pp, quantize, where)


def find_converter() -> Converter | None:
    """llama.cpp's converter (and quantizer), looked for as the module docstring says; None if absent."""
    env_dir = os.environ.get("LLAMA_CPP_DIR")
    if env_dir:
        conv = _from_tree(Path(env_dir).expanduser(), f"LLAMA_CPP_DIR={env_dir}")
        if conv is None:
            raise UserError("no convert_hf_to_gguf.py in this directory", file=env_dir, field="LLAMA_CPP_DIR")
        return conv
    for name in ("convert_hf_to_gguf.py", "convert-hf-to-gguf.py", "convert_hf_to_gguf"):
        found = shutil.which(name)
        if found:
            script = Path(found).resolve()
            conv = _from_tree(script.parent, f"PATH ({script})") if script.suffix == ".py" else None
            if conv is None:
                q = shutil.which("llama-quantize")
                conv = Converter(script, [], Path(q) if q else None, f"PATH ({script})")
            return conv
    spec = importlib.util.find_spec("llama_cpp")
    if spec and spec.submodule_search_locations:
        pkg = Path(list(spec.submodule_search_locations)[0])
        for root in (pkg / "vendor" / "llama.cpp", pkg.parent / "vendor" / "llama.cpp"):
            conv = _from_tree(root, f"llama-cpp-python ({root})")
            if conv:
                return conv
    conv = _from_tree(cache_dir(), f"cache ({cache_dir()})")
    return conv


def require_converter(gguf_type: str) -> Converter:
    """The converter for `gguf_type`, or a UserError saying how to get what is missing."""
    if gguf_type not in GGUF_TYPES:
        raise UserError(f"unknown GGUF type '{gguf_type}' (one of: {', '.join(GGUF_TYPES)})", field="--gguf")
    conv = find_converter()
    if conv is None:
        raise UserError(HOW_TO_GET, field="--gguf")
    if gguf_type not in CONVERTER_TYPES and conv.quantize is None:
        raise UserError(f"{gguf_type} {HOW_TO_QUANTIZE}", field="--gguf")
    return conv


def get_converter(dest: Path | None = None, *, sdist: Path | None = None, echo=print) -> Path:
    """Fill `dest` (default: the cache) with the converter from llama-cpp-python's sdist: pip download
    (or a given sdist file), then keep convert_hf_to_gguf.py, its `conversion` package, gguf-py/ and
    the licence. Written into a temp dir and renamed: never half there."""
    dest = Path(dest) if dest else cache_dir()
    if _from_tree(dest, "") is not None:
        echo(f"converter already in {dest}")
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ftwizard-llamacpp-", dir=dest.parent) as tmp:
        tmp = Path(tmp)
        if sdist is None:
            echo(f"downloading the {LLAMA_CPP_PYTHON} source from PyPI (~77 MB) ...")
            cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", "llama-cpp-python",
                   LLAMA_CPP_PYTHON, "-d", str(tmp / "dl")]
            r = subprocess.run(cmd, capture_output=True, text=True)
            found = sorted((tmp / "dl").glob("llama_cpp_python-*.tar.gz")) if (tmp / "dl").is_dir() else []
            if not found:
                tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["no file"]
                raise UserError(f"pip download {LLAMA_CPP_PYTHON} failed: {tail[0][:300]}", field="--get-converter")
            sdist = found[0]
        keep = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/", "LICENSE")
        staged = tmp / "llama.cpp"
        with tarfile.open(sdist) as tar:
            for member in tar.getmembers():
                parts = member.name.split("/")
                if len(parts) < 4 or parts[1:3] != ["vendor", "llama.cpp"]:
                    continue
                rel = "/".join(parts[3:])
                if not rel or not any(rel == k or rel.startswith(k) for k in keep):
                    continue
                if not (member.isfile() or member.isdir()):
                    continue
                tar.extract(member.replace(name=rel), staged, filter="data")
        if not (staged / "convert_hf_to_gguf.py").is_file():
            raise UserError("this sdist holds no vendor/llama.cpp/convert_hf_to_gguf.py", file=str(sdist))
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(staged, dest)
    echo(f"converter ready in {dest}")
    return dest


def convert(conv: Converter, model_dir: Path, out_file: Path, outtype: str, log) -> None:
    """Run convert_hf_to_gguf.py on a merged model directory. Raises UserError with its last line."""
    cmd = [sys.executable, str(conv.script), str(model_dir), "--outfile", str(out_file), "--outtype", outtype]
    _run(cmd, conv.env(), log, "convert_hf_to_gguf.py")


def quantize(conv: Converter, src: Path, dest: Path, qtype: str, log) -> None:
    cmd = [str(conv.quantize), str(src), str(dest), qtype.upper()]
    _run(cmd, dict(os.environ), log, "llama-quantize")


def _run(cmd: list[str], env: dict, log, name: str) -> None:
    with open(log, "a", encoding="utf-8") as fh:
        fh.write("$ " + " ".join(cmd) + "\n")
        fh.flush()
        r = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
    if r.returncode != 0:
        lines = [ln for ln in Path(log).read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
        last = lines[-1].strip()[:300] if lines else ""
        hint = ""
        if "pre-tokenizer was not recognized" in last:
            hint = (" (llama.cpp only converts byte-level BPE tokenizers it knows by hash: those of released "
                    "models; a tokenizer trained from scratch is refused)")
        raise UserError(f"{name} failed (exit {r.returncode}): {last}{hint}; nothing was written", field="--gguf")


@dataclass
class GGUFFacts:
    chat_template: str | None
    bos_id: int | None
    eos_id: int | None
    eot_id: int | None
    add_bos: bool | None
    tokens: list[str]
    architecture: str | None
    file_type: int | None


def read_facts(path: Path) -> GGUFFacts:
    """The tokenizer facts a runtime (llama.cpp, Ollama) takes from a GGUF's metadata."""
    from gguf import GGUFReader

    r = GGUFReader(str(path))

    def val(key):
        f = r.get_field(key)
        return None if f is None else f.contents()

    return GGUFFacts(chat_template=val("tokenizer.chat_template"), bos_id=val("tokenizer.ggml.bos_token_id"),
                     eos_id=val("tokenizer.ggml.eos_token_id"), eot_id=val("tokenizer.ggml.eot_token_id"),
                     add_bos=val("tokenizer.ggml.add_bos_token"), tokens=val("tokenizer.ggml.tokens") or [],
                     architecture=val("general.architecture"), file_type=val("general.file_type"))
