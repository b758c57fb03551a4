"""Compare runs: their loss curves (training and validation) summarised side by side, and the config keys
whose values differ. Rebuilt from each run directory (events.jsonl folded by `monitor.view_from_events`,
config.yaml), so finished, stopped and running runs compare alike. `ftwizard compare` prints it; the runs
screen overlays the curves and shows the same difference table."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UserError


@dataclass
class Curves:
    run_id: str
    state: str
    train: list[tuple[float, float]] = field(default_factory=list)  # (step, loss)
    eval: list[tuple[float, float]] = field(default_factory=list)

    def summary(self) -> dict:
        def stats(pts):
            if not pts:
                return None
            best = min(pts, key=lambda p: p[1])
            return {"first": round(pts[0][1], 4), "last": round(pts[-1][1], 4), "best": round(best[1], 4),
                    "best_step": int(best[0]), "points": len(pts)}

        return {"run": self.run_id, "state": self.state, "steps": int(self.train[-1][0]) if self.train else 0,
                "train": stats(self.train), "eval": stats(self.eval)}


def load_curves(run_dir: str | Path) -> Curves:
    from .events import read_events
    from .monitor import view_from_events
    from .runs import run_info

    run_dir = Path(run_dir)
    view = view_from_events(read_events(run_dir))
    info = run_info(run_dir, fold=view)
    return Curves(run_dir.name, info.state, list(zip(view.train_loss.xs, view.train_loss.ys)),
                  list(zip(view.eval_series.xs, view.eval_series.ys)))


def flat_config(run_dir: str | Path) -> dict[str, Any]:
    """config.yaml of a run as {dotted.key: value} (lists and dicts below a key kept whole)."""
    from .config import read_yaml_file

    data, _ = read_yaml_file(Path(run_dir) / "config.yaml", "config")
    out: dict[str, Any] = {}

    def walk(d: dict, prefix: str) -> None:
        for k, v in d.items():
            if isinstance(v, dict) and v and all(isinstance(x, str) for x in v) and k not in ("columns",):
                walk(v, f"{prefix}{k}.")
            else:
                out[prefix + k] = v
    walk(data or {}, "")
    return out


# Keys that differ between any two runs and say nothing about the training itself.
IGNORED_KEYS = ("name", "runs_dir")


def config_diff(run_dirs: list[str | Path]) -> list[tuple[str, list[Any]]]:
    """(key, [value in each run]) for every config key whose values are not all the same."""
    flats = [flat_config(d) for d in run_dirs]
    keys: list[str] = []
    for f in flats:
        keys += [k for k in f if k not in keys]
    out = []
    for k in keys:
        if k in IGNORED_KEYS:
            continue
        values = [f.get(k) for f in flats]  # a key an older run's config lacks counts as null
        if any(v != values[0] for v in values[1:]):
            out.append((k, values))
    return out


def compare(run_dirs: list[str | Path]) -> dict:
    if len(run_dirs) < 2:
        raise UserError("compare needs two runs or more", field="RUN")
    curves = [load_curves(d) for d in run_dirs]
    return {"runs": [c.summary() for c in curves],
            "config_diff": [{"key": k, "values": v} for k, v in config_diff(run_dirs)]}


def fmt_value(v: Any, width: int = 18) -> str:
    s = "-" if v is None else (str(v).lower() if isinstance(v, bool) else str(v))
    return s if len(s) <= width else s[: width - 1] + "…"


def table_lines(res: dict, width: int = 18) -> list[str]:
    """The comparison as aligned text: the curve summary, then the configuration differences."""
    runs = res["runs"]
    key_w = 26
    lines = [f"run {i}: {r['run']}" for i, r in enumerate(runs, 1)]
    lines.append(f"{'':<{key_w}}" + "".join(f" {'run ' + str(i):<{width}}" for i in range(1, len(runs) + 1)))

    def row(label: str, cells: list[str]) -> None:
        lines.append(f"{label:<{key_w}}" + "".join(f" {c:<{width}}" for c in cells))

    row("state", [r["state"] for r in runs])
    row("steps", [str(r["steps"]) for r in runs])
    for kind, name in (("train", "train loss"), ("eval", "validation loss")):
        def cell(r, what):
            s = r[kind]
            if not s:
                return "-"
            return f"{s[what]:.4f}" + (f" @{s['best_step']}" if what == "best" else "")
        row(f"{name} first", [cell(r, "first") for r in runs])
        row(f"{name} last", [cell(r, "last") for r in runs])
        row(f"{name} best", [cell(r, "best") for r in runs])
    diff = res["config_diff"]
    lines.append("")
    if not diff:
        lines.append("configs: identical (apart from name and runs_dir)")
    else:
        lines.append(f"config differences ({len(diff)})")
        for d in diff:
            row(fmt_value(d["key"], key_w), [fmt_value(v, width) for v in d["values"]])
    return lines
