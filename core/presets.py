"""The bundled presets (`presets/*.yaml`), installed as the package `ftwizard.presets`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class Preset:
    name: str
    path: Path
    summary: str  # the header's first comment line
    header: str   # the whole leading comment block


def presets_dir() -> Path:
    import ftwizard.presets as pkg

    return Path(list(pkg.__path__)[0])


def read_header(path: Path) -> str:
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line[1:].strip())
    return "\n".join(lines)


def list_presets() -> list[Preset]:
    out = []
    for path in sorted(presets_dir().glob("*.yaml")):
        header = read_header(path)
        out.append(Preset(path.stem, path, header.splitlines()[0] if header else "", header))
    return out


def find_preset(name: str) -> Path:
    from .errors import UserError

    p = presets_dir() / f"{name}.yaml"
    if not p.exists():
        raise UserError(f"no preset '{name}' (ftwizard presets lists them)", field="PRESET")
    return p
