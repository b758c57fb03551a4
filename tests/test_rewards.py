"""core/rewards.py: the built-in rewards on hand-written completions, a user's reward file loaded by path,
and the code reward's sandbox refusing code that loops, allocates without bound or spawns processes."""

from __future__ import annotations

import pytest

from ftwizard.core.config import GrpoConfig
from ftwizard.core.errors import UserError
from ftwizard.core.rewards import (check_on_row, code_reward, code_sandbox, exact_match, format_match, json_valid,
                                   length_penalty, load_user_reward, numeric_match, reward_functions)

FORMAT = GrpoConfig().format_pattern


def test_exact_and_numeric_match_read_the_answer_tag_or_the_whole_text():
    comps = ["<think>2+3</think><answer>5</answer>", "it is 5", "<answer> 5.0000001 </answer>", "six"]
    assert exact_match("answer")(None, comps, answer=["5"] * 4) == [1.0, 0.0, 0.0, 0.0]
    assert numeric_match("answer", 1e-6)(None, comps, answer=["5"] * 4) == [1.0, 1.0, 1.0, 0.0]
    assert numeric_match("answer", 0.0)(None, ["1,234"], answer=["1234"]) == [1.0]


def test_format_json_and_length_rewards():
    fmt = format_match(FORMAT)
    assert fmt(None, ["<think>x</think>\n<answer>1</answer>", "<answer>1</answer>"]) == [1.0, 0.0]
    assert json_valid()(None, ['{"a": 1}', "<answer>[1, 2]</answer>", "{a: 1}"]) == [1.0, 1.0, 0.0]
    assert length_penalty(10)(None, ["x", "y"], completion_ids=[[1] * 5, [1] * 20]) == [-0.5, -1.0]


def test_conversational_completions_are_scored_on_the_last_message():
    comps = [[{"role": "assistant", "content": "<answer>7</answer>"}]]
    assert exact_match("answer")(None, comps, answer=["7"]) == [1.0]


def test_a_user_reward_file_is_loaded_by_path(tmp_path):
    (tmp_path / "r.py").write_text("def score(prompts, completions, **kw):\n    return [len(c) for c in completions]\n")
    fn = load_user_reward(f"{tmp_path / 'r.py'}:score")
    assert fn(prompts=["p", "p"], completions=["ab", "c"]) == [2, 1]
    with pytest.raises(UserError, match="has no function 'nope'"):
        load_user_reward(f"{tmp_path / 'r.py'}:nope")
    with pytest.raises(UserError, match="neither a built-in"):
        load_user_reward("not_a_reward")


def test_check_on_row_refuses_a_reward_that_fails_or_returns_non_numbers(tmp_path):
    (tmp_path / "bad.py").write_text("def boom(prompts, completions, **kw):\n    return [kw['missing']] * 2\n"
                                     "def text(prompts, completions, **kw):\n    return ['high', 'low']\n")
    row = {"prompt": "what is one plus one", "answer": "2"}
    with pytest.raises(UserError, match="fails on the first row: KeyError"):
        check_on_row(GrpoConfig(rewards=[f"{tmp_path / 'bad.py'}:boom"]), row)
    with pytest.raises(UserError, match="returned 'high'"):
        check_on_row(GrpoConfig(rewards=[f"{tmp_path / 'bad.py'}:text"]), row)
    check_on_row(GrpoConfig(rewards=["numeric_match", "format", "length_penalty"]), row)  # built-ins pass


# ---------------------------------------------------------------------------------------- code

TESTS = "assert add(2, 3) == 5\nassert add(-1, 1) == 0\n"


def score(completion: str, tests: str = TESTS, timeout_s: int = 2) -> float:
    return code_reward("tests", timeout_s)(None, [completion], tests=[tests])[0]


def test_the_code_reward_scores_correct_code_one_and_wrong_code_zero():
    good = "Here:\n```python\ndef add(a, b):\n    return a + b\n```\n"
    assert score(good) == 1.0
    assert score("```python\ndef add(a, b):\n    return a - b\n```") == 0.0
    assert score("def add(a, b) return") == 0.0  # a syntax error


def test_the_code_reward_refuses_code_that_loops_forever():
    assert score("def add(a, b):\n    while True:\n        pass\n", timeout_s=1) == 0.0


def test_the_code_reward_refuses_code_that_allocates_without_bound():
    hog = "x = []\nwhile True:\n    x.append(bytearray(50 * 1024 * 1024))\ndef add(a, b):\n    return a + b\n"
    assert score(hog, timeout_s=5) == 0.0


def test_the_code_reward_refuses_code_that_spawns_processes():
    fork = "import os\npid = os.fork()\nif pid == 0:\n    os._exit(0)\ndef add(a, b):\n    return a + b\n"
    spawn = ("import subprocess, sys\nsubprocess.run([sys.executable, '-c', 'pass'], check=True)\n"
             "def add(a, b):\n    return a + b\n")
    assert score(fork) == 0.0
    assert score(spawn) == 0.0
    # the same code without the spawn passes: it is the new process that was refused
    assert score("import os\ndef add(a, b):\n    return a + b\n") == 1.0


def test_the_code_reward_has_no_network_where_the_os_allows(tmp_path):
    if not code_sandbox():
        pytest.skip("unshare cannot make a network namespace here")
    # (as root the child runs as nobody, who may not even import socket: that counts as no network too)
    probe = ("try:\n    import socket\n    s = socket.socket()\n    s.settimeout(2)\n    s.connect(('1.1.1.1', 53))\n"
             "    ok = True\nexcept Exception:\n    ok = False\nassert not ok\ndef add(a, b):\n    return a + b\n")
    assert score(probe) == 1.0  # no way out


def test_the_code_reward_runs_only_when_the_config_names_it():
    names = [f.__name__ for f in reward_functions(GrpoConfig(rewards=["numeric_match", "format"]))]
    assert names == ["numeric_match", "format"]
