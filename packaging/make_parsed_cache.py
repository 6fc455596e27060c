"""Parse the demo scores in advance: ``resources/demo/parsed/<sha256>.npz`` + ``index.json``.

    python packaging/make_parsed_cache.py

A first start then indexes the demo library without starting parser processes (seconds
saved on a user's very first run; see ``midizero_app.core.parsing.cached_notes``). Re-run it
whenever the demo scores or the parsers change; ``tests/test_packaging.py`` fails when the
cache no longer equals a fresh parse.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "resources" / "demo"


def main() -> int:
    from midizero_app.core.parsing import _encode, parse_files

    out = DEMO / "parsed"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    files = sorted((DEMO / "scores").iterdir())
    sizes: dict[str, list[str]] = {}
    names = {}
    for r in parse_files(files, workers=2):  # the cache is empty now: real parses
        if r.notes is None:
            raise SystemExit(f"{r.path}: {r.error}")
        data = Path(r.path).read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        (out / f"{digest}.npz").write_bytes(_encode(r.notes))
        sizes.setdefault(str(len(data)), []).append(digest)
        names[digest] = Path(r.path).name
    (out / "index.json").write_text(json.dumps({"sizes": sizes, "names": names}, indent=1,
                                               sort_keys=True, ensure_ascii=False) + "\n")
    print(f"{len(names)} demo scores parsed into {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
