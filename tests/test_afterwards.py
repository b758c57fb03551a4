"""After training: chat (tuned vs base), evaluate, merge, on a real tiny run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow
CLI = [sys.executable, "-m", "ftwizard.core.cli"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_work):
    from ftwizard.core.launch import create_run, start
    from ftwizard.core.selftest import make_tiny_setup, wait_for_end

    cfg = make_tiny_setup(tiny_work, steps=40, learning_rate=1e-2)
    cfg.runs_dir = str(tmp_path_factory.mktemp("after") / "runs")
    run_dir = create_run(cfg)
    start(run_dir)
    assert wait_for_end(run_dir, 240).state == "completed"
    return run_dir


def test_evaluate_shows_the_tuned_model_beats_the_base(finished_run):
    r = subprocess.run(CLI + ["evaluate", str(finished_run), "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["rows"] > 0 and res["base_loss"] is not None
    assert res["tuned_loss"] < res["base_loss"] - 0.1  # 40 steps on arithmetic-in-words: clearly better
    gen = res["generation"]  # prose answers: side by side with the reference, base and tuned
    assert gen["mode"] == "side_by_side" and len(gen["rows"]) == res["rows"]
    first = gen["rows"][0]
    assert first["prompt"].startswith("What is") and "equals" in first["reference"]
    assert first["base"] != first["tuned"]
    f = res["forgetting"]  # the general-text check ran on both models and was kept in the run dir
    assert f["base_ppl"] > 1 and f["tuned_ppl"] > 1 and f["tokens"] > 500
    saved = json.loads((finished_run / "evaluation.json").read_text())
    assert saved["generation"]["rows"] == gen["rows"]
    assert json.loads((finished_run / "forgetting.json").read_text())["tuned_ppl"] == f["tuned_ppl"]


LM_EVAL_TASK = """task: ftw_arith_choice
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{q}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: "{{{{a}}}}"
metric_list:
  - metric: acc
"""


def test_evaluate_exact_match_on_labels_and_lm_eval_on_a_local_task(finished_run, tmp_path):
    pytest.importorskip("lm_eval")
    from ftwizard.core.tiny import write_jsonl

    labels = write_jsonl([{"messages": [{"role": "user", "content": f"Is {a} plus {b} even?"},
                                        {"role": "assistant", "content": "yes" if (a + b) % 2 == 0 else "no"}]}
                          for a in range(3) for b in range(2)], tmp_path / "labels.jsonl")
    data = write_jsonl([{"q": "What is two plus three?", "choices": ["five", "nine"], "a": 0},
                        {"q": "What is one plus one?", "choices": ["seven", "two"], "a": 1}], tmp_path / "mc.jsonl")
    task = tmp_path / "arith.yaml"
    task.write_text(LM_EVAL_TASK.format(data=data))
    r = subprocess.run(CLI + ["evaluate", str(finished_run), "--data", str(labels), "--generations", "3",
                              "--max-new-tokens", "4", "--no-forgetting", "--lm-eval", str(task), "--json"],
                       capture_output=True, text=True, env={**os.environ, "HF_DATASETS_OFFLINE": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout)
    gen = res["generation"]
    assert gen["mode"] == "exact_match" and len(gen["rows"]) == 3
    assert 0.0 <= gen["tuned_exact_match"] <= 1.0 and 0.0 <= gen["base_exact_match"] <= 1.0
    acc = res["lm_eval"]["ftw_arith_choice"]["acc"]  # run on both models, offline, from the local file
    assert acc["base"] in (0.0, 0.5, 1.0) and acc["tuned"] in (0.0, 0.5, 1.0)
    assert "forgetting" not in res


def test_evaluate_lm_eval_without_the_extra_is_refused_naming_it(finished_run):
    (finished_run / "evaluation.json").unlink(missing_ok=True)
    code = ("import sys; sys.modules['lm_eval'] = None; from ftwizard.core.cli import main; "
            f"sys.exit(main(['evaluate', {str(finished_run)!r}, '--lm-eval', 'hellaswag']))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 2 and "pip install 'ftwizard[lm-eval]'" in r.stderr and "Traceback" not in r.stderr
    assert not (finished_run / "evaluation.json").exists()


def test_label_like_answers_are_short_and_repeat():
    from ftwizard.core.afterwards import label_like

    assert label_like(["yes", "no", "no", "Yes."])
    assert label_like(["positive", "negative", "neutral"])
    assert not label_like(["two plus three equals five.", "one plus one equals two."])
    assert not label_like([])


def test_chat_compare_answers_with_both(finished_run):
    r = subprocess.run(CLI + ["chat", str(finished_run), "--prompt", "What is two plus three?", "--compare",
                              "--max-new-tokens", "12"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith(("base :", "tuned:"))]
    assert len(lines) == 2
    assert lines[0] != lines[1].replace("tuned:", "base :")  # the adapter changes the answer


def test_merge_saves_a_standalone_model_and_never_overwrites(finished_run, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    from ftwizard.core.afterwards import load_tuned

    dest = tmp_path / "merged"
    r = subprocess.run(CLI + ["merge", str(finished_run), "--out", str(dest)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    merged = AutoModelForCausalLM.from_pretrained(str(dest), dtype=torch.float32)
    tuned = load_tuned(finished_run, device="cpu")
    ids = torch.tensor([[5, 17, 42, 99, 3]])
    with torch.no_grad():
        a, b = merged(ids).logits, tuned.model(ids).logits
    assert torch.allclose(a, b, atol=0.05)  # bf16 merge of the same weights
    again = subprocess.run(CLI + ["merge", str(finished_run), "--out", str(dest)], capture_output=True, text=True)
    assert again.returncode == 2 and "already exists" in again.stderr and "Traceback" not in again.stderr
