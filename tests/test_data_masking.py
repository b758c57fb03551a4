"""Completion-only loss on plain prompt/completion rows, with the tiny model's real tokenizer: the
prompt's tokens carry -100 and the completion's are trained; and when the tokenizer merges the prompt's
end with the completion's start (the prompt's tokens are not a prefix of the row's), the mask fallback
is a visible `mask-fallback` problem in `ftwizard inspect`, in the scan the wizard shows, and in the
run's events."""

from __future__ import annotations

import argparse
import json

import pytest

from ftwizard.core.data.tokenize import IGNORE, encode_row

# the tiny tokenizer keeps "...Answer:" and " four" apart ...
CLEAN = {"prompt": "What is two plus two?\nAnswer:", "completion": " four"}
# ... but reads "wor" + "ld" as " world": the prompt's last token is not in the full row
BROKEN = {"prompt": "say hello wor", "completion": "ld"}


@pytest.fixture(scope="module")
def tok(tiny_work):
    from ftwizard.core.data.tokenize import load_tokenizer

    return load_tokenizer(str(tiny_work / "tiny-model"))


def trained_text(tok, enc) -> str:
    return tok.decode([t for t, lab in zip(enc.input_ids, enc.labels) if lab != IGNORE])


def inspect(capsys, *argv: str) -> str:
    """`ftwizard inspect ARGV`'s stdout (exit 0 asserted)."""
    from ftwizard.core.commands import inspect as command

    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    capsys.readouterr()
    assert command.run(parser.parse_args(list(argv))) == 0
    return capsys.readouterr().out


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_prompt_tokens_are_masked_and_completion_tokens_trained(tok):
    enc = encode_row(CLEAN, tok, None, 128, assistant_only=True)
    n_prompt = len(tok(CLEAN["prompt"])["input_ids"])
    assert n_prompt > 3
    assert enc.labels[:n_prompt] == [IGNORE] * n_prompt
    assert enc.labels[n_prompt:] == enc.input_ids[n_prompt:]  # everything after the prompt trains
    assert trained_text(tok, enc) == " four" + tok.eos_token
    assert not enc.mask_fallback
    everything = encode_row(CLEAN, tok, None, 128, assistant_only=False)
    assert everything.labels == everything.input_ids


def test_prepared_training_rows_mask_each_prompt(tiny_work, tmp_path, tok):
    """The training process's data step (the tokenized dataset the Trainer gets), row by row."""
    from ftwizard.core.data.prepare import prepare_training_data
    from ftwizard.core.selftest import make_tiny_setup

    rows = [{"prompt": f"What is {w} plus one?\nAnswer:", "completion": f" {w} plus one"}
            for w in ("two", "three", "four", "five", "six")]
    cfg = make_tiny_setup(tiny_work, max_length=64)
    cfg.dataset.path, cfg.dataset.validation = str(write(tmp_path / "pc.jsonl", rows)), 0.0
    events = []
    train, _, facts = prepare_training_data(cfg, tok, None, lambda t, **kw: events.append((t, kw)))
    assert (facts["format"], len(train), facts["mask_fallback_rows"]) == ("prompt-completion", 5, 0)
    for row, ids, labels in zip(rows, train["input_ids"], train["labels"]):
        n_prompt = len(tok(row["prompt"])["input_ids"])
        assert labels[:n_prompt] == [IGNORE] * n_prompt and IGNORE not in labels[n_prompt:]
        assert tok.decode(ids[n_prompt:]) == row["completion"] + tok.eos_token
    assert not [kw for t, kw in events if t == "warning" and kw["code"] == "mask-fallback"]


def test_a_prompt_that_is_not_a_token_prefix_masks_up_to_the_merge(tok):
    p = tok(BROKEN["prompt"])["input_ids"]
    full = tok(BROKEN["prompt"] + BROKEN["completion"])["input_ids"]
    assert full[:len(p)] != p  # the case under test: the tokenizer merges across the boundary
    enc = encode_row(BROKEN, tok, None, 128, assistant_only=True)
    assert enc.mask_fallback
    kept = next(i for i, (a, b) in enumerate(zip(p, full)) if a != b)
    assert kept > 0 and enc.labels[:kept] == [IGNORE] * kept  # the prompt before the merge stays masked
    assert trained_text(tok, enc) == tok.decode(full[kept:]) + tok.eos_token  # from the merge on, trained
    assert "say" not in trained_text(tok, enc)


def test_mask_fallback_is_a_problem_in_inspect_scan_and_run_events(tiny_work, tmp_path, tok, capsys):
    from ftwizard.core.data.prepare import prepare_training_data
    from ftwizard.core.data.stats import scan_dataset
    from ftwizard.core.selftest import make_tiny_setup

    rows = [CLEAN, BROKEN, CLEAN, BROKEN, {"prompt": "hello wor", "completion": "ld python"}]
    path = write(tmp_path / "merge.jsonl", rows)
    # the scan the wizard's dataset step shows (report.problems)
    report = scan_dataset(str(path), tok, None, 128, True)
    (p,) = [p for p in report.problems if p.code == "mask-fallback"]
    assert (p.severity, p.count, p.lines, p.line) == ("warning", 3, [2, 4, 5], 2)
    assert p.message.startswith("3 rows: ") and p.fix and p.file == str(path)
    # assistant_only off: nothing is masked, so nothing falls back
    assert not [p for p in scan_dataset(str(path), tok, None, 128, False).problems if p.code == "mask-fallback"]
    # ftwizard inspect (its own parser and run, in-process), JSON and text
    got = json.loads(inspect(capsys, str(path), "--model", str(tiny_work / "tiny-model"), "--json", "--row", "2"))
    (q,) = [q for q in got["problems"] if q["code"] == "mask-fallback"]
    assert (q["count"], q["lines"], q["fix"]) == (3, [2, 4, 5], p.fix)
    assert got["rendered"]["mask_fallback"] is True and "merges" in got["rendered"]["note"]
    text = inspect(capsys, str(path), "--model", str(tiny_work / "tiny-model"))
    assert f"warning: {path}:2: dataset.assistant_only_loss: 3 rows: the prompt's last token merges" in text
    # the run's events: the training data step emits it as a warning with the count and the fix
    cfg = make_tiny_setup(tiny_work, max_length=64)
    cfg.dataset.path, cfg.dataset.validation = str(path), 0.0
    events = []
    _, _, facts = prepare_training_data(cfg, tok, None, lambda t, **kw: events.append((t, kw)))
    (w,) = [kw for t, kw in events if t == "warning" and kw["code"] == "mask-fallback"]
    assert w["message"] == p.message and w["advice"] == [p.fix] and w["evidence"]["mask_fallback_rows"] == 3
    assert facts["mask_fallback_rows"] == 3


def test_a_generic_tokenizer_loads_without_torch_and_equals_autotokenizers(tiny_work):
    """`ftwizard train`'s pre-flight loads the tokenizer for the mask check: a directory whose
    tokenizer_config.json names transformers' generic class is loaded as that class, without
    AutoTokenizer's model-config lookup and the torch import it brings (~3 s of the CLI before the
    training process starts). Same class, same ids, same template, same pad as AutoTokenizer's."""
    import subprocess
    import sys

    model = str(tiny_work / "tiny-model")
    code = ("import sys, json; from ftwizard.core.data.tokenize import load_tokenizer; "
            f"t = load_tokenizer({model!r}); "
            "print(json.dumps({'torch': 'torch' in sys.modules, 'cls': type(t).__name__, 'pad': t.pad_token, "
            "'ids': t.apply_chat_template([{'role': 'user', 'content': 'hi there'}, "
            "{'role': 'assistant', 'content': 'hello, friend'}], tokenize=True, return_dict=True)['input_ids']}))")
    light = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                      check=True).stdout.strip().splitlines()[-1])
    assert light["torch"] is False
    from transformers import AutoTokenizer

    auto = AutoTokenizer.from_pretrained(model)
    auto.pad_token = auto.pad_token or auto.eos_token
    ids = auto.apply_chat_template([{"role": "user", "content": "hi there"},
                                    {"role": "assistant", "content": "hello, friend"}], tokenize=True,
                                   return_dict=True)["input_ids"]
    assert (light["cls"], light["pad"], light["ids"]) == (type(auto).__name__, auto.pad_token, list(ids))
