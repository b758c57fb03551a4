"""What the terminal shows is the data as it is: inspect prints user data without rich markup or
:emoji: codes, JSON errors carry their real column, the header's row count agrees with the body, and
the follow display of a finished run ends at N/N."""

from __future__ import annotations

import json
import re
import subprocess
import sys

CLI = [sys.executable, "-m", "ftwizard.core.cli"]


def pair(i):
    return json.dumps({"prompt": f"[b]x[/b] :smile: {i}", "completion": f"a{i}"})


def test_inspect_prints_user_data_verbatim(tmp_path):
    # 100 good rows then a broken one on line 101: its problem line reads "d.jsonl:101:", and line 100's
    # neighbour "d.jsonl:100:" must never turn into rich's :100: emoji (seen as 💯)
    rows = [pair(i) for i in range(99)] + ['{"prompt": 5, "completion": "x"}', '{"prompt": [}']
    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(rows) + "\n")
    r = subprocess.run(CLI + ["inspect", str(data)], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    out = r.stdout
    assert "\N{HUNDRED POINTS SYMBOL}" not in out and "\N{SMILING FACE WITH OPEN MOUTH AND SMILING EYES}" not in out
    assert "d.jsonl:100:" in out and "d.jsonl:101:" in out
    assert "[b]x[/b] :smile: 0" in out  # a row's own text, markup and emoji codes as written
    # JSON errors carry the real column: '{"prompt": [}' fails at its 13th character
    assert re.search(r"d\.jsonl:101: not valid JSON: .* at column 13", out), out
    # the header's row count is the body's: used + skipped + bad
    header = int(re.search(r"· (\d+) rows ·", out).group(1))
    used, skipped, bad = map(int, re.search(r"(\d+) rows used \((\d+) skipped, (\d+) bad\)", out).groups())
    assert header == used + skipped + bad == 101


def test_train_reports_the_real_json_column_too(tmp_path, tiny_config):
    import yaml

    data = tmp_path / "d.json"
    body = ",\n".join(f' {{"text": "row {i}"}}' for i in range(30))
    data.write_text("[\n" + body + ',\n {"text": "a" "b"}\n]\n')
    cfg = tiny_config().model_dump(mode="json")
    cfg["dataset"]["path"] = str(data)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    r = subprocess.run(CLI + ["train", str(tmp_path / "c.yaml"), "--detach"], capture_output=True, text=True)
    assert r.returncode == 2
    assert "d.json:32: not valid JSON: Expecting ',' delimiter at column 15" in r.stderr, r.stderr


def test_follow_of_a_finished_run_ends_at_n_of_n(tmp_path, capsys):
    from recorded_runs import make_run

    from ftwizard.core.follow import follow

    run = make_run(tmp_path, "r1", state="completed", steps=24, max_steps=24, gpu=False)
    assert follow(run, poll_s=0) == 0
    out = capsys.readouterr().out
    assert "24/24" in out and "0/24" not in out.replace("24/24", ""), out
