"""Loss and perplexity of the tuned model and of the base model on held-out data, tokenized exactly
as in training (only the trained tokens count). Default data: the run's validation split."""

from __future__ import annotations

import argparse
import json

from . import add_run_arguments


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_arguments(p)
    p.add_argument("--data", help="a dataset file to evaluate on instead of the validation split")
    p.add_argument("--max-rows", type=int, default=200, help="rows to evaluate (default 200)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args) -> int:
    from ..afterwards import evaluate
    from ..runs import resolve_run

    res = evaluate(resolve_run(args.run, args.runs_dir), args.data, max_rows=args.max_rows)
    if args.json:
        print(json.dumps(res))
        return 0
    print(f"{res['rows']} rows of {res['data']}")
    print(f"  tuned: loss {res['tuned_loss']:.4f}  perplexity {res['tuned_ppl']:.2f}")
    if res["base_loss"] is not None:
        print(f"  base : loss {res['base_loss']:.4f}  perplexity {res['base_ppl']:.2f}")
    return 0
