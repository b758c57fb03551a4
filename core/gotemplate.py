"""A small interpreter for the Go `text/template` language, enough to render an Ollama TEMPLATE.

Ollama renders a Modelfile's TEMPLATE with Go's text/template; the round-trip check renders the one
ftwizard writes (or one a user edited) for a conversation and compares it with the tokenizer's own
rendering, here, without Ollama. Supported: text, `{{- ... -}}` whitespace trimming, comments,
`.Field`, `$.Field`, `.`, variables (`$x := ...`, `$x = ...`, `range $i, $m := ...`), string, number
and boolean literals, parentheses, pipelines into one function, `if`/`else if`/`else`, `range` (with
`else`), `with`, `end`, and the functions `eq ne lt le gt ge and or not len index slice print`.
Anything else raises `TemplateError` naming the action: an unsupported template is refused, not
rendered wrongly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any


class TemplateError(Exception):
    pass


@dataclass
class _Node:
    kind: str  # text | action | if | range | with
    text: str = ""
    expr: list = field(default_factory=list)  # tokens of the pipeline
    branches: list = field(default_factory=list)  # if: [(expr, body)], with else body as (None, body)
    body: list = field(default_factory=list)
    else_body: list | None = None
    decl: list = field(default_factory=list)  # range/assignment variable names
    assign: str | None = None  # ":=" or "="


_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.S)
_TOKEN = re.compile(r'\s*(?:("(?:[^"\\]|\\.)*")|(`[^`]*`)|(\(|\))|(:=|=|,|\|)|([^\s(),|=]+))')


def _lex(src: str) -> list[tuple[str, str]]:
    """[('text', s) | ('action', inner)] with Go's trim markers applied."""
    out: list[tuple[str, str]] = []
    pos = 0
    trim_next = False
    for m in _ACTION.finditer(src):
        text = src[pos:m.start()]
        if trim_next:
            text = text.lstrip(" \t\r\n")
        if m.group(1):
            text = text.rstrip(" \t\r\n")
        if text:
            out.append(("text", text))
        inner = m.group(2).strip()
        if not inner.startswith("/*"):
            out.append(("action", inner))
        trim_next = bool(m.group(3))
        pos = m.end()
    text = src[pos:]
    if trim_next:
        text = text.lstrip(" \t\r\n")
    if "{{" in text:
        raise TemplateError("unclosed action '{{'")
    if text:
        out.append(("text", text))
    return out


def _tokens(expr: str) -> list[str]:
    toks, pos = [], 0
    expr = expr.strip()
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if not m or m.end() == pos:
            raise TemplateError(f"cannot read action '{expr}'")
        toks.append(next(g for g in m.groups() if g is not None))
        pos = m.end()
        while pos < len(expr) and expr[pos].isspace():
            pos += 1
    return toks


def parse(src: str) -> list[_Node]:
    items = _lex(src)
    pos = 0

    def block(stop: tuple[str, ...]) -> tuple[list[_Node], str | None]:
        nonlocal pos
        nodes: list[_Node] = []
        while pos < len(items):
            kind, val = items[pos]
            pos += 1
            if kind == "text":
                nodes.append(_Node("text", text=val))
                continue
            word = val.split(None, 1)[0] if val else ""
            if word in ("end", "else") and word in stop:
                return nodes, val
            if word in ("end", "else"):
                raise TemplateError(f"unexpected '{{{{ {val} }}}}'")
            if word in ("if", "with"):
                node = _Node(word)
                cond = val[len(word):]
                while True:
                    body, closer = block(("end", "else"))
                    if closer is None:
                        raise TemplateError(f"'{{{{ {word} }}}}' without '{{{{ end }}}}'")
                    node.branches.append((_tokens(cond), body))
                    if closer == "end":
                        break
                    rest = closer[len("else"):].strip()
                    if rest.startswith(("if ", "with ")):
                        cond = rest.split(None, 1)[1]
                        continue
                    if rest:
                        raise TemplateError(f"unsupported '{{{{ {closer} }}}}'")
                    body, closer = block(("end",))
                    if closer is None:
                        raise TemplateError(f"'{{{{ {word} }}}}' without '{{{{ end }}}}'")
                    node.else_body = body
                    break
                nodes.append(node)
            elif word == "range":
                node = _Node("range")
                toks = _tokens(val[len("range"):])
                if ":=" in toks:
                    i = toks.index(":=")
                    node.decl = [t for t in toks[:i] if t != ","]
                    toks = toks[i + 1:]
                node.expr = toks
                body, closer = block(("end", "else"))
                if closer is None:
                    raise TemplateError("'{{ range }}' without '{{ end }}'")
                node.body = body
                if closer != "end":
                    node.else_body, closer = block(("end",))
                nodes.append(node)
            elif word in ("template", "define", "block", "break", "continue"):
                raise TemplateError(f"'{{{{ {word} }}}}' is not supported")
            else:
                toks = _tokens(val)
                node = _Node("action", expr=toks)
                if len(toks) > 2 and toks[0].startswith("$") and toks[1] in (":=", "="):
                    node.decl, node.assign, node.expr = [toks[0]], toks[1], toks[2:]
                nodes.append(node)
        return nodes, None

    nodes, closer = block(())
    if closer is not None:
        raise TemplateError(f"unexpected '{{{{ {closer} }}}}'")
    return nodes


def _truth(v: Any) -> bool:
    return v not in (None, False, 0, "") and not (isinstance(v, (list, dict, tuple)) and len(v) == 0)


def _field(obj: Any, name: str) -> Any:
    if isinstance(obj, dict):
        if name in obj:
            return obj[name]
        raise TemplateError(f"no field '{name}'")
    if hasattr(obj, name):
        return getattr(obj, name)
    raise TemplateError(f"no field '{name}'")


def _cmp(a, b):
    if type(a) is not type(b) and not (isinstance(a, (int, float)) and isinstance(b, (int, float))):
        raise TemplateError(f"incompatible types for comparison: {a!r} and {b!r}")
    return a, b


_FUNCS = {
    "eq": lambda a, *bs: any(_cmp(a, b)[0] == b for b in bs),
    "ne": lambda a, b: _cmp(a, b)[0] != b,
    "lt": lambda a, b: _cmp(a, b)[0] < b,
    "le": lambda a, b: _cmp(a, b)[0] <= b,
    "gt": lambda a, b: _cmp(a, b)[0] > b,
    "ge": lambda a, b: _cmp(a, b)[0] >= b,
    "not": lambda a: not _truth(a),
    "len": lambda a: len(a),
    "index": lambda a, *ix: _index(a, ix),
    "slice": lambda a, *ix: a[ix[0]:ix[1]] if len(ix) == 2 else a[ix[0]:] if ix else a,
    "print": lambda *a: "".join(_text(x) for x in a),
}


def _index(a, ix):
    for i in ix:
        a = a[i]
    return a


def _text(v: Any) -> str:
    if v is None:
        return "<no value>"
    if v is True or v is False:
        return "true" if v else "false"
    return str(v)


class _Scope:
    def __init__(self, root: Any):
        self.root = root
        self.vars: list[dict[str, Any]] = [{"$": root}]

    def get(self, name: str) -> Any:
        for frame in reversed(self.vars):
            if name in frame:
                return frame[name]
        raise TemplateError(f"undefined variable '{name}'")

    def set(self, name: str, value: Any, declare: bool) -> None:
        if declare:
            self.vars[-1][name] = value
            return
        for frame in reversed(self.vars):
            if name in frame:
                frame[name] = value
                return
        raise TemplateError(f"undefined variable '{name}'")


def _eval(toks: list[str], dot: Any, scope: _Scope) -> Any:
    """A pipeline: `cmd | cmd ...`, each cmd an operand or a function call."""
    if "|" in toks:
        parts: list[list[str]] = [[]]
        depth = 0
        for t in toks:
            depth += t == "("
            depth -= t == ")"
            if t == "|" and depth == 0:
                parts.append([])
            else:
                parts[-1].append(t)
        value = _command(parts[0], dot, scope, None)
        for part in parts[1:]:
            value = _command(part, dot, scope, (value,))
        return value
    return _command(toks, dot, scope, None)


def _command(toks: list[str], dot: Any, scope: _Scope, piped: tuple | None) -> Any:
    args: list[Any] = []
    i = 0
    while i < len(toks):
        t = toks[i]
        if t == "(":
            depth, j = 1, i + 1
            while j < len(toks) and depth:
                depth += toks[j] == "("
                depth -= toks[j] == ")"
                j += 1
            if depth:
                raise TemplateError("unbalanced parentheses")
            args.append(("v", _eval(toks[i + 1:j - 1], dot, scope)))
            i = j
            continue
        args.append(("t", t))
        i += 1
    if not args:
        raise TemplateError("empty command")
    head_kind, head = args[0]
    if head_kind == "t" and head in _FUNCS:
        vals = [_operand(a, dot, scope) for a in args[1:]] + list(piped or ())
        try:
            return _FUNCS[head](*vals)
        except TemplateError:
            raise
        except Exception as exc:  # noqa: BLE001 - a wrong call in a user's template
            raise TemplateError(f"{head}: {exc}") from None
    if head_kind == "t" and head in ("and", "or"):
        vals = [_operand(a, dot, scope) for a in args[1:]] + list(piped or ())
        if head == "and":
            for v in vals:
                if not _truth(v):
                    return v
            return vals[-1]
        for v in vals:
            if _truth(v):
                return v
        return vals[-1]
    if len(args) > 1 or piped:
        if head_kind == "t" and not head.startswith((".", "$", '"', "`")):
            raise TemplateError(f"unknown function '{head}'")
        raise TemplateError(f"'{head if head_kind == 't' else '(...)'}' is not a function")
    return _operand(args[0], dot, scope)


_NUMBER = re.compile(r"-?\d+(\.\d+)?$")


def _operand(arg: tuple[str, Any], dot: Any, scope: _Scope) -> Any:
    kind, t = arg
    if kind == "v":
        return t
    if t.startswith('"'):
        return bytes(t[1:-1], "utf-8").decode("unicode_escape")
    if t.startswith("`"):
        return t[1:-1]
    if t in ("true", "false"):
        return t == "true"
    if t == "nil":
        return None
    if _NUMBER.match(t):
        return float(t) if "." in t else int(t)
    if t == ".":
        return dot
    if t.startswith("."):
        obj = dot
        for name in t[1:].split("."):
            obj = _field(obj, name)
        return obj
    if t.startswith("$"):
        name, _, rest = t.partition(".")
        obj = scope.get(name)
        for part in rest.split(".") if rest else []:
            obj = _field(obj, part)
        return obj
    if t in _FUNCS or t in ("and", "or"):
        raise TemplateError(f"'{t}' needs arguments")
    raise TemplateError(f"unknown function or value '{t}'")


def _run(nodes: list[_Node], dot: Any, scope: _Scope, out: list[str]) -> None:
    for node in nodes:
        if node.kind == "text":
            out.append(node.text)
        elif node.kind == "action":
            value = _eval(node.expr, dot, scope)
            if node.assign:
                scope.set(node.decl[0], value, node.assign == ":=")
            else:
                out.append(_text(value))
        elif node.kind in ("if", "with"):
            for cond, body in node.branches:
                value = _eval(cond, dot, scope)
                if _truth(value):
                    scope.vars.append({})
                    _run(body, value if node.kind == "with" else dot, scope, out)
                    scope.vars.pop()
                    break
            else:
                if node.else_body is not None:
                    scope.vars.append({})
                    _run(node.else_body, dot, scope, out)
                    scope.vars.pop()
        elif node.kind == "range":
            seq = _eval(node.expr, dot, scope)
            items = list(seq.items()) if isinstance(seq, dict) else list(enumerate(seq or []))
            if not items and node.else_body is not None:
                _run(node.else_body, dot, scope, out)
            for key, value in items:
                frame: dict[str, Any] = {}
                if len(node.decl) == 1:
                    frame[node.decl[0]] = value
                elif len(node.decl) == 2:
                    frame[node.decl[0]], frame[node.decl[1]] = key, value
                scope.vars.append(frame)
                _run(node.body, value, scope, out)
                scope.vars.pop()


def render(src: str, data: Any) -> str:
    """Render Go template `src` with `data` as dot. Raises TemplateError for what is not supported."""
    out: list[str] = []
    _run(parse(src), data, _Scope(data), out)
    return "".join(out)
