"""ftwizard compare RUN RUN...: loss curves summarised side by side and config differences (issue 15,
item 8), on recorded run directories (the files a real run writes)."""

from __future__ import annotations

import json

import pytest

from recorded_runs import eval_at, loss_at, make_run


@pytest.fixture
def two_runs(tmp_path):
    a = make_run(tmp_path, "20261124-0100-a", steps=200, max_steps=200, method="lora")
    b = make_run(tmp_path, "20261124-0200-b", steps=120, max_steps=300, method="qlora", state="stopped")
    return a, b


def test_compare_summarises_both_curves_and_the_config_keys_that_differ(two_runs, capsys):
    from ftwizard.core.cli import main

    a, b = two_runs
    assert main(["compare", str(a), str(b), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    ra, rb = res["runs"]
    assert (ra["state"], rb["state"]) == ("completed", "stopped")
    assert ra["steps"] == 200 and rb["steps"] == 120
    assert ra["train"]["first"] == loss_at(1) and ra["train"]["last"] == loss_at(200)
    assert rb["eval"]["last"] == eval_at(100) and ra["eval"]["best"] == min(eval_at(s) for s in (50, 100, 150, 200))
    diff = {d["key"]: d["values"] for d in res["config_diff"]}
    assert diff == {"method": ["lora", "qlora"], "train.max_steps": [200, 300]}


def test_compare_table_names_each_run_and_lists_the_differences(two_runs, capsys):
    from ftwizard.core.cli import main

    a, b = two_runs
    assert main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:2] == [f"run 1: {a.name}", f"run 2: {b.name}"]
    method = next(ln for ln in out if ln.startswith("method"))
    assert method.split() == ["method", "lora", "qlora"]
    assert any(ln.startswith("validation loss best") and "@200" in ln for ln in out)


def test_compare_needs_two_runs(two_runs, capsys):
    from ftwizard.core.cli import main

    assert main(["compare", str(two_runs[0])]) == 2
    assert "two runs or more" in capsys.readouterr().err
