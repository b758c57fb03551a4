"""Chat with a run's tuned model in the terminal; --compare shows the base model's answer beside it.

With --prompt, answer once and exit (scripts); otherwise an interactive loop (empty line or Ctrl-D ends).
"""

from __future__ import annotations

import argparse

from . import add_run_arguments


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_arguments(p)
    p.add_argument("--prompt", help="one message; print the answer and exit")
    p.add_argument("--system", help="a system message")
    p.add_argument("--compare", action="store_true", help="also answer with the base model (adapters off)")
    p.add_argument("--max-new-tokens", type=int, default=200)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")


def run(args) -> int:
    from ..afterwards import generate, load_tuned
    from ..runs import resolve_run

    run_dir = resolve_run(args.run, args.runs_dir)
    print(f"loading {run_dir.name} ...", flush=True)
    tuned = load_tuned(run_dir)
    if args.compare and not tuned.is_adapter:
        print("(full fine-tune: the base model is not kept in memory; --compare shows the tuned model only)")
    history: list[dict] = [{"role": "system", "content": args.system}] if args.system else []

    def answer(text: str) -> None:
        msgs = history + [{"role": "user", "content": text}]
        reply = generate(tuned, msgs, max_new_tokens=args.max_new_tokens, temperature=args.temperature)
        if args.compare and tuned.is_adapter:
            base = generate(tuned, msgs, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                            base=True)
            print(f"base : {base}\ntuned: {reply}", flush=True)
        else:
            print(reply, flush=True)
        history.extend([{"role": "user", "content": text}, {"role": "assistant", "content": reply}])

    if args.prompt is not None:
        answer(args.prompt)
        return 0
    print("type a message; an empty line ends", flush=True)
    while True:
        try:
            text = input("> ").strip()
        except EOFError:
            break
        if not text:
            break
        answer(text)
    return 0
