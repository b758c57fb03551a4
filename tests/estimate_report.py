"""Estimate vs measured peak over the runs a test session made (read from the session's run registry)."""

from __future__ import annotations

from pathlib import Path


def report_lines(registry: Path) -> list[str]:
    from ftwizard.core.estimate import ESTIMATE_TOLERANCE
    from ftwizard.core.events import RunFold, read_events

    try:
        dirs = [Path(line) for line in registry.read_text(encoding="utf-8").splitlines() if line.strip()]
    except OSError:
        return []
    rows, exceeded = [], []
    for d in dirs:
        if not d.is_dir():
            continue
        events = read_events(d)
        fold = RunFold()
        fold.apply(events)
        if fold.estimate_gib and fold.peak_gib:
            rows.append((fold.peak_gib / fold.estimate_gib, d.name, fold.peak_gib, fold.estimate_gib))
        if any(e.get("type") == "warning" and e.get("code") == "estimate-exceeded" for e in events):
            exceeded.append(d.name)
    if not rows:
        return []
    rows.sort()
    out = [f"{len(rows)} runs with an estimate: measured/estimated peak from {rows[0][0]:.2f} to {rows[-1][0]:.2f} "
           f"(tolerance: at most {1 + ESTIMATE_TOLERANCE:.2f}); median {rows[len(rows) // 2][0]:.2f}"]
    for ratio, name, peak, est in rows[-3:]:
        out.append(f"  highest: {name}: peak {peak:.2f} GiB, estimate {est:.2f} GiB ({ratio:.2f})")
    out += [f"  estimate-exceeded warning in {name}" for name in exceeded]
    return out
