"""A folder of engraved scores, so that a score seen before shows its first page at once.

Engraving lays the whole score out first (a 20-page piano score: ~1.4 s on a busy 2-core
machine, verovio 6.4). For each score shown, the cache keeps its layout table and first
page (``<key>.json``) and verovio's own MEI of it (``<key>.mei``, which loads in about
half the time of MusicXML). The key is the file's content hash with the engraving options
and verovio's version, so an edited file, other page sizes or another verovio miss. Reading
is forgiving: anything missing, damaged or unexpected is a miss. Only the newest
:data:`KEEP` entries are kept.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from ..core.atomic import write_text
from ..core.errors import WriteFailed
from ..core.hashing import bytes_hash, file_hash

CACHE_VERSION = 2
KEEP = 64  # scores kept (a score is ~0.5–2 MB: its MEI and first page)


def verovio_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("verovio")
    except PackageNotFoundError:  # a frozen build without package metadata
        import verovio

        return verovio.toolkit(False).getVersion()


def cache_key(path: str | os.PathLike, options: dict) -> str | None:
    """The cache key of a score file engraved with ``options``; None if it cannot be read."""
    try:
        content = file_hash(path)
    except OSError:
        return None
    return bytes_hash([content.encode(), json.dumps(options, sort_keys=True).encode(),
                       verovio_version().encode(), str(CACHE_VERSION).encode()])


def read(folder: str | os.PathLike, key: str) -> tuple[dict, str, str] | None:
    """``(layout, first page SVG, MEI path)`` of a cached score, or None."""
    folder = Path(folder)
    mei = folder / f"{key}.mei"
    try:
        entry = json.loads((folder / f"{key}.json").read_text("utf-8"))
        layout, page1 = entry["layout"], entry["page1"]
        if not (isinstance(layout, dict) and isinstance(page1, str) and page1.lstrip()
                .startswith("<svg") and layout.get("measures") and int(layout["pages"]) >= 1
                and mei.is_file()):
            return None
        os.utime(folder / f"{key}.json")  # recently used: kept longest
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return layout, page1, os.fspath(mei)


def write(folder: str | os.PathLike, key: str, layout: dict, page1: str, mei: str) -> bool:
    """Store a score's layout, first page and MEI; False if the folder cannot take them."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        write_text(folder / f"{key}.mei", mei)  # the .json, written last, marks it complete
        write_text(folder / f"{key}.json", json.dumps({"layout": layout, "page1": page1}))
    except (OSError, WriteFailed):
        return False
    prune(folder)
    return True


def prune(folder: str | os.PathLike, keep: int = KEEP) -> None:
    """Remove all but the ``keep`` most recently used entries."""
    folder = Path(folder)
    try:
        entries = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in entries[keep:]:
            old.unlink(missing_ok=True)
            old.with_suffix(".mei").unlink(missing_ok=True)
    except OSError:
        pass
