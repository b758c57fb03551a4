"""Problems per training kind (core/data/kinds.py): chosen == rejected, an empty side, prompts TRL drops,
both sides cut, KTO balance, GRPO reward columns and prompt budget; their token counts against TRL's own
tokenization; `inspect --kind grpo`; the pre-flight; and the KTO validation split that evaluated nothing."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ftwizard.core.config import GrpoConfig
from ftwizard.core.data.kinds import grpo_report, kind_report
from ftwizard.core.data.tokenize import load_tokenizer, setup_tokenizer, trl_token_counts
from ftwizard.core.errors import UserError
from ftwizard.core.tiny import write_jsonl

CLI = [sys.executable, "-m", "ftwizard.core.cli"]


def pairs(n: int = 12, conversational: bool = True) -> list[dict]:
    rows = []
    for i in range(n):
        q, good, bad = f"What is {i} plus {i}?", f"{i} plus {i} is {2 * i}.", f"{i} plus {i} is {2 * i + 3}."
        if conversational:
            rows.append({"prompt": [{"role": "user", "content": q}], "chosen": [{"role": "assistant", "content": good}],
                         "rejected": [{"role": "assistant", "content": bad}]})
        else:
            rows.append({"prompt": q, "chosen": good, "rejected": bad})
    return rows


def by_code(problems) -> dict:
    return {p.code: p for p in problems}


@pytest.fixture(scope="module")
def tok(tiny_work):
    t = load_tokenizer(str(tiny_work / "tiny-model"))
    setup_tokenizer(t, None, True)  # the template training sets up
    return t


# ------------------------------------------------------------------------------ rows, no tokenizer


def test_same_chosen_and_rejected_is_listed_with_its_lines(tmp_path):
    rows = pairs()
    for i in (2, 6):  # lines 3 and 7
        rows[i]["rejected"] = [dict(rows[i]["chosen"][0])]
    p = by_code(kind_report(str(write_jsonl(rows, tmp_path / "d.jsonl")), "dpo").problems)["same-answers"]
    assert (p.severity, p.count, p.lines, p.line) == ("warning", 2, [3, 7], 3)
    assert "lines 3, 7" in p.message and p.fix


def test_every_pair_the_same_is_an_error(tmp_path):
    rows = [{**r, "rejected": r["chosen"]} for r in pairs(10, conversational=False)]
    p = by_code(kind_report(str(write_jsonl(rows, tmp_path / "d.jsonl")), "orpo").problems)["same-answers"]
    assert p.severity == "error" and p.count == 10 and "every row" in p.message


def test_an_empty_answer_inside_a_message_list_is_an_empty_side(tmp_path):
    rows = pairs()
    rows[4]["chosen"] = [{"role": "assistant", "content": "  "}]  # passes the format's missing-field check
    rep = kind_report(str(write_jsonl(rows, tmp_path / "d.jsonl")), "simpo")
    p = by_code(rep.problems)["empty-side"]
    assert (p.severity, p.lines) == ("error", [5])
    assert "same-answers" not in by_code(rep.problems)


def test_kto_far_from_balanced_warns_with_weights_that_balance_it(tmp_path):
    rows = [{"prompt": f"q{i}", "completion": f"a{i}", "label": i % 4 != 0} for i in range(12)]  # 9 vs 3
    path = str(write_jsonl(rows, tmp_path / "k.jsonl"))
    rep = kind_report(path, "kto")
    assert rep.labels == {"desirable": 9, "undesirable": 3}
    p = by_code(rep.problems)["unbalanced-labels"]
    assert p.severity == "warning" and "ratio is 3.00" in p.message
    weight = float(p.fix.split("kto.desirable_weight: ")[1].split()[0])
    # the suggested weight is inside the KTO paper's range (TRL warns outside it): the warning goes
    assert "unbalanced-labels" not in by_code(kind_report(path, "kto", desirable_weight=weight).problems)
    assert "unbalanced-labels" in by_code(kind_report(path, "kto", desirable_weight=2.0).problems)  # 6.0: worse


def test_kto_with_one_label_is_an_error(tmp_path):
    rows = [{"prompt": f"q{i}", "completion": f"a{i}", "label": False} for i in range(12)]
    p = by_code(kind_report(str(write_jsonl(rows, tmp_path / "k.jsonl")), "kto").problems)["one-label"]
    assert p.severity == "error" and "every row is undesirable" in p.message


def test_a_set_cancel_event_stops_the_pass_and_says_so(tmp_path):
    import threading

    stop = threading.Event()
    stop.set()
    rep = kind_report(str(write_jsonl(pairs(), tmp_path / "d.jsonl")), "dpo", cancel=stop)
    assert (rep.complete, rep.rows) == (False, 0)
    assert kind_report(str(tmp_path / "d.jsonl"), "dpo").complete


def test_sft_data_for_a_pair_kind_is_refused(tmp_path):
    rows = [{"prompt": "q", "completion": "a"}] * 3
    with pytest.raises(UserError, match="no rejected column"):
        kind_report(str(write_jsonl(rows, tmp_path / "s.jsonl")), "dpo")


# ----------------------------------------------------------------------------------- token checks


def test_token_counts_are_trls_own(tok):
    from trl.data_utils import _tokenize, common_prefix_length

    for row in (pairs(1)[0], pairs(1, conversational=False)[0]):
        got = trl_token_counts(tok, row)
        if isinstance(row["prompt"], list):
            p = _tokenize(tok, row["prompt"], add_generation_prompt=True)["input_ids"]
            full = {s: _tokenize(tok, row["prompt"] + row[s])["input_ids"] for s in ("chosen", "rejected")}
        else:  # TRL appends EOS to plain answers
            p = _tokenize(tok, row["prompt"])["input_ids"]
            full = {s: _tokenize(tok, row["prompt"] + row[s] + tok.eos_token)["input_ids"]
                    for s in ("chosen", "rejected")}
        n = min(common_prefix_length(p, ids) for ids in full.values())
        assert got == {"prompt": n, "chosen": len(full["chosen"]) - n, "rejected": len(full["rejected"]) - n}
        assert got["prompt"] > 0 and got["chosen"] > 0


def test_prompts_filling_max_length_and_pairs_cut_on_both_sides(tmp_path, tok):
    rows = pairs(12)
    rows[1]["prompt"][0]["content"] = "word " * 200            # line 2: the prompt alone is over max_length
    rows[3]["chosen"][0]["content"] = "long answer " * 40      # line 4: both answers past max_length
    rows[3]["rejected"][0]["content"] = "other answer " * 40
    rows[5]["chosen"][0]["content"] = "long answer " * 40      # line 6: only one side cut: fine
    path = str(write_jsonl(rows, tmp_path / "d.jsonl"))
    rep = kind_report(path, "dpo", tokenizer=tok, max_length=64)
    ps = by_code(rep.problems)
    assert (ps["prompt-too-long"].lines, ps["prompt-too-long"].severity) == ([2], "warning")
    assert ps["both-cut"].lines == [4] and rep.left_out == 1
    assert rep.preview[0]["prompt_tokens"] > 0 and "<|im_start|>assistant" in rep.preview[0]["prompt"]
    assert not kind_report(path, "dpo", tokenizer=tok, max_length=2048).problems  # all fit: quiet
    sampled = by_code(kind_report(path, "dpo", tokenizer=tok, max_length=64, token_rows=3).problems)  # pre-flight's
    assert "of the first 3 rows" in sampled["prompt-too-long"].message and "both-cut" not in sampled


def test_kto_prompts_dropped_are_those_trl_drops_near_and_far_over_max_length(tmp_path, tok):
    """The far-over shortcut (the prompt alone, answers not tokenized) and the exact count near the limit
    drop the same rows as TRL's own rule (tokenize.trl_prompt_fills), row by row."""
    from ftwizard.core.data.tokenize import trl_prompt_fills

    sizes = [2, 16, 17, 18, 19, 40, 3, 200, 5, 30]  # words (3 tokens each + 10): 18 fills 64, 29+ far past it
    rows = [{"prompt": [{"role": "user", "content": "word " * k}],
             "completion": [{"role": "assistant", "content": f"answer {i}"}], "label": i % 2 == 0}
            for i, k in enumerate(sizes)]
    path = str(write_jsonl(rows, tmp_path / "k.jsonl"))
    expected = [i + 1 for i, r in enumerate(rows) if trl_prompt_fills(tok, r, 64)]
    assert expected == [4, 5, 6, 8, 10]  # 18 words and more: at, just past and far past the limit
    rep = kind_report(path, "kto", tokenizer=tok, max_length=64, n=1)
    assert by_code(rep.problems)["prompt-too-long"].lines == expected and rep.left_out == len(expected)
    kept = [r["label"] for i, r in enumerate(rows) if i + 1 not in expected]
    assert rep.labels == {"desirable": kept.count(True), "undesirable": kept.count(False)}


# ------------------------------------------------------------------------------------------- GRPO


def grpo_rows(n: int = 12) -> list[dict]:
    return [{"prompt": [{"role": "user", "content": f"What is {i}+{i}?"}], "answer": str(2 * i), "level": i % 3}
            for i in range(n)]


def test_grpo_view_renders_prompts_and_lists_the_columns_a_reward_gets(tmp_path, tok):
    rows = grpo_rows()
    rows[5]["answer"] = ""                                   # line 6: always scores 0 on exact_match
    rows[8]["prompt"][0]["content"] = "many words " * 80     # line 9: over the prompt budget
    path = str(write_jsonl(rows, tmp_path / "g.jsonl"))
    g = GrpoConfig(rewards=["exact_match", "format"], max_completion_length=32)
    rep = grpo_report(path, g, tokenizer=tok, max_length=96, n=2)
    assert rep.columns == ["answer", "level"] and rep.reward_columns == {"exact_match": "answer"}
    assert rep.budget == 64 and rep.left_out == 1
    first = rep.preview[0]
    assert first["prompt"].endswith("<|im_start|>assistant\n") and "What is 0+0?" in first["prompt"]
    assert first["columns"] == {"answer": "0", "level": 0} and 0 < first["prompt_tokens"] < 64
    ps = by_code(rep.problems)
    assert (ps["no-reward-column"].severity, ps["no-reward-column"].lines) == ("warning", [6])
    assert (ps["prompt-too-long"].severity, ps["prompt-too-long"].lines) == ("warning", [9])


def test_grpo_reward_column_absent_from_the_first_row_is_an_error(tmp_path):
    path = str(write_jsonl(grpo_rows(), tmp_path / "g.jsonl"))
    p = by_code(grpo_report(path, GrpoConfig(rewards=["code"])).problems)["no-reward-column"]
    assert p.severity == "error" and "'tests'" in p.message and "grpo.tests_column" in p.fix


def test_inspect_kind_grpo_json_and_exit_codes(tmp_path, tiny_work):
    path = write_jsonl(grpo_rows(), tmp_path / "g.jsonl")
    r = subprocess.run(CLI + ["inspect", str(path), "--kind", "grpo", "--rewards", "numeric_match", "--json",
                              "--model", str(tiny_work / "tiny-model"), "--max-length", "256"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["rows"] == 12 and out["kind"]["reward_columns"] == {"numeric_match": "answer"}
    assert out["kind"]["budget"] == 256 - GrpoConfig().max_completion_length and out["problems"] == []
    r = subprocess.run(CLI + ["inspect", str(path), "--kind", "grpo", "--rewards", "code"], capture_output=True,
                       text=True)
    assert r.returncode == 1 and "error:" in r.stdout and "'tests'" in r.stdout and "Traceback" not in r.stderr


# -------------------------------------------------------------------------------------- pre-flight


def kind_cfg(tiny_config, tmp_path, kind, rows, **train):
    cfg = tiny_config(**train).model_copy(update={"training": kind})
    cfg.dataset.path = str(write_jsonl(rows, tmp_path / f"{kind}.jsonl"))
    return cfg


def test_preflight_refuses_pairs_that_are_all_the_same(tiny_config, tmp_path):
    from ftwizard.core.launch import create_run

    rows = [{**r, "rejected": r["chosen"]} for r in pairs(16)]
    with pytest.raises(UserError, match="same chosen and rejected answer"):
        create_run(kind_cfg(tiny_config, tmp_path, "dpo", rows))
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())


def test_a_dpo_run_trains_with_a_template_without_generation_markers(tiny_config, tmp_path, start_run, wait_run):
    """The markers serve SFT's assistant-only loss; TRL's DPO finds the answer by the prompt's own tokens,
    so the pre-flight's SFT mask check (which refused this run) does not apply."""
    plain = ("{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '<|im_end|>' }}{% endfor %}"
             "{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}")
    cfg = kind_cfg(tiny_config, tmp_path, "dpo", pairs(24), steps=2)
    cfg.model.chat_template = plain
    cfg.dataset.validation = 0.0
    info = wait_run(start_run(cfg), 300)
    assert info.state == "completed", info.reason


def test_preflight_warns_of_kind_problems_into_the_run(tiny_config, tmp_path):
    from ftwizard.core.launch import create_run
    from ftwizard.core.preflight import read

    rows = [{"prompt": f"q{i}", "completion": f"a{i}", "label": i % 4 != 0} for i in range(16)]
    rows[3]["prompt"] = "word " * 300  # over max_length 128: TRL would drop it
    run_dir = create_run(kind_cfg(tiny_config, tmp_path, "kto", rows))
    codes = {f["code"]: f for f in read(run_dir)}
    assert codes["unbalanced-labels"]["severity"] == "warning"
    assert codes["prompt-too-long"]["line"] == 4


def test_preflight_refuses_grpo_when_every_prompt_is_over_the_budget(tiny_config, tmp_path):
    from ftwizard.core.launch import create_run

    cfg = kind_cfg(tiny_config, tmp_path, "grpo", grpo_rows(), max_length=40)
    cfg.grpo.rewards = ["numeric_match"]
    cfg.grpo.max_completion_length = 32
    with pytest.raises(UserError, match="prompt budget of 8 tokens"):
        create_run(cfg)


# ------------------------------------------------------------------- KTO validation on the peer file


@pytest.mark.slow
def test_kto_peer_demo_with_a_validation_split_logs_eval_loss(tiny_config, tmp_path, start_run, wait_run, peer_demo):
    """kto_en_demo.json at max_length 128: most prompts fill it and TRL drops those rows after our split;
    the validation rows were all such rows, so evaluation scored nothing and the run failed on
    metric_for_best_model. They are now left out before the split, with a warning event."""
    from ftwizard.core.events import read_events

    cfg = tiny_config(steps=2).model_copy(update={"training": "kto"})
    cfg.dataset.path = str(peer_demo / "kto_en_demo.json")
    cfg.dataset.max_rows = 40
    assert cfg.dataset.validation > 0
    run_dir = start_run(cfg)
    info = wait_run(run_dir, 300)
    assert info.state == "completed", info.reason
    ev = read_events(run_dir)
    evals = [e for e in ev if e["type"] == "eval"]
    assert evals and all(isinstance(e.get("eval_loss"), float) for e in evals)
    warned = [e for e in ev if e["type"] == "warning" and e.get("code") == "prompt-too-long"]
    assert warned and warned[0]["evidence"]["left_out"] == 26


def test_inspect_config_checks_as_the_run_would_train(tiny_config, tmp_path):
    """--config takes the dataset, model, max_length, kind and kto weights from the run config."""
    from ftwizard.core.config import save_config

    rows = [{"prompt": f"q{i}", "completion": f"a{i}", "label": i % 4 != 0} for i in range(12)]  # 9 vs 3
    rows[2]["prompt"] = "word " * 200
    cfg = kind_cfg(tiny_config, tmp_path, "kto", rows, max_length=64)
    save_config(cfg, tmp_path / "c.yaml")
    r = subprocess.run(CLI + ["inspect", "--config", str(tmp_path / "c.yaml"), "--json", "--quick"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["kind"]["kind"] == "kto" and out["kind"]["max_length"] == 64
    assert out["kind"]["preview"][0]["prompt_tokens"] is not None  # the config's model counted them
    problems = {p["code"]: p for p in out["problems"]}
    assert problems["prompt-too-long"]["lines"] == [3] and "unbalanced-labels" in problems
    cfg.kto.desirable_weight = 0.39  # the suggested weight, in the config: the warning goes
    save_config(cfg, tmp_path / "c.yaml")
    r = subprocess.run(CLI + ["inspect", "--config", str(tmp_path / "c.yaml"), "--json", "--quick"],
                       capture_output=True, text=True)
    assert "unbalanced-labels" not in {p["code"] for p in json.loads(r.stdout)["problems"]}
