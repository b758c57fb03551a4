"""Chat templates ftwizard knows, with `{% generation %}` markers for assistant-only loss.

TRL's `assistant_only_loss` asks the tokenizer for an assistant mask, which only templates carrying
`{% generation %}...{% endgeneration %}` around the assistant's turn can give. Most hub templates
(SmolLM2's, Qwen's, Llama 3's) have none, so training on completions silently trains on everything or
refuses. ftwizard recognises the family of a tokenizer's template and swaps in an equivalent one with
the markers; the rendered text is byte-for-byte the same for conversations without tools.

transformers renders with trim_blocks and lstrip_blocks: newlines are written inside `{{ }}`.
"""

from __future__ import annotations

CHATML = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['role'] == 'assistant' -%}"
    "{% generation %}{{- message['content'] + '<|im_end|>' -}}{% endgeneration %}{{- '\\n' -}}"
    "{%- else -%}"
    "{{- message['content'] + '<|im_end|>' + '\\n' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)

LLAMA3 = (
    "{{- bos_token -}}"
    "{%- for message in messages -%}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' -}}"
    "{%- if message['role'] == 'assistant' -%}"
    "{% generation %}{{- message['content'] | trim + '<|eot_id|>' -}}{% endgeneration %}"
    "{%- else -%}"
    "{{- message['content'] | trim + '<|eot_id|>' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}{%- endif -%}"
)

BUILTIN = {"chatml": CHATML, "llama3": LLAMA3}
# The token that ends an assistant turn in each family (it must be the tokenizer's EOS for generation
# to stop: the classic "endless output" bug).
END_OF_TURN = {"chatml": "<|im_end|>", "llama3": "<|eot_id|>"}


def has_generation_markers(template: str | None) -> bool:
    return bool(template) and "{% generation %}" in template.replace("{%- generation %}", "{% generation %}")


def family(template: str | None) -> str | None:
    """Which known family a template belongs to, from its special tokens."""
    if not template:
        return None
    if "<|im_start|>" in template:
        return "chatml"
    if "<|start_header_id|>" in template:
        return "llama3"
    return None


def choose_template(tokenizer_template: str | None, requested: str | None,
                    need_markers: bool) -> tuple[str | None, str]:
    """Pick the template to train with. Returns (template, why)."""
    if requested:
        if requested in BUILTIN:
            return BUILTIN[requested], f"built-in {requested} template (config model.chat_template)"
        return requested, "template from config model.chat_template"
    if tokenizer_template and (not need_markers or has_generation_markers(tokenizer_template)):
        return tokenizer_template, "the tokenizer's own chat template"
    fam = family(tokenizer_template)
    if fam:
        return BUILTIN[fam], (f"the tokenizer's {fam} template, re-written with generation markers so that "
                              "only assistant tokens carry loss")
    if tokenizer_template:
        return tokenizer_template, "the tokenizer's own chat template (no generation markers: unknown family)"
    return CHATML, "no chat template in the tokenizer: ChatML"
