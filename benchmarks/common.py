"""Shared pieces of the benchmark scripts: where the data is, grading, the distractors."""
from __future__ import annotations

import os
import re
import shutil
import sqlite3
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "benchmarks" / ".cache"
_SUFFIX = re.compile(r"_(no_repeat|repeat|no_2_repeat|no_first_repeat|no_trio)$")


def asap_dir() -> Path | None:
    """``$MIDIZERO_ASAP`` or ``../shared/data/asap`` from the project root; None if absent."""
    p = Path(os.environ.get("MIDIZERO_ASAP", ROOT.parent / "shared" / "data" / "asap"))
    return p if (p / "metadata.csv").is_file() else None


def piece_key(folder: str | Path) -> str:
    """Grading key: the ASAP folder with a version suffix (``_no_repeat`` ...) removed."""
    parts = Path(folder).parts
    asap_at = parts.index("asap") + 1 if "asap" in parts else 0
    rel = "/".join(p for p in parts[asap_at:] if not p.endswith((".mid", ".mxl")))
    return _SUFFIX.sub("", rel)


def asap_scores(asap: Path) -> list[Path]:
    return sorted(asap.rglob("midi_score.mid"))


def asap_performances(asap: Path) -> list[Path]:
    return sorted(p for p in asap.rglob("*.mid") if p.name != "midi_score.mid")


def dev_test_split(asap: Path) -> tuple[set[str], set[str]]:
    """Pieces (grading keys) sorted by name: even positions dev, odd positions test."""
    keys = sorted({piece_key(p.parent) for p in asap_scores(asap)})
    return set(keys[0::2]), set(keys[1::2])


# music21 corpus works that are also in ASAP (composer + catalogue number), left out of the
# distractors; see benchmarks/RESULTS.md.
OVERLAP = {"bach/bwv846.mxl": "WTC I Prelude/Fugue in C, BWV 846 (ASAP Bach/*/bwv_846)"}
_FORMAT_PREFERENCE = (".mxl", ".xml", ".musicxml", ".krn", ".abc")


def music21_distractors() -> list[Path]:
    """Every music21 corpus score we can read, one file per work, minus the ASAP overlap."""
    import music21

    by_work: dict[str, Path] = {}
    for p in sorted(Path(str(x)) for x in music21.corpus.getPaths()):
        if p.suffix.lower() not in _FORMAT_PREFERENCE:
            continue
        rel = p.as_posix().split("/corpus/", 1)[1]
        if rel in OVERLAP:
            continue
        work = rel.rsplit(".", 1)[0]
        old = by_work.get(work)
        if old is None or _FORMAT_PREFERENCE.index(p.suffix.lower()) < \
                _FORMAT_PREFERENCE.index(old.suffix.lower()):
            by_work[work] = p
    return sorted(by_work.values())


def copy_library(src: str | Path, dst: str | Path) -> Path:
    """Copy a library folder for a benchmark that changes it (held-out pieces), also while
    another process has it open: the database through SQLite's backup API (a plain file
    copy can miss or tear its -wal / -shm files), everything else as files."""
    src, dst = Path(src), Path(dst)
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("library.sqlite*", "writer.lock"))
    a = sqlite3.connect(f"file:{src / 'library.sqlite'}?mode=ro", uri=True)
    b = sqlite3.connect(dst / "library.sqlite")
    try:
        a.backup(b)
    finally:
        a.close()
        b.close()
    return dst
