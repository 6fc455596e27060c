"""Parse the demo scores in advance: ``resources/demo/parsed/<file_hash>.npz`` + ``index.json``.

    python packaging/make_parsed_cache.py

A first start then indexes the demo library without starting parser processes (seconds
saved on a user's very first run; see ``midizero_app.core.parsing.cached_notes``). Re-run it
whenever the demo scores or the parsers change; ``tests/test_packaging.py`` fails when the
cache no longer equals a fresh parse.
"""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "resources" / "demo"


def main() -> int:
    from midizero_app.core.parsing import write_parsed_cache

    n = write_parsed_cache(DEMO / "scores", DEMO / "parsed")
    print(f"{n} demo scores parsed into {(DEMO / 'parsed').relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
