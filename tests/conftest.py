"""Shared fixtures: a tiny Llama and tokenizer built offline once per session, its data, and helpers
to start a real detached run and wait for it. Nothing here mocks the trainer or the subprocess."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Tests never touch a model hub. Set before any test module is collected: huggingface_hub reads these
# when it is first imported, and some test modules import transformers at collection time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))  # tests/fakes.py, tests/shared_paths.py

from shared_paths import PEER_DEMO  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Tokenization and model caches in a temp dir: tests never read a developer's ~/.cache."""
    cache = tmp_path_factory.mktemp("ftwizard-cache")
    old = os.environ.get("FTWIZARD_CACHE")
    os.environ["FTWIZARD_CACHE"] = str(cache)
    yield cache
    if old is None:
        os.environ.pop("FTWIZARD_CACHE", None)
    else:
        os.environ["FTWIZARD_CACHE"] = old


_SESSION_REGISTRY: list[Path] = []  # the registry of every run directory this session made


def pytest_terminal_summary(terminalreporter):
    """Every run the session trained checks its estimate (issue 16): the launch estimate beside the
    measured peak (the trainer's peak RSS here), with the worst ratio; `estimate-exceeded` warnings, if
    any, are named. A report, not a test: tests/test_estimate_run.py asserts the bound on a real run."""
    from estimate_report import report_lines

    lines = report_lines(_SESSION_REGISTRY[0]) if _SESSION_REGISTRY else []
    if lines:
        terminalreporter.write_sep("-", "estimate vs measured peak (every run this session trained)")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session", autouse=True)
def _isolated_user_data(tmp_path_factory):
    """The user data dir (the run registry, the default runs root) and $FTWIZARD_RUNS_DIR in a temp dir,
    for this process and every subprocess it starts: tests never read or write a developer's
    ~/.local/share/ftwizard or list their runs."""
    base = tmp_path_factory.mktemp("user-data")
    saved = {k: os.environ.get(k) for k in ("XDG_DATA_HOME", "FTWIZARD_RUNS_DIR")}
    os.environ["XDG_DATA_HOME"] = str(base / "xdg-data")
    os.environ["FTWIZARD_RUNS_DIR"] = str(base / "runs")
    from ftwizard.core.runs import registry_path

    _SESSION_REGISTRY.append(registry_path())
    yield base
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def tiny_work(tmp_path_factory) -> Path:
    """A directory holding `tiny-model/` and `data/chat.jsonl`, built once per session."""
    from ftwizard.core.selftest import make_tiny_setup

    work = tmp_path_factory.mktemp("tiny")
    make_tiny_setup(work)
    return work


@pytest.fixture
def tiny_config(tiny_work, tmp_path):
    """A factory: `tiny_config(steps=.., method=.., **train_overrides)` -> RunConfig with runs in tmp_path."""
    from ftwizard.core.selftest import make_tiny_setup

    def make(**kw):
        cfg = make_tiny_setup(tiny_work, **kw)
        cfg.runs_dir = str(tmp_path / "runs")
        return cfg

    return make


@pytest.fixture
def start_run():
    """Create a run from a config, start it detached, return its directory."""
    from ftwizard.core.launch import create_run, start

    def go(cfg):
        run_dir = create_run(cfg)
        start(run_dir)
        return run_dir

    return go


@pytest.fixture
def wait_run():
    from ftwizard.core.selftest import wait_for_end

    return wait_for_end


@pytest.fixture
def peer_demo() -> Path:
    if not PEER_DEMO.is_dir():
        pytest.skip("../shared/datasets/peer-demo is not present")
    return PEER_DEMO
