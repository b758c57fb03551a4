"""The estimator examples in README.md and docs/estimator.md are what the code prints today.

Each example sits between `<!-- estimate-example: ARGS -->` and `<!-- /estimate-example -->`; its
console block must equal `ftwizard estimate ARGS` rendered by the CLI's own `render` (two assumption
lines shown). Regenerate after an estimator change with `python tests/test_readme_examples.py --write`.
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FILES = [ROOT / "README.md", ROOT / "docs" / "estimator.md"]
BLOCK = re.compile(r"(<!-- estimate-example: (?P<args>[^>]*?) -->\n)(?P<body>.*?)(<!-- /estimate-example -->)", re.S)


def render_example(args: str) -> str:
    from ftwizard.core.catalog import resolve_arch
    from ftwizard.core.commands import estimate as cmd
    from ftwizard.core.estimate import NO_FIT, Settings, estimate, find_fitting

    p = argparse.ArgumentParser()
    cmd.add_arguments(p)
    a = p.parse_args(shlex.split(args))
    arch = resolve_arch(a.model)
    s = Settings(method=a.method, seq_len=a.seq_len, batch_size=a.batch_size, lora_rank=a.lora_rank,
                 gradient_checkpointing=a.gradient_checkpointing, optim=a.optim, attn=a.attn, precision=a.precision,
                 gpus=a.gpus, grad_accum=a.gradient_accumulation_steps, device=a.device)
    est = estimate(arch, s)
    prop = find_fitting(arch, a.vram_gb, s) if a.vram_gb and est.verdict(a.vram_gb) == NO_FIT else None
    out = cmd.render(arch, est, method=a.method, vram_gib=a.vram_gb, device=a.device, proposal=prop,
                     model_arg=a.model, assumptions=2)
    return f"```console\n$ ftwizard estimate {args}\n{out}\n```\n"


def examples(text: str):
    return [(m.group("args"), m.group("body")) for m in BLOCK.finditer(text)]


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_estimator_examples_are_what_the_code_prints(path):
    found = examples(path.read_text(encoding="utf-8"))
    assert found, f"no estimate-example block in {path.name}"
    for args, body in found:
        assert body == render_example(args), f"{path.name}: stale example for `{args}` (run {__file__} --write)"


def write() -> None:
    for path in FILES:
        text = path.read_text(encoding="utf-8")
        text = BLOCK.sub(lambda m: m.group(1) + render_example(m.group("args")) + m.group(4), text)
        path.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    if "--write" in sys.argv:
        write()
