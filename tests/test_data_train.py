"""Real SFT runs on the tiny model, one per dataset format (fixture files) and one per real-world file in
../shared/datasets/peer-demo, with no hand-written mapping; plus the refusals that must happen before
training starts. All runs of a module start together (detached, as `ftwizard train` starts them) and
are awaited together, so the module costs about one run's import time per CPU core, not one per run."""

from __future__ import annotations

import json
import os

import pytest

from ftwizard.core.events import read_events

PEER = {  # file -> (format, variant, SFT rows used, rows skipped)
    "alpaca_en_demo.json": ("alpaca", "", 998, 0),
    "identity.json": ("alpaca", "", 91, 0),
    "glaive_toolcall_en_demo.json": ("sharegpt", "with tool calls", 300, 0),
    "dpo_en_demo.json": ("preference", "sharegpt-style", 296, 0),
    "kto_en_demo.json": ("kto", "messages", 149, 149),
    "c4_demo.jsonl": ("text", "", 296, 0),
}

MSGS = [{"role": "user", "content": "What is two plus two?"}, {"role": "assistant", "content": "two plus two equals four."}]


def fixture_files(d):
    """One small file per format not covered by the peer files, in several source kinds."""
    import csv

    import pyarrow as pa
    import pyarrow.parquet as pq

    d.mkdir(parents=True, exist_ok=True)
    files = {}
    p = d / "messages.csv"  # OpenAI messages with a system turn, stored as JSON in a CSV cell
    with open(p, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["messages"])
        for i in range(24):
            w.writerow([json.dumps([{"role": "system", "content": "Answer in words."}] + MSGS)])
    files["messages"] = p
    p = d / "pc.parquet"
    pq.write_table(pa.Table.from_pylist([{"prompt": f"What is {i} plus one? ", "completion": "It is more."}
                                         for i in range(24)]), str(p))
    files["prompt-completion"] = p
    p = d / "pc_conv.jsonl"
    p.write_text("".join(json.dumps({"prompt": MSGS[:1], "completion": MSGS[1:]}) + "\n" for _ in range(24)))
    files["prompt-completion-conversational"] = p
    p = d / "pref.json"
    p.write_text(json.dumps([{"prompt": "two plus two is", "chosen": " four", "rejected": " five"}] * 24))
    files["preference"] = p
    p = d / "kto.jsonl"
    p.write_text("".join(json.dumps({"prompt": "two plus two is", "completion": " four" if i % 2 else " five",
                                     "label": bool(i % 2)}) + "\n" for i in range(24)))
    files["kto"] = p
    p = d / "alpaca.json"
    p.write_text(json.dumps([{"instruction": "What is two plus two?", "input": "", "output": "four"}] * 24, indent=1))
    files["alpaca"] = p
    p = d / "sharegpt.jsonl"
    conv = {"conversations": [{"from": "human", "value": "Add two and two."},
                              {"from": "function_call", "value": '{"name": "add", "arguments": {"a": 2, "b": 2}}'},
                              {"from": "observation", "value": '{"result": 4}'}, {"from": "gpt", "value": "four"}],
            "tools": '[{"name": "add", "description": "add two numbers"}]'}
    p.write_text("".join(json.dumps(conv) + "\n" for _ in range(24)))
    files["sharegpt"] = p
    p = d / "text.jsonl"
    p.write_text("".join(json.dumps({"text": f"the model learns line {i}"}) + "\n" for i in range(24)))
    files["text"] = p
    return files


PEER_COVERS = {"alpaca", "sharegpt", "text"}  # trained from the real peer-demo files when present


def peer_present() -> bool:
    """FTWIZARD_TEST_NO_PEER=1 runs this module as on a machine without ../shared (fixture files only)."""
    from shared_paths import PEER_DEMO

    return PEER_DEMO.is_dir() and not os.environ.get("FTWIZARD_TEST_NO_PEER")


def _config(tiny_work, runs_dir, path, **over):
    from ftwizard.core.selftest import make_tiny_setup

    cfg = make_tiny_setup(tiny_work, steps=3, batch_size=2, max_length=128, eval_steps=None)
    cfg.runs_dir = str(runs_dir)
    cfg.dataset.path = str(path)
    cfg.dataset.validation = 0.0
    for k, v in over.items():
        section, key = k.split("__")
        setattr(getattr(cfg, section), key, v)
    return cfg


def _start_all(configs):
    from ftwizard.core.launch import create_run, start
    from ftwizard.core.selftest import wait_for_end

    dirs = {}
    for name, cfg in configs.items():
        dirs[name] = create_run(cfg)
        start(dirs[name])
    return {name: (d, wait_for_end(d, timeout=600)) for name, d in dirs.items()}


def _summary(run_dir):
    events = read_events(run_dir)
    info = {e["key"]: e["value"] for e in events if e["type"] == "info"}
    return events, info, [e for e in events if e["type"] == "train"]


@pytest.fixture(scope="module")
def runs(tiny_work, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("data-train")
    files = fixture_files(tmp / "data")
    skip = PEER_COVERS if peer_present() else set()
    configs = {name: _config(tiny_work, tmp / "runs", p) for name, p in files.items() if name not in skip}
    if "sharegpt" in configs:  # the tool list in the system turn alone is ~250 tiny-tokenizer tokens
        configs["sharegpt"].train.max_length = 512
    return _start_all(configs)


@pytest.fixture(scope="module")
def peer_runs(tiny_work, tmp_path_factory):
    from shared_paths import PEER_DEMO

    if not peer_present():
        pytest.skip("../shared/datasets/peer-demo is not present")
    tmp = tmp_path_factory.mktemp("peer-train")
    return _start_all({f: _config(tiny_work, tmp / "runs", PEER_DEMO / f) for f in PEER})


@pytest.mark.slow
@pytest.mark.parametrize("name,fmt", [("messages", "messages"), ("prompt-completion", "prompt-completion"),
                                      ("prompt-completion-conversational", "prompt-completion"),
                                      ("preference", "preference"), ("kto", "kto"), ("alpaca", "alpaca"),
                                      ("sharegpt", "sharegpt"), ("text", "text")])
def test_sft_run_per_format(runs, name, fmt):
    if name not in runs:
        pytest.skip(f"{fmt} is trained from the real peer-demo file (test_peer_file_trains)")
    run_dir, info_ = runs[name]
    assert info_.state == "completed", (info_.reason, (run_dir / "train.log").read_text()[-2000:])
    events, info, train = _summary(run_dir)
    assert info["dataset"]["format"] == fmt
    assert [e["step"] for e in train] == [1, 2, 3] and all(e["loss"] > 0 for e in train)
    assert info["tokenized"]["dropped_no_trained_tokens"] == 0
    if fmt == "kto":
        assert (info["dataset"]["used_rows"], info["dataset"]["skipped_rows"]) == (12, 12)
    if fmt in ("preference", "kto"):
        assert any(e["type"] == "warning" and e["code"] == f"dataset-{fmt}-as-sft" for e in events)
    assert (run_dir / "output" / "adapter_config.json").exists()


def test_all_masked_dataset_is_refused_before_a_run_exists(tiny_work, tmp_path):
    """Every answer cut off by max_length (the masking failure): the pre-flight refuses (issue 12)."""
    from ftwizard.core.errors import UserError
    from ftwizard.core.launch import create_run

    long_sys = [{"role": "system", "content": "you answer in words and are very helpful " * 6}] + MSGS
    masked = tmp_path / "masked.jsonl"
    masked.write_text("".join(json.dumps({"messages": long_sys}) + "\n" for _ in range(24)))
    with pytest.raises(UserError) as e:
        create_run(_config(tiny_work, tmp_path / "runs", masked, train__max_length=32))
    assert "every row would train on 0 tokens" in str(e.value) and "train.max_length" in str(e.value)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_template_without_markers_is_refused_before_tokenizing(tiny_work, tmp_path):
    """The training process's data step (called in-process here: same function, real tokenizer)."""
    from ftwizard.core.data.prepare import prepare_training_data
    from ftwizard.core.data.tokenize import load_tokenizer
    from ftwizard.core.errors import UserError

    files = fixture_files(tmp_path)
    plain = "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '<|im_end|>' }}{% endfor %}"
    cfg = _config(tiny_work, tmp_path / "runs", files["messages"], model__chat_template=plain)
    tok = load_tokenizer(str(tiny_work / "tiny-model"))
    events, phases = [], []
    with pytest.raises(UserError) as e:
        prepare_training_data(cfg, tok, plain, lambda t, **kw: events.append((t, kw)), lambda *a: phases.append(a))
    assert "no {% generation %} markers" in str(e.value) and "model.chat_template: chatml" in str(e.value)
    assert phases == []  # refused before tokenizing
    cfg.dataset.assistant_only_loss = False  # the same template trains on every token
    train, _, facts = prepare_training_data(cfg, tok, plain, lambda t, **kw: None)
    assert len(train) == 24 and facts["format"] == "messages" and min(train["trained"]) == min(train["length"])


def test_sft_data_step_keeps_no_row_list_and_trains_from_the_disk_cache(tiny_work, tmp_path, monkeypatch):
    """SFT rows are spooled to an Arrow file and tokenized into the on-disk cache: the datasets handed to
    the trainer are memory-mapped from that cache (not Python lists), hold exactly what encode_row gives
    for each row, and the spool is gone afterwards. The held-out share is the same rows as before."""
    from ftwizard.core.data.formats import detect_source
    from ftwizard.core.data.prepare import prepare_training_data, read_canonical
    from ftwizard.core.data.split import split_indices
    from ftwizard.core.data.tokenize import cache_root, encode_row, load_tokenizer, setup_tokenizer

    monkeypatch.setenv("FTWIZARD_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "distinct.jsonl"  # distinct rows, so that a row out of place shows
    path.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"what is {i} plus one?"},
                                                     {"role": "assistant", "content": f"{i + 1}, " * (i % 7 + 1)}]})
                            + "\n" for i in range(40)))
    cfg = _config(tiny_work, tmp_path / "runs", path, dataset__validation=0.25)
    tok = load_tokenizer(str(tiny_work / "tiny-model"))
    template, _ = setup_tokenizer(tok, None, True)
    train, val, facts = prepare_training_data(cfg, tok, template, lambda t, **kw: None)
    tokenized = cache_root() / "tokenized"
    for ds in (train, val):
        assert ds.cache_files and all(str(tokenized) in f["filename"] for f in ds.cache_files)
    assert not any((cache_root() / "spool").iterdir())
    det, _, _ = detect_source(str(path))
    rows, labels, _, _ = read_canonical(str(path), det)
    tr, va = split_indices(len(rows), 0.25, cfg.train.seed, labels)
    assert len(train) == len(tr) and len(val) == len(va) > 0
    for ds, ix in ((train, tr), (val, va)):
        assert ds["input_ids"] == [encode_row(rows[i], tok, template, 128, True).input_ids for i in ix]


def test_peer_files_detected_and_previewed(peer_demo, tiny_work):
    from ftwizard.core.data.preview import quick_preview, render_row
    from ftwizard.core.data.tokenize import load_tokenizer, setup_tokenizer

    tok = load_tokenizer(str(tiny_work / "tiny-model"))
    template, _ = setup_tokenizer(tok, None, True)
    for f, (fmt, variant, used, skipped) in PEER.items():
        p = quick_preview(str(peer_demo / f))
        assert (p.format, p.variant) == (fmt, variant), f
        assert p.total_rows == used + skipped and len(p.rows) == 50 and not [
            x for x in p.problems if x.severity == "error"], f
        r = render_row(p.rows[0], tok, template, 4096, True, p.detected)
        assert r.n_trained > 0 and r.ends_with_eos, f
    glaive = quick_preview(str(peer_demo / "glaive_toolcall_en_demo.json"))
    r = render_row(glaive.rows[0], tok, template, 4096, True, glaive.detected)
    trained = "".join(t for t, m in r.segments if m)
    assert "<tool_call>\n{\"name\": \"search_recipes\"" in trained  # the call is learned ...
    assert "<|im_start|>tool\n{\"recipes\"" in r.text and "{\"recipes\"" not in trained  # ... the result is not
    assert "<tools>" in r.text


@pytest.mark.slow
@pytest.mark.parametrize("f", sorted(PEER))
def test_peer_file_trains(peer_runs, f):
    fmt, variant, used, skipped = PEER[f]
    run_dir, info_ = peer_runs[f]
    assert info_.state == "completed", (info_.reason, (run_dir / "train.log").read_text()[-2000:])
    events, info, train = _summary(run_dir)
    assert (info["dataset"]["format"], info["dataset"]["variant"]) == (fmt, variant)
    assert (info["dataset"]["used_rows"], info["dataset"]["skipped_rows"]) == (used, skipped)
    assert [e["step"] for e in train] == [1, 2, 3]
