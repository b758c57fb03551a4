"""The Go text/template subset that renders Ollama TEMPLATEs, and the Modelfile writer/reader: no model."""

from __future__ import annotations

import pytest

from ftwizard.core.gotemplate import TemplateError, render

MSGS = [{"Role": "system", "Content": "S"}, {"Role": "user", "Content": "hi"},
        {"Role": "assistant", "Content": "yo"}, {"Role": "user", "Content": "q2"}]
CHATML_TEXT = ("<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nyo"
               "<|im_end|>\n<|im_start|>user\nq2<|im_end|>\n<|im_start|>assistant\n")

# Ollama's own library template for Qwen 2.5 (without tools): $last, slice, len, and, not.
OLLAMA_QWEN = """{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 -}}
<|im_start|>{{ .Role }}
{{ .Content }}{{ if not $last }}<|im_end|>
{{ end }}
{{- if and (eq .Role "user") $last }}<|im_end|>
<|im_start|>assistant
{{ end }}
{{- end }}"""


def test_ftwizard_chatml_template_renders_a_two_turn_conversation():
    from ftwizard.core.ollama import GO_TEMPLATES

    assert render(GO_TEMPLATES["chatml"], {"Messages": MSGS}) == CHATML_TEXT


def test_ollama_library_style_template_with_variables_and_functions_renders_the_same():
    assert render(OLLAMA_QWEN, {"Messages": MSGS}) == CHATML_TEXT


def test_trim_markers_if_else_chains_pipelines_and_with():
    t = '{{ if eq .R "user" }}U{{ else if eq .R "x" }}X{{ else }}O{{ end }}|{{ .R | len }}|{{- "  a" -}}  |{{ with .M }}{{ . }}{{ end }}'
    assert render(t, {"R": "sys", "M": "m"}) == "O|3|  a|m"
    assert render(t, {"R": "user", "M": ""}) == "U|4|  a|"


def test_unsupported_or_broken_templates_are_refused_not_rendered_wrongly():
    with pytest.raises(TemplateError, match="not supported"):
        render('{{ template "x" . }}', {})
    with pytest.raises(TemplateError, match="without"):
        render("{{ if .A }}x", {"A": 1})
    with pytest.raises(TemplateError, match="unknown function"):
        render("{{ json .A }}", {"A": 1})
    with pytest.raises(TemplateError, match="no field"):
        render("{{ .Nope }}", {"A": 1})


def test_modelfile_round_trips_through_its_text(tmp_path):
    from ftwizard.core.ollama import GO_TEMPLATES, Modelfile, parse_modelfile, render as ollama_render

    mf = Modelfile(from_="./m.gguf", template=GO_TEMPLATES["chatml"], system="Be brief.",
                   parameters=[("stop", '"<|im_end|>"'), ("temperature", "0.7")])
    (tmp_path / "Modelfile").write_text(mf.text())
    back = parse_modelfile(tmp_path / "Modelfile")
    assert (back.from_, back.template, back.system, back.stops) == ("./m.gguf", mf.template, "Be brief.", ["<|im_end|>"])
    # SYSTEM is inserted as Ollama does when the conversation has no system message
    got = ollama_render(back, [{"role": "user", "content": "hi"}])
    assert got == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_first_difference_names_the_character_and_its_context():
    from ftwizard.core.export import first_difference

    msg = first_difference("<|im_start|>user\nhi", "<|im_start|>user hi")
    assert msg.startswith("first difference at character 16: expected '\\n'") and "got ' '" in msg
    assert "character 3" in first_difference("abc", "abcd")


def test_export_modules_import_no_ml_library():
    from test_import_hygiene import HEAVY, loaded_after

    mods = loaded_after("import ftwizard.core.export, ftwizard.core.gguf, ftwizard.core.ollama, "
                        "ftwizard.core.push, ftwizard.core.gotemplate")
    assert not mods & set(HEAVY + ("textual", "huggingface_hub", "gguf")), mods & set(HEAVY)
