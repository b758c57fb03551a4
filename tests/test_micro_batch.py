"""train.micro_batch_size (issue 17: peak memory on a CPU): a batch run in passes of fewer rows, their
gradients accumulated, is the same optimizer step. Checked on real tiny runs: the per-step losses and
gradient norms of micro-batch 1 and of the whole batch agree (tolerance 1e-4 relative: fp32 summation
order; dropout 0 so both draw nothing random), and the first step really ran one pass per row.
Defaults: on a CPU for sft and cpt, passes of ~512 tokens when a whole batch's activations are big
(SmolLM2: 1 row at max_length 1024, 2 at 256, the whole batch at 128), the whole batch for the tiny model, on a GPU and for kinds whose loss is over the batch; an
explicit value that would not divide the batch or would change a kind's loss is refused."""

from __future__ import annotations

import pytest

from ftwizard.core.config import RunConfig
from ftwizard.core.defaults import resolve_defaults
from ftwizard.core.errors import UserError
from ftwizard.core.events import read_events
from ftwizard.core.hardware import Hardware
from fakes import A100_80GB

REL = 1e-4


def cfg(**kw) -> RunConfig:
    return RunConfig(dataset={"path": "d.jsonl"}, **kw)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from ftwizard.core.tiny import build_tiny_model

    return str(build_tiny_model(tmp_path_factory.mktemp("tiny") / "model"))


@pytest.mark.parametrize("kind, hw, model, want, why", [
    ("sft", Hardware(cpu_count=2), "smollm2", 1, "1 row per pass on a CPU (1024 tokens)"),
    ("cpt", Hardware(cpu_count=2), "smollm2", 1, "1 row per pass on a CPU (1024 tokens)"),
    ("sft-256", Hardware(cpu_count=2), "smollm2", 2, "2 rows per pass on a CPU (512 tokens)"),
    ("sft-128", Hardware(cpu_count=2), "smollm2", 4, "4 x 128 tokens is a pass of the size"),
    ("sft", Hardware(cpu_count=2), "tiny", 4, "too little for extra passes to pay"),
    ("sft", Hardware(gpus=(A100_80GB,)), "smollm2", 4, "(GPU)"),
    ("dpo", Hardware(cpu_count=2), "smollm2", 4, "computes its loss over the whole batch"),
    ("kto", Hardware(cpu_count=2), "smollm2", 4, "computes its loss over the whole batch"),
])
def test_micro_batch_defaults_to_512_token_passes_on_a_cpu_where_activations_are_big(tiny, kind, hw, model, want,
                                                                                     why):
    name = tiny if model == "tiny" else "HuggingFaceTB/SmolLM2-135M-Instruct"
    kind, _, length = kind.partition("-")
    resolved, notes = resolve_defaults(cfg(training=kind, model={"name_or_path": name},
                                           train={"batch_size": 4, "max_length": int(length or 1024)}), hw)
    assert resolved.train.micro_batch_size == want
    (note,) = [n for n in notes if n.startswith(f"micro-batch {want} of 4 rows a step")]
    assert why in note


def test_explicit_micro_batch_is_kept():
    resolved, _ = resolve_defaults(cfg(train={"batch_size": 8, "micro_batch_size": 2}), Hardware(cpu_count=2))
    assert resolved.train.micro_batch_size == 2


@pytest.mark.parametrize("kind, micro, words", [
    ("sft", 3, "does not divide train.batch_size (4)"),
    ("dpo", 1, "for sft and cpt only"),
    ("grpo", 2, "for sft and cpt only"),
])
def test_micro_batch_that_would_change_the_step_is_refused_with_its_line(tmp_path, kind, micro, words):
    from ftwizard.core.config import load_config

    extra = "grpo: {rewards: [format]}\n" if kind == "grpo" else ""
    p = tmp_path / "c.yaml"
    p.write_text(f"training: {kind}\ndataset: {{path: d.jsonl}}\n{extra}train:\n  batch_size: 4\n"
                 f"  micro_batch_size: {micro}\n")
    with pytest.raises(UserError) as exc:
        load_config(p)
    (pr,) = [x for x in exc.value.problems if x.field == "train.micro_batch_size"]
    assert pr.line == 5 + bool(extra) and words in pr.message


def trained(run_dir):
    return [e for e in read_events(run_dir) if e["type"] == "train"]


@pytest.mark.slow
def test_one_row_passes_train_the_same_steps_as_whole_batches(tiny_config, start_run, wait_run):
    runs = {}
    for micro in (1, 4):
        # unpacked rows of different lengths: a pass-by-pass mean (not the batch's token mean) would differ
        run = start_run(tiny_config(steps=3, batch_size=4, micro_batch_size=micro, packing=False))
        end = wait_run(run, 300)
        assert end.state == "completed", (run / "train.log").read_text()[-2000:]
        runs[micro] = run
    one, whole = (trained(runs[m]) for m in (1, 4))
    assert [e["step"] for e in one] == [e["step"] for e in whole] == [1, 2, 3]
    for a, b in zip(one, whole):
        assert a["loss"] == pytest.approx(b["loss"], rel=REL), (a, b)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=REL), (a, b)
        # the tokens trained so far, whatever the data loader built ahead (a row, or a whole batch)
        assert a["tokens"] == b["tokens"], (a, b)
    probe = {m: next(e["value"] for e in read_events(runs[m]) if e["type"] == "info" and e["key"] == "first_step")
             for m in (1, 4)}
    assert probe[1]["micro_batches"] == 4 and probe[4]["micro_batches"] == 1


@pytest.mark.slow
def test_tokens_count_the_trained_batches_not_the_evaluation_ones(tiny_config, start_run, wait_run):
    """The `tokens` of each train event: evaluation batches go through the same collator, and used to be
    counted with the training ones."""
    runs = []
    for eval_steps in (1, 1000):
        run = start_run(tiny_config(steps=3, eval_steps=eval_steps, packing=False))
        assert wait_run(run, 300).state == "completed", (run / "train.log").read_text()[-2000:]
        runs.append(run)
    evaluated, plain = (trained(r) for r in runs)
    assert sum(e["type"] == "eval" for e in read_events(runs[0])) == 3
    assert [e["tokens"] for e in evaluated] == [e["tokens"] for e in plain]
