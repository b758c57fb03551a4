"""Where a dataset lives: a local file (.jsonl .json .csv .tsv .parquet), a directory of them, or a hub id.

`data_files` is the cheap existence check `ftwizard train` runs before creating a run; reading rows is
`read.iter_rows` (streaming, with line numbers); `load_table` gives a `datasets.Dataset` of the raw rows
for code that wants one.
"""

from __future__ import annotations

from .read import EXTENSIONS, local_files

BUILDERS = {".jsonl": "json", ".ndjson": "json", ".json": "json", ".csv": "csv", ".tsv": "csv",
            ".parquet": "parquet"}


def data_files(path: str) -> tuple[str, list[str]] | None:
    """(kind, files) for a local path, None when `path` is not local (a hub id). Raises `UserError` for a
    missing path or an unsupported file type."""
    files = local_files(path)
    if files is None:
        return None
    kinds = sorted({EXTENSIONS[f.suffix.lower()] for f in files})
    return "+".join(kinds), [str(f) for f in files]


def load_table(path: str, split: str = "train", max_rows: int | None = None):
    """A `datasets.Dataset` of the raw rows (read with `iter_rows`, so errors carry file and line)."""
    import datasets

    from ..errors import Problem, UserError
    from .read import iter_rows

    rows, bad = [], []
    for r in iter_rows(path, split=split, limit=max_rows, streaming_hub=False):
        if r.error:
            bad.append(Problem(r.error, file=r.file, line=r.line, field=r.field))
        else:
            rows.append(r.row)
    if bad:
        raise UserError(bad[:10])
    return datasets.Dataset.from_list(rows)
