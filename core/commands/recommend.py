"""Should you fine-tune? Prompting, RAG or fine-tuning, the training kind, and (with --model and
--vram-gb) full / LoRA / QLoRA, each reason with the guidance it follows.

FILE is YAML with the questionnaire's keys:
  goal: knowledge | behavior | task | domain | alignment
  facts_change_often: true | false
  needs_citations: true | false
  prompting_tried: not-yet | works | inconsistent
  examples: 800            # good examples available
  data_kind: pairs | preferences | binary-feedback | reward-function | raw-text
  latency_or_cost_critical: true | false
"""

from __future__ import annotations

import argparse
import json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("--answers", required=True, metavar="FILE", help="YAML file with the answers")
    p.add_argument("--model", metavar="M", help="catalog name, hub id or directory (to choose the method)")
    p.add_argument("--vram-gb", type=float, metavar="X", help="GPU memory per GPU in GiB (to choose the method)")
    p.add_argument("--gpus", type=int, default=1, metavar="N", help="GPUs (default 1)")
    p.add_argument("--seq-len", type=int, default=1024, metavar="N", help="sequence length for the method check")
    p.add_argument("--batch-size", type=int, default=4, metavar="B", help="batch size for the method check")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args) -> int:
    from ..errors import UserError
    from ..estimate import Settings
    from ..recommend import load_answers, recommend

    if args.vram_gb is not None and args.vram_gb <= 0:
        raise UserError(f"must be positive, got {args.vram_gb}", field="--vram-gb")
    if args.gpus < 1:
        raise UserError(f"must be at least 1, got {args.gpus}", field="--gpus")
    answers = load_answers(args.answers)
    rec = recommend(answers, model=args.model, vram_gb=args.vram_gb, gpus=args.gpus,
                    settings=Settings(seq_len=args.seq_len, batch_size=args.batch_size))
    if args.json:
        print(json.dumps(rec.to_json()))
        return 0
    head = rec.approach + (f" · {rec.training.upper()}" if rec.training else "") + \
        (f" · {rec.method}" if rec.method else "")
    print(f"Recommendation: {head}")
    for r in rec.reasons:
        print(f"  · {r}")
    if rec.settings:
        print("Settings: " + ", ".join(f"{k} {v}" for k, v in rec.settings.items())
              + f"  ({rec.proposal.estimate.total_gib:.1f} GiB, {rec.proposal.verdict})")
    if rec.instead:
        print(f"Instead: {rec.instead}")
    if rec.method_choice is not None:
        for m, est, verdict in rec.method_choice.rows:
            mark = ">" if m == rec.method else " "
            print(f"  {mark} {m:6} {est.total_gib:7.1f} GiB  {verdict}")
    return 0
