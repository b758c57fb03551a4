"""A tiny Llama model and tokenizer built offline in well under a second.

Used by `ftwizard selftest` ("can this machine train?") and by the test fixtures: a byte-level BPE
tokenizer trained with `tokenizers` on a small built-in corpus, a ChatML chat template with generation
markers, and a 2-layer Llama with hidden size 64. Both are saved with `save_pretrained` and load back
with `from_pretrained` exactly like a hub model, so every code path a real model takes is exercised.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from .templates import CHATML

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"]

_WORDS = (
    "the a an of to in is are was be it that this for on with as by at from or and not but what which "
    "how why when where who you your we our they their model data train training fine tune answer "
    "question user assistant system please help thanks sure here one two three four five six seven "
    "eight nine ten plus minus times equals number result because so then first second next last "
    "hello world python file line error value key list table row column token loss learning rate step"
).split()


def corpus(n: int = 400, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    lines = [" ".join(rng.choice(_WORDS) for _ in range(rng.randint(4, 16))) for _ in range(n)]
    lines += [arith_question(a, b)[0] + " " + arith_question(a, b)[1] for a in range(10) for b in range(10)]
    lines.append("".join(chr(c) for c in range(32, 127)))
    return lines


_NUM = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen " \
       "sixteen seventeen eighteen".split()


def arith_question(a: int, b: int) -> tuple[str, str]:
    return f"What is {_NUM[a]} plus {_NUM[b]}?", f"{_NUM[a]} plus {_NUM[b]} equals {_NUM[a + b]}."


def chat_rows(n: int = 64, seed: int = 0) -> list[dict]:
    """A small, learnable chat dataset (OpenAI messages format)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        q, a = arith_question(rng.randint(0, 9), rng.randint(0, 9))
        rows.append({"messages": [
            {"role": "system", "content": "You answer arithmetic in words."},
            {"role": "user", "content": q},
            {"role": "assistant", "content": a},
        ]})
    return rows


def write_jsonl(rows: list[dict], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    return path


def build_tokenizer(out_dir: str | Path, vocab_size: int = 512):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<pad>",
                                   bos_token=None, unk_token=None, model_max_length=2048)
    fast.chat_template = CHATML
    fast.save_pretrained(str(out_dir))
    return fast


def build_tiny_model(out_dir: str | Path, *, hidden: int = 64, layers: int = 2, seed: int = 0) -> Path:
    """Save a tiny Llama (config + random weights) and its tokenizer to `out_dir`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer(out_dir)
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=None,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(str(out_dir))
    return out_dir
