"""The preference kinds (training: dpo, orpo, simpo, kto): real runs on the tiny model, their metrics in
events.jsonl, the saved adapter or model, the LLaMA-Factory demo files as they are, and the refusals."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest

from ftwizard.core.config import RunConfig
from ftwizard.core.errors import UserError
from ftwizard.core.events import read_events
from ftwizard.core.launch import create_run
from ftwizard.core.tiny import _NUM, arith_question, chat_rows, write_jsonl

CLI = [sys.executable, "-m", "ftwizard.core.cli"]
PAIR_METRICS = ("reward_chosen", "reward_rejected", "reward_margin", "reward_accuracy")


def pair_rows(n: int = 48, conversational: bool = True, seed: int = 0) -> list[dict]:
    """Arithmetic pairs: the right sum chosen, a wrong one rejected."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        q, good = arith_question(a, b)
        wrong = (a + b + rng.randint(1, 5)) % 19
        bad = f"{_NUM[a]} plus {_NUM[b]} equals {_NUM[wrong]}."
        if conversational:
            rows.append({"prompt": [{"role": "user", "content": q}],
                         "chosen": [{"role": "assistant", "content": good}],
                         "rejected": [{"role": "assistant", "content": bad}]})
        else:
            rows.append({"prompt": q, "chosen": good, "rejected": bad})
    return rows


def kto_rows(n: int = 48, labels=(True, False)) -> list[dict]:
    rows = []
    for i, r in enumerate(pair_rows(n)):
        label = labels[i % len(labels)]
        rows.append({"prompt": r["prompt"], "completion": r["chosen"] if label else r["rejected"], "label": label})
    return rows


def kind_config(tiny_config, tmp_path, kind: str, rows: list[dict] | None = None, path=None, **kw) -> RunConfig:
    cfg = tiny_config(**kw)
    data = path or write_jsonl(rows, tmp_path / f"{kind}.jsonl")
    cfg = cfg.model_copy(update={"training": kind})
    cfg.dataset.path = str(data)
    return cfg


def train_events(run_dir) -> list[dict]:
    return [e for e in read_events(run_dir) if e["type"] == "train"]


def assert_metrics(run_dir, names) -> list[dict]:
    ev = train_events(run_dir)
    assert ev, "no train events"
    for name in names:
        assert all(name in e for e in ev), (name, ev[-1])
    return ev


# ------------------------------------------------------------------------------------- refusals


def test_dpo_on_sft_shaped_data_is_refused_before_a_run_exists(tiny_config, tmp_path):
    cfg = kind_config(tiny_config, tmp_path, "dpo", chat_rows(32))
    with pytest.raises(UserError, match="training: dpo needs preference pairs.*no rejected column"):
        create_run(cfg)
    assert not list((tmp_path / "runs").glob("*"))


def test_kto_without_labels_is_refused(tiny_config, tmp_path):
    rows = [{"prompt": r["prompt"], "completion": r["chosen"]} for r in pair_rows(32)]
    cfg = kind_config(tiny_config, tmp_path, "kto", rows)
    with pytest.raises(UserError, match="training: kto needs rows labelled .* without labels"):
        create_run(cfg)
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").glob("*"))


def test_kto_with_one_label_only_is_refused(tiny_config, tmp_path):
    cfg = kind_config(tiny_config, tmp_path, "kto", kto_rows(32, labels=(True,)))
    with pytest.raises(UserError, match="needs both labels, but every row is desirable"):
        create_run(cfg)


CLI_REFUSALS = {
    "dpo-sft-rows": ("dpo", lambda: chat_rows(32), "training: dpo needs preference pairs"),
    "dpo-no-rejected-column": ("dpo", lambda: [{"prompt": r["prompt"], "chosen": r["chosen"]} for r in pair_rows(32)],
                               "dataset.columns.rejected: preference pairs need a 'rejected' column"),
    "kto-no-labels": ("kto", lambda: [{"prompt": r["prompt"], "completion": r["chosen"]} for r in pair_rows(32)],
                      "training: kto needs rows labelled"),
}


@pytest.mark.parametrize("case", list(CLI_REFUSALS))
def test_train_refuses_data_of_the_wrong_shape_in_one_line_exit_2_creating_nothing(tiny_config, tmp_path, case):
    from ftwizard.core.config import save_config

    kind, rows, expected = CLI_REFUSALS[case]
    cfg = kind_config(tiny_config, tmp_path, kind, rows())
    save_config(cfg, tmp_path / "c.yaml")
    r = subprocess.run(CLI + ["train", str(tmp_path / "c.yaml")], capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert expected in r.stderr and f"{kind}.jsonl" in r.stderr, r.stderr
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())


def test_kind_section_for_another_kind_is_refused(tiny_config, tmp_path):
    from ftwizard.core.config import parse_config

    data = json.loads(tiny_config().model_dump_json())
    data["dpo"] = {"beta": 0.3}
    with pytest.raises(UserError, match="dpo.beta: is used by training: dpo only"):
        parse_config(data)


def test_dpo_loss_type_takes_one_name_or_a_list_and_refuses_unknown_ones(tiny_config):
    from ftwizard.core.config import parse_config

    data = json.loads(tiny_config().model_dump_json())
    data["training"] = "dpo"
    for ok in ("ipo", ["sigmoid", "sft"]):
        data["dpo"] = {"loss_type": ok}
        assert parse_config(data).dpo.loss_type == ok
    data["dpo"] = {"loss_type": "nope"}
    with pytest.raises(UserError, match="unknown loss 'nope'"):
        parse_config(data)


# -------------------------------------------------------------------------------- real training


@pytest.mark.slow
def test_dpo_lora_trains_with_reward_metrics_and_no_reference_copy(tiny_config, tmp_path, start_run, wait_run):
    cfg = kind_config(tiny_config, tmp_path, "dpo", pair_rows(48), steps=6)
    run_dir = start_run(cfg)
    info = wait_run(run_dir, 240)
    assert info.state == "completed", info.reason
    assert_metrics(run_dir, PAIR_METRICS)
    ref = [e["value"] for e in read_events(run_dir) if e["type"] == "info" and e.get("key") == "reference_model"]
    assert ref == [{"kind": "dpo", "reference": "the base model (adapter disabled)"}]
    out = run_dir / "output"
    assert (out / "adapter_config.json").exists() and not (out / "ref").exists()


@pytest.mark.slow
def test_dpo_full_trains_against_a_frozen_reference_copy(tiny_config, tmp_path, start_run, wait_run):
    cfg = kind_config(tiny_config, tmp_path, "dpo", pair_rows(48, conversational=False), steps=6, method="full")
    run_dir = start_run(cfg)
    info = wait_run(run_dir, 240)
    assert info.state == "completed", info.reason
    ev = assert_metrics(run_dir, PAIR_METRICS)
    # Against a frozen copy the first step's rewards are exactly 0 (policy == reference); later they move.
    assert ev[0]["reward_margin"] == pytest.approx(0.0, abs=1e-6)
    assert any(abs(e["reward_margin"]) > 1e-4 for e in ev[1:])
    ref = [e["value"] for e in read_events(run_dir) if e["type"] == "info" and e.get("key") == "reference_model"]
    assert ref[0]["reference"] == "frozen copy of the starting weights"
    assert (run_dir / "output" / "model.safetensors").exists()


@pytest.mark.slow
@pytest.mark.parametrize("kind,extra", [("orpo", ("nll_loss", "log_odds_ratio")), ("simpo", ("nll_loss",))])
def test_reference_free_kinds_train_with_their_metrics(tiny_config, tmp_path, start_run, wait_run, kind, extra):
    cfg = kind_config(tiny_config, tmp_path, kind, pair_rows(48), steps=4)
    run_dir = start_run(cfg)
    info = wait_run(run_dir, 240)
    assert info.state == "completed", info.reason
    assert_metrics(run_dir, PAIR_METRICS + extra)
    assert (run_dir / "output" / "adapter_config.json").exists()


@pytest.mark.slow
def test_kto_lora_trains_with_metrics_per_label(tiny_config, tmp_path, start_run, wait_run):
    cfg = kind_config(tiny_config, tmp_path, "kto", kto_rows(48), steps=4)
    run_dir = start_run(cfg)
    info = wait_run(run_dir, 240)
    assert info.state == "completed", info.reason
    ev = train_events(run_dir)
    assert any("reward_desirable" in e for e in ev) and any("reward_undesirable" in e for e in ev), ev[-1]
    assert all("kl" in e for e in ev)
    ds = [e["value"] for e in read_events(run_dir) if e["type"] == "info" and e.get("key") == "dataset"]
    assert ds[0]["labels"] == {"desirable": 24, "undesirable": 24}
    assert (run_dir / "output" / "adapter_config.json").exists()


@pytest.mark.slow
def test_peer_demo_files_train_as_dpo_and_kto_as_they_are(tiny_config, tmp_path, start_run, wait_run, peer_demo):
    runs = []
    for kind, name in (("dpo", "dpo_en_demo.json"), ("kto", "kto_en_demo.json")):
        cfg = kind_config(tiny_config, tmp_path, kind, path=peer_demo / name, steps=2)
        # kto_en_demo's prompts are long: at max_length 128 TRL drops 17 of its first 24 rows, and the 7 left
        # are all desirable (refused: one label); of the first 40, 14 train, with both labels
        cfg.dataset.max_rows = 40 if kind == "kto" else 24
        # Without a validation split here; with one, see test_kind_data.py's
        # test_kto_peer_demo_with_a_validation_split_logs_eval_loss (prompts TRL drops, left out first).
        cfg.dataset.validation = 0.0
        runs.append((kind, start_run(cfg)))
    for kind, run_dir in runs:
        info = wait_run(run_dir, 300)
        assert info.state == "completed", (kind, info.reason)
        names = ("kl",) if kind == "kto" else PAIR_METRICS  # KTO: per-label rewards only when a batch has that label
        assert_metrics(run_dir, names)


STOP_AT = """
from pathlib import Path
from transformers import TrainerCallback


class StopAt(TrainerCallback):
    def on_step_end(self, args, state, control, **kw):
        if state.global_step == 4:
            Path("stop.request").write_text("test")
"""


@pytest.mark.slow
def test_dpo_stop_then_resume_continues_the_same_curve(tiny_config, tmp_path, start_run, wait_run, monkeypatch):
    (tmp_path / "stop_at.py").write_text(STOP_AT)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # bit-reproducible CPU reductions (see test_resume.py)
    kw = dict(steps=10, lr_scheduler="cosine", warmup_ratio=0.1)
    rows = pair_rows(32)
    ref_dir = start_run(kind_config(tiny_config, tmp_path, "dpo", rows, **kw))
    run_dir = start_run(kind_config(tiny_config, tmp_path, "dpo", rows, callbacks=["stop_at:StopAt"], **kw))
    assert wait_run(ref_dir, 300).state == "completed"
    info = wait_run(run_dir, 300)
    assert info.state == "stopped" and info.step == 5, (info.state, info.step, info.reason)
    r = subprocess.run(CLI + ["resume", str(run_dir), "--detach"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert wait_run(run_dir, 300).state == "completed"
    got = [(e["step"], e["loss"], e["reward_margin"]) for e in train_events(run_dir)]
    assert [s for s, _, _ in got] == list(range(1, 11))
    ref = {e["step"]: (e["loss"], e["reward_margin"]) for e in train_events(ref_dir)}
    for s, loss, margin in got:
        assert loss == pytest.approx(ref[s][0], rel=1e-4, abs=1e-5), (s, loss, ref[s])
        assert margin == pytest.approx(ref[s][1], rel=1e-3, abs=1e-5), (s, margin, ref[s])


def test_inspect_kind_dpo_shows_chosen_and_rejected_with_their_tokens(tiny_work, tmp_path):
    data = write_jsonl(pair_rows(12), tmp_path / "pairs.jsonl")
    r = subprocess.run(CLI + ["inspect", str(data), "--kind", "dpo", "--model", str(tiny_work / "tiny-model"),
                              "--rows", "2", "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    # what SFT would make of the pairs (prompt + chosen only) is left out of the DPO view
    assert out["sft_note"] is None and out["rendered"] is None
    assert not [p["code"] for p in out["problems"] if p["code"].endswith("-as-sft")]
    kind = out["kind"]
    assert kind["rows"] == 12 and len(kind["preview"]) == 2
    first = kind["preview"][0]
    assert "equals" in first["chosen"] and "equals" in first["rejected"] and first["chosen"] != first["rejected"]
    assert first["chosen_tokens"] > 0 and first["rejected_tokens"] > 0 and first["prompt_tokens"] > 0


def test_inspect_kind_kto_shows_the_label_balance_and_refuses_sft_data(tmp_path):
    data = write_jsonl(kto_rows(12, labels=(True, True, False)), tmp_path / "kto.jsonl")
    r = subprocess.run(CLI + ["inspect", str(data), "--kind", "kto", "--quick", "--json"], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["kind"]["labels"] == {"desirable": 8, "undesirable": 4}
    sft = write_jsonl(chat_rows(12), tmp_path / "chat.jsonl")
    r = subprocess.run(CLI + ["inspect", str(sft), "--kind", "kto", "--quick"], capture_output=True, text=True)
    assert r.returncode == 2 and "without labels" in r.stderr and "Traceback" not in r.stderr
