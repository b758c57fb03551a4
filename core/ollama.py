"""Ollama Modelfiles: the chat template translated to Ollama's Go TEMPLATE, stop tokens, parameters.

Ollama does not run the Jinja chat template stored in a GGUF: it renders the Modelfile's TEMPLATE, a
Go text/template over `.Messages`, and adds BOS itself when the GGUF says so. A TEMPLATE that differs
from the template the model was trained with is the most reported export bug (ollama #6823, #8363).
So the translation is per family, written out by hand below, and never trusted: `export.check`
renders it (core/gotemplate.py) and compares it with the tokenizer's own rendering.

Families translated: ChatML (SmolLM2, Qwen2/2.5, the tiny test model) and Llama 3. A default system
prompt that a template inserts when the conversation has none (SmolLM2's, Qwen's) becomes the
Modelfile's SYSTEM, which Ollama inserts the same way. Other templates are refused with the reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UserError

# One Go TEMPLATE per family: every message, then the assistant prompt (Ollama renders the whole
# conversation each turn, and the model's answer follows the template's last line).
GO_TEMPLATES = {
    "chatml": ("{{- range .Messages }}<|im_start|>{{ .Role }}\n"
               "{{ .Content }}<|im_end|>\n"
               "{{ end }}<|im_start|>assistant\n"),
    "llama3": ("{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n"
               "{{ .Content }}<|eot_id|>{{ end }}<|start_header_id|>assistant<|end_header_id|>\n\n"),
}
STOPS = {"chatml": ["<|im_end|>", "<|im_start|>"], "llama3": ["<|eot_id|>", "<|start_header_id|>"]}
# A default system turn the Jinja template writes when the conversation has none.
_DEFAULT_SYSTEM = {
    "chatml": re.compile(r"<\|im_start\|>system\n(.*?)<\|im_end\|>\n", re.S),
    "llama3": re.compile(r"<\|start_header_id\|>system<\|end_header_id\|>\n\n(.*?)<\|eot_id\|>", re.S),
}
# Probe conversation used to find a default system prompt (nothing a template could special-case).
_PROBE = [{"role": "user", "content": "ping"}]


def template_family(template: str | None) -> str | None:
    """The family of a Jinja chat template, from the tokens it writes."""
    if not template:
        return None
    if "<|im_start|>" in template and "<|im_end|>" in template:
        return "chatml"
    if "<|start_header_id|>" in template and "<|eot_id|>" in template:
        return "llama3"
    return None


def explain_unknown(template: str | None) -> str:
    if not template:
        return "the tokenizer has no chat template to translate"
    head = template.strip().replace("\n", " ")[:60]
    return (f"cannot translate this chat template to an Ollama TEMPLATE (known families: ChatML, Llama 3; "
            f"template starts '{head}'); export without --ollama and write the Modelfile by hand")


@dataclass
class Modelfile:
    from_: str
    template: str
    system: str | None = None
    parameters: list[tuple[str, str]] = field(default_factory=list)

    @property
    def stops(self) -> list[str]:
        return [_unquote(v) for k, v in self.parameters if k == "stop"]

    def text(self) -> str:
        lines = ["# Written by ftwizard export. Create the model with: ollama create NAME -f Modelfile",
                 f"FROM {self.from_}", f'TEMPLATE """{self.template}"""']
        if self.system is not None:
            lines.append(f'SYSTEM """{self.system}"""')
        lines += [f"PARAMETER {k} {v}" for k, v in self.parameters]
        return "\n".join(lines) + "\n"


def _unquote(v: str) -> str:
    v = v.strip()
    if len(v) >= 2 and v[0] == v[-1] == '"':
        return v[1:-1].encode("utf-8").decode("unicode_escape")
    return v


def default_system(tokenizer, template: str, fam: str) -> str | None:
    """The system prompt `template` writes when a conversation has none (None when it writes none)."""
    text = tokenizer.apply_chat_template(_PROBE, chat_template=template, tokenize=False)
    bos = tokenizer.bos_token or ""
    if bos and text.startswith(bos):
        text = text[len(bos):]
    m = _DEFAULT_SYSTEM[fam].match(text)
    return m.group(1) if m else None


def build_modelfile(tokenizer, template: str | None, gguf_name: str, *, temperature: float | None = None,
                    top_p: float | None = None, num_ctx: int | None = None) -> Modelfile:
    """A Modelfile for `gguf_name` (a path relative to the Modelfile). UserError for unknown templates."""
    fam = template_family(template)
    if fam is None:
        raise UserError(explain_unknown(template), field="--ollama")
    system = default_system(tokenizer, template, fam)
    if system is not None and '"""' in system:
        raise UserError('the default system prompt contains """, which a Modelfile cannot quote', field="--ollama")
    params: list[tuple[str, str]] = []
    stops = list(STOPS[fam])
    eos = tokenizer.eos_token
    if eos and eos not in stops:
        stops.insert(0, eos)
    params += [("stop", f'"{s}"') for s in stops]
    if temperature is not None:
        params.append(("temperature", f"{temperature:g}"))
    if top_p is not None:
        params.append(("top_p", f"{top_p:g}"))
    if num_ctx:
        params.append(("num_ctx", str(num_ctx)))
    return Modelfile(from_=f"./{gguf_name}", template=GO_TEMPLATES[fam], system=system, parameters=params)


_TRIPLE = re.compile(r'^(TEMPLATE|SYSTEM|LICENSE|MESSAGE)\s+"""(.*?)"""\s*$', re.S | re.M)


def parse_modelfile(path: Path) -> Modelfile:
    """Read back FROM, TEMPLATE, SYSTEM and PARAMETER lines of a Modelfile (what the check needs)."""
    text = Path(path).read_text(encoding="utf-8")
    blocks = {m.group(1): m.group(2) for m in _TRIPLE.finditer(text)}
    rest = _TRIPLE.sub("", text)
    from_, params = None, []
    for line in rest.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, value = line.partition(" ")
        word = word.upper()
        if word == "FROM":
            from_ = value.strip()
        elif word == "PARAMETER":
            k, _, v = value.strip().partition(" ")
            params.append((k, v.strip()))
        elif word in ("TEMPLATE", "SYSTEM"):
            blocks[word] = _unquote(value)
    if from_ is None or "TEMPLATE" not in blocks:
        raise UserError("a Modelfile needs FROM and TEMPLATE", file=str(path), field="Modelfile")
    return Modelfile(from_=from_, template=blocks["TEMPLATE"], system=blocks.get("SYSTEM"), parameters=params)


def render(mf: Modelfile, messages: list[dict]) -> str:
    """The prompt Ollama builds for `messages` (role/content dicts): SYSTEM first when the conversation
    has no system message, then the TEMPLATE over `.Messages`. BOS is not included (the runtime adds it)."""
    from .gotemplate import render as go_render

    msgs = [{"Role": m["role"], "Content": m["content"]} for m in messages]
    if mf.system is not None and not any(m["Role"] == "system" for m in msgs):
        msgs.insert(0, {"Role": "system", "Content": mf.system})
    system = next((m["Content"] for m in msgs if m["Role"] == "system"), "")
    prompt = next((m["Content"] for m in reversed(msgs) if m["Role"] == "user"), "")
    data = {"Messages": msgs, "System": system, "Prompt": prompt, "Response": "", "Tools": [],
            "Think": False, "ThinkLevel": "", "IsThinkSet": False}
    return go_render(mf.template, data)
