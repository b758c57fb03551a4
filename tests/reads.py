"""Cost checks that count work instead of timing it (timings here swing ±30% with the machine's load).

`Reads` is a list that counts the elements read from it: one per index, the length of each slice,
the whole list for each walk (`for`, `min`, `sum`, `list(...)`). A rule that claims to look at the
end of a curve only must read as many elements from a 100k-point curve as from a 10k-point one.
`bytes_read()` is this process's read() total from /proc (Linux), for "reads only the start of a file".
"""

from __future__ import annotations

from pathlib import Path


class Reads(list):
    def __init__(self, *args):
        super().__init__(*args)
        self.reads = 0

    def __getitem__(self, i):
        out = super().__getitem__(i)
        self.reads += len(out) if isinstance(i, slice) else 1
        return out

    def __iter__(self):
        self.reads += len(self)
        return super().__iter__()

    def index(self, *args):
        self.reads += len(self)
        return super().index(*args)


PROC_IO = Path("/proc/self/io")


def bytes_read() -> int:
    """Bytes this process has asked read() for so far (rchar: files, pipes, everything)."""
    for line in PROC_IO.read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise RuntimeError("no rchar in /proc/self/io")
