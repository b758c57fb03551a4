"""GRPO reward functions (config `grpo.rewards`): the built-ins, a user's `FILE.py:FUNCTION`, and the
code reward that runs a completion's code in a separate, limited process.

Every reward has TRL's signature `f(prompts, completions, **columns) -> list[float | None]`: one score
per completion; the dataset's other columns (e.g. `answer`, `tests`) arrive as keyword lists, one value
per completion. A completion is a string (plain prompts) or a list of messages (conversational).

    name             scores                                                      reads column
    exact_match      1.0 when the answer equals the column (stripped, case kept)  grpo.answer_column
    numeric_match    1.0 when the answer's last number is within grpo.tolerance   grpo.answer_column
    format           1.0 when the completion matches grpo.format_pattern          -
                     (default: <think>..</think><answer>..</answer>)
    json_valid       1.0 when the answer parses as JSON                           -
    length_penalty   -(completion tokens / grpo.max_completion_length), 0..-1     -
    code             1.0 when the completion's code passes the row's tests        grpo.tests_column
    FILE.py:FUNC     what your function returns (loaded by path)                  any

"The answer" is the text inside <answer>...</answer> when the completion has one, else the whole text.

The code reward (only when the config names `code`): each completion's code (the last ```python block,
else the whole text) followed by the row's tests runs in a fresh `sys.executable -I -S` (never a shell),
in a new temporary directory, with RLIMIT_CPU = grpo.code_timeout_s, RLIMIT_AS = CODE_MEMORY_BYTES,
RLIMIT_NPROC = 0 (no new processes: as root the child first drops to uid/gid 65534, since the kernel does
not enforce NPROC for root; the common stdlib modules are imported before, as nobody may not be able to
read this Python's files), RLIMIT_FSIZE, RLIMIT_NOFILE, and a wall-clock kill at 2x the time limit.
The network is cut with `unshare -n` (as root) or `unshare -rn` (a user namespace) when the OS allows
it (`code_sandbox()` says which); otherwise the code runs without that isolation. Passing = exit 0 -> 1.0;
anything else (an assertion, a timeout, a limit hit) -> 0.0.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

from .errors import UserError

BUILTINS = ("exact_match", "numeric_match", "format", "json_valid", "length_penalty", "code")
# What each built-in scores, in one line (the wizard's rewards step shows these; the module doc has more).
DESCRIPTIONS = {
    "exact_match": "1 if the answer equals the answer column",
    "numeric_match": "1 if its number is within tolerance",
    "format": "1 if it matches the format pattern",
    "json_valid": "1 if the answer parses as JSON",
    "length_penalty": "-(tokens / max completion length)",
    "code": "1 if its code passes the row's tests (sandboxed)",
}
CODE_MEMORY_BYTES = 512 * 1024 ** 2
_ANSWER = re.compile(r"(?s)<answer>(.*?)</answer>")
_NUMBER = re.compile(r"-?\d[\d,]*\.?\d*(?:[eE][-+]?\d+)?|-?\.\d+")
_CODE_BLOCK = re.compile(r"```(?:python|py)?\s*\n(.*?)```", re.S)


def text_of(completion: Any) -> str:
    """A completion's text: the string, or the last message's content (conversational)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content") or "")
    return str(completion)


def answer_of(text: str) -> str:
    m = _ANSWER.findall(text)
    return (m[-1] if m else text).strip()


def last_number(text: str) -> float | None:
    found = _NUMBER.findall(text)
    if not found:
        return None
    try:
        return float(found[-1].replace(",", ""))
    except ValueError:
        return None


def _named(name: str, fn: Callable) -> Callable:
    fn.__name__ = name  # TRL logs each reward as rewards/<__name__>/mean
    return fn


def _column(kw: dict, col: str, n: int, reward: str) -> list:
    if col not in kw:
        raise KeyError(f"reward '{reward}' reads the dataset column '{col}', which the rows do not have")
    values = kw[col]
    return list(values) if isinstance(values, (list, tuple)) else [values] * n


def exact_match(col: str) -> Callable:
    def reward(prompts, completions, **kw):
        gold = _column(kw, col, len(completions), "exact_match")
        return [1.0 if answer_of(text_of(c)) == str(g).strip() else 0.0 for c, g in zip(completions, gold)]
    return _named("exact_match", reward)


def numeric_match(col: str, tolerance: float) -> Callable:
    def reward(prompts, completions, **kw):
        gold = _column(kw, col, len(completions), "numeric_match")
        out = []
        for c, g in zip(completions, gold):
            got, want = last_number(answer_of(text_of(c))), last_number(str(g))
            out.append(1.0 if got is not None and want is not None and math.isclose(got, want, rel_tol=0,
                                                                                      abs_tol=tolerance) else 0.0)
        return out
    return _named("numeric_match", reward)


def format_match(pattern: str) -> Callable:
    rx = re.compile(pattern)

    def reward(prompts, completions, **kw):
        return [1.0 if rx.search(text_of(c)) else 0.0 for c in completions]
    return _named("format", reward)


def json_valid() -> Callable:
    def reward(prompts, completions, **kw):
        out = []
        for c in completions:
            try:
                json.loads(answer_of(text_of(c)))
                out.append(1.0)
            except ValueError:
                out.append(0.0)
        return out
    return _named("json_valid", reward)


def length_penalty(max_tokens: int) -> Callable:
    def reward(prompts, completions, completion_ids=None, **kw):
        if completion_ids is not None:
            sizes = [len(ids) for ids in completion_ids]
        else:  # about 4 characters a token
            sizes = [len(text_of(c)) / 4 for c in completions]
        return [-min(1.0, n / max_tokens) for n in sizes]
    return _named("length_penalty", reward)


# ------------------------------------------------------------------------------------------- code

_RUNNER = r"""
import os, resource, sys
cpu, mem = int(sys.argv[1]), int(sys.argv[2])
src = sys.stdin.read()
PRELOAD = "math cmath itertools functools collections heapq bisect re string json random typing dataclasses " \
          "fractions decimal statistics operator copy enum array datetime unittest"
resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
resource.setrlimit(resource.RLIMIT_NOFILE, (32, 32))
if os.geteuid() == 0:  # root ignores RLIMIT_NPROC: become nobody first, with the usual modules loaded
    for m in PRELOAD.split():  # (nobody may not read this Python's files)
        try:
            __import__(m)
        except ImportError:
            pass
    os.setgroups([]); os.setgid(65534); os.setuid(65534)
resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
del cpu, mem
g = {"__name__": "__main__"}
exec(compile(src, "<completion>", "exec"), g)
"""


def code_of(text: str) -> str:
    blocks = _CODE_BLOCK.findall(text)
    return blocks[-1] if blocks else text


@functools.cache
def code_sandbox() -> list[str]:
    """The command prefix that cuts the child's network: `unshare -n` as root, `unshare -rn` otherwise,
    or nothing where the OS refuses (then the code runs with the rlimits only)."""
    tool = shutil.which("unshare")
    if not tool:
        return []
    for flags in (["-n"] if os.geteuid() == 0 else []) + ["-rn"]:
        try:
            if subprocess.run([tool, flags, "true"], capture_output=True, timeout=10).returncode == 0:
                return [tool, flags]
        except (OSError, subprocess.TimeoutExpired):
            pass
    return []


def run_code(code: str, tests: str, timeout_s: int) -> bool:
    """True when `code` then `tests` run to exit 0 in the limited child process (see the module doc)."""
    with tempfile.TemporaryDirectory(prefix="ftwizard-code-") as tmp:
        os.chmod(tmp, 0o777)  # the child may run as nobody
        cmd = [*code_sandbox(), sys.executable, "-I", "-S", "-c", _RUNNER, str(timeout_s), str(CODE_MEMORY_BYTES)]
        try:
            p = subprocess.run(cmd, input=code + "\n\n" + (tests or ""), text=True, capture_output=True,
                               cwd=tmp, timeout=2 * timeout_s + 2, env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
        except subprocess.TimeoutExpired:
            return False
        return p.returncode == 0


def code_reward(col: str, timeout_s: int) -> Callable:
    def reward(prompts, completions, **kw):
        tests = _column(kw, col, len(completions), "code")
        return [1.0 if run_code(code_of(text_of(c)), str(t or ""), timeout_s) else 0.0
                for c, t in zip(completions, tests)]
    return _named("code", reward)


# --------------------------------------------------------------------------------------- loading


def load_user_reward(ref: str) -> Callable:
    """`FILE.py:FUNCTION` (an absolute path once the config is loaded) -> the function, its signature
    checked; an import error or a wrong signature is a one-line UserError."""
    path, _, name = ref.rpartition(":")
    if not path.endswith(".py") or not name:
        raise UserError(f"'{ref}' is neither a built-in ({', '.join(BUILTINS)}) nor FILE.py:FUNCTION",
                        field="grpo.rewards")
    if not Path(path).is_file():
        raise UserError(f"no such reward file: {path}", field="grpo.rewards")
    mod_name = "ftwizard_reward_" + re.sub(r"\W", "_", Path(path).stem)
    spec = importlib.util.spec_from_file_location(mod_name, path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # anything the user's file raises at import
        raise UserError(f"reward file {path} does not import: {type(exc).__name__}: {exc}",
                        field="grpo.rewards") from None
    fn = getattr(module, name, None)
    if not callable(fn):
        raise UserError(f"reward file {path} has no function '{name}'", field="grpo.rewards")
    check_signature(fn, ref)
    return fn


def check_signature(fn: Callable, ref: str) -> None:
    """TRL calls `fn(prompts=..., completions=..., completion_ids=..., <column>=..., ...)`: it must take
    prompts and completions by keyword and the rest as **kwargs."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return
    names = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    var_kw = any(p.kind == p.VAR_KEYWORD for p in params)
    missing = [n for n in ("prompts", "completions") if n not in names and not var_kw]
    if missing or not var_kw:
        raise UserError(f"reward '{ref}' has the signature {inspect.signature(fn)}; TRL calls it as "
                        "f(prompts, completions, **kwargs) (dataset columns arrive as keyword arguments)",
                        field="grpo.rewards")


def reward_functions(g) -> list[Callable]:
    """The functions `grpo.rewards` names, in order (g: config.GrpoConfig)."""
    out = []
    for ref in g.rewards:
        if ref == "exact_match":
            out.append(exact_match(g.answer_column))
        elif ref == "numeric_match":
            out.append(numeric_match(g.answer_column, g.tolerance))
        elif ref == "format":
            out.append(format_match(g.format_pattern))
        elif ref == "json_valid":
            out.append(json_valid())
        elif ref == "length_penalty":
            out.append(length_penalty(g.max_completion_length))
        elif ref == "code":
            out.append(code_reward(g.tests_column, g.code_timeout_s))
        else:
            out.append(load_user_reward(ref))
    return out


def reward_name(ref: str) -> str:
    return ref.rpartition(":")[2] if ":" in ref else ref


def check_on_row(g, row: dict, prompt_col: str = "prompt", where: str | None = None) -> None:
    """Load every reward and call it on one real row with two sample completions, as TRL will: an error,
    a wrong length or a non-number is a one-line UserError (made at run creation, not at step 1)."""
    fns = reward_functions(g)
    prompt = row.get(prompt_col)
    conversational = isinstance(prompt, list)
    samples = ["", "<think>sample</think><answer>0</answer>"]
    completions = [[{"role": "assistant", "content": s}] for s in samples] if conversational else samples
    columns = {k: [v, v] for k, v in row.items() if k != prompt_col}
    for ref, fn in zip(g.rewards, fns):
        try:
            out = fn(prompts=[prompt, prompt], completions=completions, completion_ids=[[], [0]],
                     trainer_state=None, **columns)
        except Exception as exc:
            raise UserError(f"reward '{ref}' fails on the first row{f' of {where}' if where else ''}: "
                            f"{type(exc).__name__}: {exc}", field="grpo.rewards") from None
        if not isinstance(out, (list, tuple)) or len(out) != 2:
            got = f"{len(out)} values" if isinstance(out, (list, tuple)) else type(out).__name__
            raise UserError(f"reward '{ref}' returned {got} for 2 completions: it must return one float (or None) "
                            "per completion", field="grpo.rewards")
        bad = [v for v in out if v is not None and not isinstance(v, (int, float))]
        if bad:
            raise UserError(f"reward '{ref}' returned {bad[0]!r}: each value must be a float or None",
                            field="grpo.rewards")
