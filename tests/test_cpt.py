"""Continued pretraining (training: cpt): the block builder, the corpus cache, the refusals, and real
CPT runs on the tiny model (LoRA and full, the peer-demo c4 file as it is)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from ftwizard.core.data.corpus import build_blocks, first_block, pack
from ftwizard.core.data.formats import detect_source
from ftwizard.core.errors import UserError
from ftwizard.core.events import read_events
from ftwizard.core.launch import create_run, start

C4 = Path("/work/shared/datasets/peer-demo/c4_demo.jsonl")
EOS = 99


def test_pack_cuts_concatenated_documents_into_blocks_with_eos_at_each_join():
    docs = [[1, 2, EOS], [3, 4, 5, 6, EOS], [7, EOS]]
    stats: dict = {}
    blocks = list(pack(iter(docs), 4, stats))
    assert [b.input_ids for b in blocks] == [[1, 2, EOS, 3], [4, 5, 6, EOS]]
    assert blocks[0].doc_starts == [0, 3]  # document 2 starts right after the first EOS
    assert blocks[1].doc_starts == []  # the rest of document 2: no document starts in this block
    assert stats["tail"] == 2  # [7, EOS] is shorter than a block: dropped and counted


def test_pack_runs_a_long_document_over_several_blocks():
    blocks = list(pack(iter([list(range(10)) + [EOS], [20, EOS]]), 4))
    assert [b.input_ids for b in blocks] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, EOS, 20]]
    assert blocks[2].doc_starts == [3]


def _tok(tiny_work):
    from ftwizard.core.data.tokenize import load_tokenizer

    return load_tokenizer(str(tiny_work / "tiny-model"))


def _corpus(path: Path, n: int = 40) -> Path:
    with path.open("w") as fh:
        for i in range(n):
            fh.write(json.dumps({"text": f"document {i}: " + " ".join(f"word{i * 7 + j}" for j in range(5 + i % 9))})
                     + "\n")
    return path


def test_blocks_are_the_documents_concatenated_with_eos_in_file_order(tiny_work, tmp_path):
    tok = _tok(tiny_work)
    src = _corpus(tmp_path / "c.jsonl")
    det, _, _ = detect_source(str(src))
    ds, facts = build_blocks(str(src), tok, 32, det=det)
    texts = [json.loads(line)["text"] for line in src.read_text().splitlines()]
    stream = [t for x in tok(texts)["input_ids"] for t in x + [tok.eos_token_id]]
    got = [t for row in ds["input_ids"] for t in row]
    assert all(len(row) == 32 for row in ds["input_ids"])
    assert got == stream[:len(got)] and len(stream) - len(got) == facts["dropped_tail_tokens"] < 32
    assert facts["documents"] == 40 and facts["blocks"] == len(ds) and facts["cache"] == "miss"
    # the first block of the preview is the first block trained, read from the first documents only
    b = first_block(str(src), tok, 32)
    assert b.input_ids == ds["input_ids"][0]
    assert all(b.input_ids[s - 1] == tok.eos_token_id for s in b.doc_starts if s > 0)
    _, again = build_blocks(str(src), tok, 32, det=det)
    assert again["cache"] == "hit" and again["blocks"] == facts["blocks"]


def test_corpus_shorter_than_one_block_is_refused(tiny_work, tmp_path):
    tok = _tok(tiny_work)
    src = _corpus(tmp_path / "c.jsonl", n=2)
    det, _, _ = detect_source(str(src))
    with pytest.raises(UserError, match="fewer than one block"):
        build_blocks(str(src), tok, 4096, det=det)


def test_cpt_on_a_chat_dataset_is_one_line_and_creates_no_run(tiny_config, tmp_path):
    cfg = tiny_config(steps=2)
    cfg.training = "cpt"
    with pytest.raises(UserError, match="training: cpt needs raw text"):
        create_run(cfg)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_inspect_kind_cpt_shows_the_first_block_and_its_joins(tiny_work, tmp_path):
    src = _corpus(tmp_path / "c.jsonl")
    r = subprocess.run([sys.executable, "-m", "ftwizard.core.cli", "inspect", str(src), "--kind", "cpt",
                        "--model", str(tiny_work / "tiny-model"), "--max-length", "32", "--json"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    block = json.loads(r.stdout)["block"]
    assert block["n_tokens"] == 32 and block["documents_joined"] >= 1
    assert len(block["pieces"]) == block["documents_joined"] + 1
    assert block["pieces"][0].startswith("document 0") or "document 0" in block["pieces"][0]


def _cpt_run(tiny_config, data: Path, method: str, steps: int, wait_run, validation=0.1, **train):
    cfg = tiny_config(steps=steps, method=method, **train)
    cfg.training = "cpt"
    cfg.dataset.path = str(data)
    cfg.dataset.validation = validation
    run_dir = create_run(cfg)
    start(run_dir)
    info = wait_run(run_dir, 300)
    assert info.state == "completed", (info.reason, (run_dir / "train.log").read_text()[-2000:])
    return run_dir


def _train_events(run_dir):
    return [e for e in read_events(run_dir) if e["type"] == "train"]


@pytest.mark.slow
def test_cpt_lora_run_logs_loss_and_perplexity_and_saves_an_adapter(tiny_config, tmp_path, wait_run):
    run_dir = _cpt_run(tiny_config, _corpus(tmp_path / "c.jsonl", n=200), "lora", 6, wait_run, max_length=64)
    train = _train_events(run_dir)
    assert [e["step"] for e in train] == list(range(1, 7))
    for e in train:
        assert e["perplexity"] == pytest.approx(math.exp(e["loss"]), rel=1e-6)
    assert (run_dir / "output" / "adapter_model.safetensors").exists()
    infos = {e["key"]: e["value"] for e in read_events(run_dir) if e["type"] == "info"}
    assert infos["packed"]["block_length"] == 64 and infos["packed"]["documents"] == 200
    assert infos["chat_template"]["why"] == "none: raw text"
    evals = [e for e in read_events(run_dir) if e["type"] == "eval"]
    assert evals and evals[-1]["eval_perplexity"] == pytest.approx(math.exp(evals[-1]["eval_loss"]), rel=1e-6)


@pytest.mark.slow
def test_cpt_full_run_logs_perplexity_and_saves_the_model(tiny_config, tmp_path, wait_run):
    run_dir = _cpt_run(tiny_config, _corpus(tmp_path / "c.jsonl", n=200), "full", 4, wait_run, max_length=64)
    train = _train_events(run_dir)
    assert len(train) == 4 and all(e["perplexity"] == pytest.approx(math.exp(e["loss"]), rel=1e-6) for e in train)
    assert (run_dir / "output" / "model.safetensors").exists()
    assert not (run_dir / "output" / "adapter_model.safetensors").exists()


@pytest.mark.slow
@pytest.mark.skipif(not C4.exists(), reason="peer-demo data not present")
def test_peer_demo_c4_file_trains_as_cpt_as_it_is(tiny_config, wait_run):
    run_dir = _cpt_run(tiny_config, C4, "lora", 3, wait_run, validation=0)  # 3642 blocks: no eval pass
    train = _train_events(run_dir)
    assert len(train) == 3 and all(math.isfinite(e["perplexity"]) for e in train)
    infos = {e["key"]: e["value"] for e in read_events(run_dir) if e["type"] == "info"}
    assert infos["packed"]["documents"] == 296 and infos["packed"]["blocks"] > 0


@pytest.mark.slow
def test_cpt_run_reads_a_few_blocks_not_the_corpus_before_its_first_step(tiny_config, tmp_path, monkeypatch):
    """The set-up between packing and step 1 (longest-first sampler, step count, TRL) reads no block:
    every row the datasets library hands out passes through `format_table`, counted here (the real
    function, wrapped); a 1-step run reads a few rows (a first-row peek, its batch and the next one
    fetched ahead: 5 as measured), not the 1,300 blocks of the corpus. Before the fix the sampler read
    every row for its lengths (1,312 here): 3.4 GiB of RSS on a 1 GB corpus."""
    import signal

    import datasets.arrow_dataset as ad

    from ftwizard.core import trainer

    rows_read = []
    real = ad.format_table

    def counting(table, *a, **kw):
        if "input_ids" in table.column_names:
            rows_read.append(table.num_rows)
        return real(table, *a, **kw)

    monkeypatch.setattr(ad, "format_table", counting)
    monkeypatch.setattr(signal, "signal", lambda *a: None)  # in-process: leave pytest's handlers alone
    cfg = tiny_config(steps=1, batch_size=2, max_length=16)
    cfg.training = "cpt"
    cfg.dataset.path = str(_corpus(tmp_path / "c.jsonl", n=300))
    cfg.dataset.validation = 0
    run_dir = create_run(cfg)
    assert cfg.train.longest_first  # the default: the sampler that used to read every row
    assert trainer.main([str(run_dir)]) == 0, (run_dir / "train.log").read_text()[-2000:]
    packed = next(e["value"] for e in read_events(run_dir) if e["type"] == "info" and e.get("key") == "packed")
    assert packed["blocks"] >= 1000
    assert sum(rows_read) <= 1 + 2 * cfg.train.batch_size, rows_read
    assert len(_train_events(run_dir)) == 1
