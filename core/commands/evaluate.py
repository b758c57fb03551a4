"""Base vs tuned on held-out data: loss and perplexity (tokenized exactly as in training, only the
trained tokens count), a generation report on the validation prompts (exact match where the answers are
labels, otherwise the answers side by side with the reference), the forgetting check on general text,
and with --lm-eval, lm-evaluation-harness tasks (an optional extra: pip install 'ftwizard[lm-eval]').
Default data: the run's validation split. Everything is saved as evaluation.json in the run directory."""

from __future__ import annotations

import argparse
import json
import sys

from . import add_run_arguments


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_arguments(p)
    p.add_argument("--data", help="a dataset file to evaluate on instead of the validation split")
    p.add_argument("--max-rows", type=int, default=200, help="rows for the loss (default 200)")
    p.add_argument("--generations", type=int, default=20,
                   help="validation prompts to answer with both models (default 20; 0: none)")
    p.add_argument("--max-new-tokens", type=int, default=64, help="answer length in the generation report")
    p.add_argument("--no-forgetting", action="store_true", help="skip the general-text perplexity check")
    p.add_argument("--lm-eval", metavar="TASKS",
                   help="lm-evaluation-harness tasks, comma-separated: names, or local task .yaml files")
    p.add_argument("--lm-eval-limit", type=int, help="examples per lm-eval task (quick checks)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args) -> int:
    from ..afterwards import evaluate
    from ..runs import resolve_run

    def progress(msg: str) -> None:
        if not args.json:
            print(f"... {msg}", file=sys.stderr, flush=True)

    res = evaluate(resolve_run(args.run, args.runs_dir), args.data, max_rows=args.max_rows,
                   generations=args.generations, max_new_tokens=args.max_new_tokens,
                   forgetting=not args.no_forgetting, lm_eval_spec=args.lm_eval,
                   lm_eval_limit=args.lm_eval_limit, progress=progress)
    if args.json:
        print(json.dumps(res, ensure_ascii=False))
        return 0
    print("\n".join(report_lines(res)))
    return 0


def _cut(s: str, n: int) -> str:
    s = " ".join(str(s).split())
    return s if len(s) <= n else s[: n - 1] + "…"


def report_lines(res: dict, width: int = 100) -> list[str]:
    """The evaluation as text lines (also what the wizard's evaluate screen shows)."""
    out = [f"{res['rows']} rows of {res['data']}",
           f"  tuned: loss {res['tuned_loss']:.4f}  perplexity {res['tuned_ppl']:.2f}"]
    if res["base_loss"] is not None:
        out.append(f"  base : loss {res['base_loss']:.4f}  perplexity {res['base_ppl']:.2f}")
    gen = res.get("generation")
    if gen and gen["rows"]:
        if gen["mode"] == "exact_match":
            base = f", base {gen['base_exact_match']:.0%}" if "base_exact_match" in gen else ""
            out.append(f"exact match on {len(gen['rows'])} label-like answers: tuned {gen['tuned_exact_match']:.0%}"
                       + base)
        else:
            out.append(f"answers to {len(gen['rows'])} validation prompts (reference / base / tuned):")
        w = width - 12
        for r in gen["rows"][:5 if gen["mode"] == "exact_match" else len(gen["rows"])]:
            out.append(f"  prompt    {_cut(r['prompt'], w)}")
            out.append(f"  reference {_cut(r['reference'], w)}")
            if "base" in r:
                out.append(f"  base      {_cut(r['base'], w)}")
            out.append(f"  tuned     {_cut(r['tuned'], w)}")
    f = res.get("forgetting")
    if f:
        out.append(f"general-text perplexity: base {f['base_ppl']:.2f}, tuned {f['tuned_ppl']:.2f} ({f['rise']:+.0%})")
        if f.get("warning"):
            out.append(f"  ⚠ {f['warning']}")
    table = res.get("lm_eval")
    if table:
        out.append(f"{'lm-eval task':<28} {'metric':<16} {'base':>8} {'tuned':>8}")
        for task, metrics in table.items():
            for metric, v in metrics.items():
                b = "-" if v["base"] is None else f"{v['base']:.4f}"
                t = "-" if v["tuned"] is None else f"{v['tuned']:.4f}"
                out.append(f"{_cut(task, 28):<28} {_cut(metric, 16):<16} {b:>8} {t:>8}")
    return out
