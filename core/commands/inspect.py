"""Inspect a dataset: its format (and why), columns, first rows, statistics and every problem with its
line and a fix; with --model, the first row as the model sees it (trained tokens marked).

Exit codes: 0 no errors (warnings may be listed), 1 the dataset has errors training would refuse,
2 the source cannot be read as a dataset at all (one line: file:line: message).
"""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..data.formats import FORMATS
    from ..data.read import suffix_list

    p.add_argument("data", metavar="DATA", nargs="?",
                   help=f"a {suffix_list('/', '/')} file, a directory of them, or a hub id (with --config: its "
                   "dataset.path when not given)")
    p.add_argument("--config", metavar="FILE", help="check as this run config would train: its dataset, model, "
                   "chat template, max_length, training kind, columns and kto/grpo settings (flags given win)")
    p.add_argument("--model", help="model (local dir, pkg:NAME, .gguf file or hub id) whose tokenizer renders "
                   "the rows and counts tokens")
    p.add_argument("--chat-template", help="chatml, llama3 or a Jinja string (default: the tokenizer's, with "
                   "generation markers added for known families, as training does)")
    p.add_argument("--max-length", type=int, default=None, help="train.max_length to check against (default 1024)")
    p.add_argument("--format", default=None, help=f"force a format ({', '.join(FORMATS)})")
    p.add_argument("--column", action="append", default=[], metavar="OURS=YOURS",
                   help="map a column, e.g. --column instruction=question (repeatable)")
    p.add_argument("--all-tokens", action="store_true", help="train on every token (dataset.assistant_only_loss: false)")
    p.add_argument("--validation-path", help="a validation file to check for overlap with DATA")
    p.add_argument("--task", choices=["classification", "instruction", "reasoning", "domain"],
                   help="what you train for: sets the minimum row count checked")
    p.add_argument("--rows", type=int, default=5, help="rows to show (default 5; --json: 50)")
    p.add_argument("--row", type=int, default=1, help="which preview row to render with --model (1-based)")
    p.add_argument("--split", default=None, help="split of a hub dataset (default train)")
    p.add_argument("--quick", action="store_true", help="read only the first rows (no full scan): rows may be null")
    p.add_argument("--kind", choices=["sft", "dpo", "orpo", "simpo", "kto", "grpo", "cpt"], default=None,
                   help="show the rows as this training kind sees them, with its problems: dpo/orpo/simpo the prompt "
                   "with the chosen and rejected answers side by side (their tokens with --model), kto the label "
                   "balance; grpo each prompt as generation starts from it (the chat template with --model) and the "
                   "columns a reward receives; cpt (with --model) the first packed block of --max-length tokens, "
                   "and where documents join (default sft)")
    p.add_argument("--rewards", default=None, metavar="R1,R2",
                   help="--kind grpo: the rewards you will use (grpo.rewards), to check the columns they read")
    p.add_argument("--answer-column", default=None, help="--kind grpo: grpo.answer_column (default answer)")
    p.add_argument("--tests-column", default=None, help="--kind grpo: grpo.tests_column (default tests)")
    p.add_argument("--max-completion-length", type=int, default=None,
                   help="--kind grpo: grpo.max_completion_length; the prompt budget is --max-length minus it")
    p.add_argument("--kto-weights", default=None, metavar="DESIRABLE,UNDESIRABLE",
                   help="--kind kto: kto.desirable_weight,kto.undesirable_weight to check the balance against "
                   "(default 1,1)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


DEFAULTS = {"max_length": 1024, "format": "auto", "split": "train", "kind": "sft"}


def _settings(args) -> None:
    """Fill what the flags left unset from --config (as `ftwizard train` would read it), then the defaults."""
    from ..errors import UserError

    args.config_columns, args.gguf_file, args.max_rows, args.grpo, args.kto = {}, None, None, None, None
    if args.config:
        from ..config import load_config

        cfg = load_config(args.config)
        d = cfg.dataset
        given = {"data": d.path, "model": cfg.model.name_or_path, "chat_template": cfg.model.chat_template,
                 "max_length": cfg.train.max_length, "format": d.format, "split": d.split, "kind": cfg.training,
                 "validation_path": d.validation_path}
        for key, value in given.items():
            if getattr(args, key) is None:
                setattr(args, key, value)
        if not args.all_tokens:
            args.all_tokens = not d.assistant_only_loss
        args.config_columns, args.gguf_file, args.max_rows = dict(d.columns), cfg.model.gguf_file, d.max_rows
        args.grpo, args.kto = cfg.grpo, cfg.kto
    for key, value in DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if not args.data:
        raise UserError("give the dataset (DATA) or a run config (--config FILE)", field="DATA")


def _columns(pairs: list[str]) -> dict[str, str]:
    from ..errors import UserError

    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise UserError(f"--column expects OURS=YOURS, got {pair!r}", field="--column")
        k, v = pair.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def run(args) -> int:
    from ..data.preview import quick_preview, render_row
    from ..data.stats import scan_dataset

    _settings(args)
    columns = {**args.config_columns, **_columns(args.column)}
    n = args.rows if not args.json or args.rows != 5 else 50
    if args.kind == "grpo":  # prompt-only rows are no dataset format: their own view
        return _run_grpo(args, columns, n)
    prev = quick_preview(args.data, n=max(n, args.row), columns=columns, format=args.format, split=args.split)
    tok = template = why = None
    assistant_only = not args.all_tokens
    if args.model:
        from ..data.tokenize import load_tokenizer, setup_tokenizer

        tok = load_tokenizer(args.model, args.gguf_file)
        if args.kind == "cpt":  # raw text: the tokenizer's own EOS, no chat template (as the CPT recipe)
            why = "none: raw text"
        else:
            template, why = setup_tokenizer(tok, args.chat_template, assistant_only)
    report = None
    if not args.quick:
        show = sys.stderr.isatty()

        def progress(f: float) -> None:
            if show:
                print(f"\rscanning {args.data}: {f:4.0%}", end="", file=sys.stderr, flush=True)

        report = scan_dataset(args.data, tok, template, args.max_length, assistant_only, columns=columns,
                              format=args.format, split=args.split, validation_path=args.validation_path,
                              max_rows=args.max_rows,
                              task=args.task, progress=progress)
        if show:
            print("\r\033[K", end="", file=sys.stderr, flush=True)
    rendered = None
    block = None
    if args.kind == "cpt" and tok is not None:
        block = _cpt_block(args, prev, tok)
    elif tok is not None and prev.rows and args.kind in (None, "sft"):  # another kind: its own view below
        k = min(max(args.row, 1), len(prev.rows)) - 1
        try:
            rendered = render_row(prev.rows[k], tok, template, args.max_length, assistant_only, prev.detected)
        except Exception as exc:  # noqa: BLE001 - show why this row cannot render; the problems list has it too
            rendered = str(exc)
    kind = kind_view(args, prev.detected, tok, n) if args.kind not in ("sft", "cpt") else None
    problems = report.problems if report is not None else prev.problems
    if kind is not None:
        from ..data.kinds import scan_problems_for_kind
        from ..data.problems import by_severity

        prev.sft_note = None  # what SFT would do with this data is not news when another kind trains on it
        problems = by_severity(scan_problems_for_kind(problems, args.kind) + kind.pop("_problems"))
    rows = report.stats.rows if report is not None and report.stats.complete else prev.total_rows
    has_errors = any(p.severity == "error" for p in problems)
    if args.json:
        out = prev.to_json()
        out.update({"rows": rows, "preview": prev.rows[:n], "lines": prev.lines[:n],
                    "problems": [p.to_json() for p in problems],
                    "stats": report.stats.to_json() if report is not None else None,
                    "template": why, "rendered": rendered.to_json() if hasattr(rendered, "to_json") else rendered,
                    "kind": kind})
        if args.kind == "cpt":
            out["block"] = block
        print(json.dumps(out, ensure_ascii=False, default=str))
        return 1 if has_errors else 0
    _print_text(args, prev, rows, problems, report, rendered, why, n)
    if kind is not None:
        _print_kind(kind)
    if args.kind == "cpt":
        _print_block(block, args)
    return 1 if has_errors else 0


def kind_view(args, det, tok, n: int) -> dict:
    """`data/kinds.kind_report` as JSON (the rows in the shape --kind trains on, the first `n` rendered with
    TRL's token counts when a tokenizer is given; KTO: the label balance) plus its problems under
    `_problems`. Data of the wrong shape for the kind: UserError (exit 2)."""
    from ..data.kinds import kind_report

    dw, uw = _kto_weights(args.kto_weights) if args.kto_weights or args.kto is None else \
        (args.kto.desirable_weight, args.kto.undesirable_weight)
    rep = kind_report(args.data, args.kind, tokenizer=tok, max_length=args.max_length, split=args.split, n=n,
                      max_rows=args.max_rows,
                      det=det, desirable_weight=dw, undesirable_weight=uw)
    out = rep.to_json()
    out.pop("problems")
    out["_problems"] = rep.problems
    if rep.labels is None:
        out.pop("labels")
    else:
        one = [p for p in rep.problems if p.code == "one-label"]
        out["label_problem"] = one[0].message if one else None
    return out


def _kto_weights(text: str | None) -> tuple[float, float]:
    from ..errors import UserError

    if not text:
        return 1.0, 1.0
    try:
        d, u = (float(x) for x in text.split(","))
    except ValueError:
        raise UserError(f"--kto-weights expects DESIRABLE,UNDESIRABLE numbers, got {text!r}",
                        field="--kto-weights") from None
    return d, u


def grpo_config_of(args):
    """The grpo settings --kind grpo checks against (config.GrpoConfig's defaults for what is not given)."""
    from ..config import GrpoConfig
    from ..errors import UserError

    base = args.grpo.model_dump() if args.grpo is not None else {}  # --config's grpo section
    kw = {}
    if args.rewards is not None:
        kw["rewards"] = [r.strip() for r in args.rewards.split(",") if r.strip()]
    for key in ("answer_column", "tests_column", "max_completion_length"):
        if getattr(args, key) is not None:
            kw[key] = getattr(args, key)
    try:
        return GrpoConfig(**{**base, **kw})
    except Exception as exc:  # pydantic's ValidationError: one line
        raise UserError(f"--kind grpo settings: {exc.errors()[0]['msg'] if hasattr(exc, 'errors') else exc}",
                        field="--max-completion-length") from None


def _run_grpo(args, columns: dict, n: int) -> int:
    from ..data.kinds import grpo_report

    g = grpo_config_of(args)
    tok = why = None
    if args.model:
        from ..data.tokenize import load_tokenizer, setup_tokenizer

        tok = load_tokenizer(args.model, args.gguf_file)
        _, why = setup_tokenizer(tok, args.chat_template, True)
    rep = grpo_report(args.data, g, tokenizer=tok, max_length=args.max_length, columns=columns,
                      split=args.split, max_rows=n if args.quick else args.max_rows, n=n)
    has_errors = any(p.severity == "error" for p in rep.problems)
    if args.json:
        out = rep.to_json()
        out.update({"template": why, "rewards": list(g.rewards)})
        print(json.dumps({"kind": out, "rows": rep.rows, "problems": out.pop("problems")}, ensure_ascii=False,
                         default=str))
        return 1 if has_errors else 0
    _print_grpo(args, rep, g, why)
    return 1 if has_errors else 0


def _print_grpo(args, rep, g, why) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console(highlight=False, soft_wrap=True, markup=False, emoji=False)
    con.print(f"{args.data} · GRPO prompts · {rep.rows} rows · {len(rep.problems)} problems")
    reads = ", ".join(f"{r} reads '{c}'" for r, c in rep.reward_columns.items())
    con.print("  every reward receives: prompts, completions, " + (", ".join(rep.columns) or "no other column")
              + (f" · {reads}" if reads else "") + (f" · rewards: {', '.join(g.rewards)}" if g.rewards else ""))
    if rep.budget is not None:
        con.print(f"  prompt budget: {rep.budget} tokens (--max-length {args.max_length} - max completion length "
                  f"{g.max_completion_length}) · {rep.left_out} prompts over it · template: {why}")
    table = Table(show_edge=False, pad_edge=False, show_lines=True)
    table.add_column("line", justify="right")
    table.add_column("prompt as the model gets it", overflow="fold", max_width=56)
    table.add_column("columns a reward receives", overflow="fold", max_width=40)
    for item in rep.preview:
        tokens = item["prompt_tokens"]
        table.add_row(str(item["line"]), _short(item["prompt"], 400) + (f"  [{tokens} tokens]" if tokens is not None
                                                                         else ""),
                      "\n".join(f"{k}: {_short(v, 80)}" for k, v in item["columns"].items()))
    con.print(table)
    if rep.problems:
        con.print("\nProblems:")
        for p in rep.problems:
            con.print(f"  {p.severity}: {p}", markup=False)


def _print_kind(kind: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console(highlight=False, soft_wrap=True, markup=False, emoji=False)
    con.print(f"\n── as training: {kind['kind']} sees it · {kind['rows']} rows ──")
    if "labels" in kind:
        b = kind["labels"]
        total = max(1, b["desirable"] + b["undesirable"])
        con.print(f"  labels: {b['desirable']} desirable ({b['desirable'] / total:.0%}) · {b['undesirable']} "
                  f"undesirable ({b['undesirable'] / total:.0%})" + (f" · {kind['label_problem']}"
                                                                    if kind.get("label_problem") else ""))
    sides = [k for k in ("chosen", "rejected", "completion") if kind["preview"] and k in kind["preview"][0]]
    table = Table(show_edge=False, pad_edge=False, show_lines=True)
    for c in ["prompt", *sides] + (["label"] if "labels" in kind else []):
        table.add_column(c, overflow="fold", max_width=40)
    for item in kind["preview"]:
        def cell(k):
            tokens = item.get(f"{k}_tokens")
            return _short(item[k], 200) + (f"  [{tokens} tokens]" if tokens is not None else "")
        table.add_row(cell("prompt"), *(cell(k) for k in sides), *([str(item["label"])] if "labels" in kind else []))
    con.print(table)


def _cpt_block(args, prev, tok) -> dict | str:
    """The first CPT block as JSON: ids, the text of each piece between document joins, the EOS; or why not."""
    from ..data.corpus import first_block, text_format_problem

    err = text_format_problem(prev.detected, args.data)
    if err is not None:
        return str(err)
    b = first_block(args.data, tok, args.max_length, det=prev.detected, split=args.split)
    if b is None:
        return f"the whole dataset is shorter than one block of {args.max_length} tokens"
    cuts = [s for s in b.doc_starts if s > 0] + [len(b.input_ids)]
    pieces, start = [], 0
    for c in cuts:
        pieces.append(tok.decode(b.input_ids[start:c], skip_special_tokens=False))
        start = c
    return {**b.to_json(), "pieces": pieces, "eos_token": tok.eos_token,
            "documents_joined": len([s for s in b.doc_starts if s > 0])}


def _print_block(block, args) -> None:
    from rich.console import Console
    from rich.text import Text

    con = Console(highlight=False, soft_wrap=True, markup=False, emoji=False)
    if block is None:
        con.print("\n(--kind cpt: give --model to see the first packed block)")
        return
    if isinstance(block, str):
        con.print(f"\n── CPT block: cannot build: {block}")
        return
    con.print(f"\n── the first CPT block as the model sees it: {block['n_tokens']} tokens, every one trained; "
              f"documents joined after EOS {block['eos_token']!r} (shown ‖) ──")
    t = Text()
    for i, piece in enumerate(block["pieces"]):
        if i:
            t.append(" ‖ ", style="bold reverse")
        t.append(piece, style="bold green")
    con.print(t)
    con.print(f"── {block['documents_joined']} document joins in this block · blocks of --max-length "
              f"{args.max_length}; the corpus's last partial block is dropped")


def _short(v, width: int = 38) -> str:
    s = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
    s = " ".join(s.split())
    return s if len(s) <= width else s[: width - 1] + "…"


def _print_text(args, prev, rows, problems, report, rendered, why, n) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    # user data (paths, rows, problems) is printed as is: no rich markup, no :emoji: codes (d.jsonl:100:)
    con = Console(highlight=False, soft_wrap=True, markup=False, emoji=False)
    if report is not None and report.stats.complete:  # the body's rows: used + skipped + bad
        rows = report.stats.used_rows + report.stats.skipped_rows + report.stats.bad_rows
    con.print(Text.assemble((args.data, "bold"), f" · {prev.format}" + (f" ({prev.variant})" if prev.variant else "")
                            + f" · {rows if rows is not None else '?'} rows · {len(problems)} problems"))
    con.print(f"  why: {prev.evidence}")
    if prev.sft_note:
        con.print(f"  note: {prev.sft_note}")
    table = Table(show_edge=False, pad_edge=False)
    table.add_column("line", justify="right")
    cols = prev.columns[:4]
    for c in cols:
        table.add_column(c, overflow="ellipsis", no_wrap=True, max_width=max(12, 72 // max(1, len(cols))))
    for line, row in list(zip(prev.lines, prev.rows))[:n]:
        table.add_row(str(line), *(_short(row.get(c, "")) for c in cols))
    con.print(table)
    if report is not None:
        s = report.stats
        other = args.kind not in (None, "sft", "cpt", "grpo")  # the kind's own rows are counted below
        con.print(("  as training: sft reads them:" if other else "") + f"  {s.used_rows} rows used ({s.skipped_rows} skipped, {s.bad_rows} bad) · length in {s.unit}: "
                  f"min {s.min} · median {s.median} · p95 {s.p95} · max {s.max}"
                  + (f" · {s.tokens_per_epoch:,} tokens/epoch ({s.trained_tokens_per_epoch:,} trained) · "
                     f"{s.steps_per_epoch} steps/epoch at batch 4" if s.unit == "tokens" else ""))
        if s.roles:
            con.print("  roles: " + ", ".join(f"{k} {v}" for k, v in s.roles.items()))
    if rendered is not None:
        con.print(f"\n── row {args.row} as the model sees it ({why}) ──")
        if isinstance(rendered, str):
            con.print(f"  cannot render: {rendered}")
        else:
            t = Text()
            for seg, trained in rendered.segments:
                t.append(seg, style="bold green" if trained else "dim")
            if rendered.cut_text:
                t.append("✂" + rendered.cut_text[:200], style="strike dim")
            con.print(t)
            con.print(f"── {rendered.n_tokens} / {rendered.max_length} tokens · {rendered.n_trained} trained "
                      f"(bold) · EOS {rendered.eos_token!r} {'trained' if rendered.ends_with_eos else 'NOT trained'}"
                      + (" · truncated" if rendered.truncated else "") + (f" · {rendered.note}" if rendered.note else ""))
    if problems:
        con.print("\nProblems:")
        for p in problems:
            con.print(f"  {p.severity}: {p}", markup=False)
    sys.stdout.flush()
