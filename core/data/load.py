"""Read a dataset: a local file (.jsonl .json .csv .parquet), a directory of them, or a hub id."""

from __future__ import annotations

from pathlib import Path

from ..errors import UserError

BUILDERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet", ".tsv": "csv"}


def data_files(path: str) -> tuple[str, list[str]] | None:
    """(builder, files) for a local path, None when `path` is not local (a hub id)."""
    p = Path(path).expanduser()
    if p.is_file():
        builder = BUILDERS.get(p.suffix.lower())
        if builder is None:
            raise UserError(f"unsupported file type '{p.suffix}' (use .jsonl, .json, .csv or .parquet)",
                            file=str(p), field="dataset.path")
        return builder, [str(p)]
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix.lower() in BUILDERS)
        kinds = {BUILDERS[f.suffix.lower()] for f in files}
        if not files:
            raise UserError("no .jsonl/.json/.csv/.parquet files in this directory", file=str(p),
                            field="dataset.path")
        if len(kinds) > 1:
            raise UserError(f"mixed file types {sorted(kinds)}; keep one type per directory", file=str(p),
                            field="dataset.path")
        return kinds.pop(), [str(f) for f in files]
    if path.startswith(("/", "./", "../", "~")) or p.suffix.lower() in BUILDERS:
        raise UserError("no such file or directory", file=path, field="dataset.path")
    return None


def load_table(path: str, split: str = "train", max_rows: int | None = None):
    """A `datasets.Dataset` of the raw rows."""
    import datasets

    datasets.disable_progress_bars()
    local = data_files(path)
    try:
        if local is None:
            ds = datasets.load_dataset(path, split=split)
        else:
            builder, files = local
            kwargs = {"sep": "\t"} if files[0].endswith(".tsv") else {}
            ds = datasets.load_dataset(builder, data_files=files, split="train", **kwargs)
    except UserError:
        raise
    except Exception as exc:  # datasets raises many types; the message is what the user needs
        msg = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot read the dataset: {msg}", file=path, field="dataset.path") from None
    if max_rows is not None and len(ds) > max_rows:
        ds = ds.select(range(max_rows))
    return ds
