"""Where the shared material beside the repository lives (imported by name: `conftest` is ambiguous
when tests/ and tests/tui/ both have one)."""

from pathlib import Path

# Real-world data written by a peer project; not part of this repository (tests skip without it).
PEER_DEMO = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "peer-demo"
