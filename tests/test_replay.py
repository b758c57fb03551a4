"""dataset.replay: general text mixed into SFT training against forgetting (issue 15, item 6)."""

from __future__ import annotations

import pytest

from ftwizard.core.errors import UserError


def test_replay_rows_are_in_the_tokenized_training_data(tiny_config):
    from ftwizard.core.config import ReplayConfig
    from ftwizard.core.data.prepare import prepare_training_data
    from ftwizard.core.data.tokenize import load_tokenizer, setup_tokenizer
    from ftwizard.core.forgetting import general_texts

    cfg = tiny_config()
    tok = load_tokenizer(cfg.model.name_or_path)
    template, _ = setup_tokenizer(tok, None, True)
    plain, _, _ = prepare_training_data(cfg, tok, template, lambda t, **kw: None)
    cfg.dataset.replay = ReplayConfig(path="general", fraction=0.2)
    events = []
    mixed, _, _ = prepare_training_data(cfg, tok, template, lambda t, **kw: events.append((t, kw)))
    n_replay = round(len(plain) * 0.2 / 0.8)
    assert len(mixed) == len(plain) + n_replay
    general = general_texts()
    replayed = [tok.decode(ids) for ids in mixed["input_ids"][len(plain):]]
    assert all(any(g.startswith(text.strip()[:40]) for g in general) for text in replayed)
    # raw text trains on every token, unlike the chat rows whose prompts are masked
    assert all(-100 not in labels for labels in mixed["labels"][len(plain):])
    info = [kw["value"] for t, kw in events if t == "info" and kw.get("key") == "replay"]
    assert info and info[0]["rows"] == n_replay and info[0]["train_rows"] == len(plain)


@pytest.mark.slow
def test_a_real_run_trains_on_the_replay_rows(tiny_config, start_run, wait_run):
    from ftwizard.core.config import ReplayConfig
    from ftwizard.core.events import read_events

    cfg = tiny_config(steps=3, eval_steps=3)
    cfg.dataset.replay = ReplayConfig(path="general", fraction=0.25)
    run_dir = start_run(cfg)
    assert wait_run(run_dir, 240).state == "completed"
    events = read_events(run_dir)
    info = {e["key"]: e["value"] for e in events if e.get("type") == "info" and "key" in e}
    assert info["replay"]["rows"] == round(info["tokenized"]["rows"] / 3)  # 25% of the mixed rows
    assert info["replay"]["train_rows"] == info["tokenized"]["rows"]
    assert "replay:" in (run_dir / "config.yaml").read_text()
    # the training process made the forgetting check on its way out: base (adapter off) vs tuned
    from ftwizard.core.forgetting import load_result

    f = load_result(run_dir)
    assert f is not None and f.base_ppl > 1 and f.tuned_ppl > 1 and f.base_ppl != f.tuned_ppl and f.tokens > 500


def test_replay_is_refused_for_kinds_that_do_not_read_sft_rows():
    from ftwizard.core.config import parse_config

    base = {"model": {"name_or_path": "m"}, "dataset": {"path": "d.jsonl", "replay": {"fraction": 0.1}}}
    assert parse_config(base).dataset.replay.path == "general"
    with pytest.raises(UserError, match="dataset.replay"):
        parse_config({**base, "training": "dpo"})
    with pytest.raises(UserError, match="fraction"):
        parse_config({**base, "dataset": {"path": "d.jsonl", "replay": {"fraction": 0.7}}})


def test_a_missing_replay_file_is_refused_naming_the_key(tmp_path):
    from ftwizard.core.config import ReplayConfig
    from ftwizard.core.data.prepare import replay_source

    with pytest.raises(UserError) as e:
        replay_source(ReplayConfig(path=str(tmp_path / "nope.jsonl")))
    assert e.value.problems[0].field == "dataset.replay.path" and "nope.jsonl" in str(e.value.problems[0])
