"""Fault injection: a full disk at every point of a run, kills, damaged files, odd names.

The faults are real where this machine allows it: a small tmpfs that really fills up (as
root; skipped with the reason elsewhere), ``kill -9`` of a real indexing process, bytes
overwritten in the real files. After each fault, with the fault gone, the library must
open, ``library check`` must report it sound or repair it, and every piece indexed before
the fault must be found. ``benchmarks/fault_bench.py`` runs the same with more points.
"""
from __future__ import annotations

import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from midizero_app.core.check import CheckReport
from midizero_app.core.errors import LibraryDamaged, LibraryError, MidizeroError, NoLibrary
from midizero_app.core.library import Library, check_library

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "resources" / "demo" / "scores"


@pytest.fixture(scope="module")
def demo_files() -> list[Path]:
    # demo scores have their notes parsed in advance (resources/demo/parsed): indexing
    # copies of them needs no parser processes, so many runs fit in a test
    files = sorted(p for p in DEMO.iterdir() if p.is_file())
    assert len(files) >= 8
    return files


def _copy(files: list[Path], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for f in files:
        shutil.copy(f, folder / f.name)
    return folder


def _found(lib: Library, path: Path) -> bool:
    res = lib.search(str(path))
    return bool(res["results"]) and res["results"][0]["path"] == str(path)


def _assert_sound_after(lib_dir: Path, must_find: list[Path]) -> CheckReport:
    """Open, check (repairing), and find every piece in ``must_find``."""
    with Library(lib_dir) as lib:
        report = lib.check()
        assert not report.lost, report.lost
        again = lib.check(repair=False)
        assert again.clean, again.problems  # a repaired library checks clean
        paths = [p["path"] for p in lib.pieces()]
        assert len(paths) == len(set(paths))
        for p in must_find:
            assert _found(lib, p), f"{p.name} lost"
    return report


# --- a full disk --------------------------------------------------------------------------

@pytest.fixture()
def small_disk(tmp_path):
    """A 24 MiB tmpfs (a real filesystem that fills up); skipped where mounting is refused."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _fill(disk: Path, leave: int) -> Path:
    """Fill ``disk`` until ``leave`` bytes are free."""
    st = os.statvfs(disk)
    free = st.f_bavail * st.f_frsize
    filler = disk / "filler"
    with open(filler, "wb") as f:
        f.write(b"\0" * max(0, free - leave))
    return filler


def _usage(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def _run_on_full_disk(disk: Path, base: Path, leave: int, op) -> str | None:
    """Copy library ``base`` onto ``disk``, fill it to ``leave`` free bytes, run ``op(lib)``,
    free the space. Returns the one-line error, or None when ``op`` completed."""
    for p in disk.iterdir():
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    lib_dir = disk / "lib"
    shutil.copytree(base, lib_dir)
    filler = _fill(disk, leave)
    error = None
    try:
        with Library(lib_dir) as lib:
            op(lib)
    except MidizeroError as exc:  # anything else fails the test with its traceback
        error = str(exc)
        assert "\n" not in error
    finally:
        filler.unlink()
    return error


def test_disk_full_at_every_point_of_index_rescan_and_remove(small_disk, tmp_path, demo_files,
                                                             bundled_model):
    """Issue case 1: a full disk never leaves the library unusable (swept over the run)."""
    src_a = _copy(demo_files[:3], tmp_path / "a")
    src_b = _copy(demo_files[3:7], tmp_path / "b")
    base = tmp_path / "base"
    with Library(base) as lib:
        lib.add([src_a])
    full = tmp_path / "full"
    shutil.copytree(base, full)
    with Library(full) as lib:
        lib.add([src_b])
    span = _usage(full) - _usage(base) + 256 * 1024
    ops = {
        "index": lambda lib: lib.add([src_b]),
        "rescan": lambda lib: lib.rescan(),
        "remove": lambda lib: lib.remove(src_a / demo_files[0].name),
    }
    (src_a / demo_files[1].name).write_bytes((src_b / demo_files[4].name).read_bytes())
    survivors = [src_a / demo_files[0].name, src_a / demo_files[2].name]
    tried = stopped = 0
    for name, op in ops.items():
        for leave in [0, 8 << 10] + [int(span * k / 5) for k in range(1, 6)]:
            err = _run_on_full_disk(small_disk, base if name == "index" else full, leave, op)
            tried += 1
            if err is not None:
                stopped += 1
                assert "disk is full" in err, err
            kept = survivors if name != "remove" or err is not None else survivors[1:]
            _assert_sound_after(small_disk / "lib", kept)
    assert stopped >= 6, f"only {stopped} of {tried} runs met the full disk"
    assert tried == 21


def test_full_disk_never_records_an_empty_index_file(small_disk, tmp_path, demo_files,
                                                     bundled_model):
    """hnswlib's save ignores short writes: the written file is checked before it counts."""
    lib_dir = small_disk / "lib"
    with Library(lib_dir) as lib:
        lib.add([_copy(demo_files[:4], tmp_path / "a")])
        index_files = {p: p.read_bytes() for p in lib_dir.glob("index-*.hnsw")}
        filler = _fill(small_disk, 0)
        with pytest.raises(LibraryError, match="disk is full"):
            lib.add([_copy(demo_files[4:6], tmp_path / "b")])
        with pytest.raises(MidizeroError, match="disk is full|not written completely"):
            lib.save_index()
        filler.unlink()
    for p, data in index_files.items():
        assert p.read_bytes() == data  # the old files, whole
    assert not list(lib_dir.glob(".*.tmp"))
    _assert_sound_after(lib_dir, [tmp_path / "a" / f.name for f in demo_files[:4]])


def test_disk_full_at_training_checkpoint_saves(small_disk):
    """Training on a disk that fills: each failed save is one line, the last good
    ``last.pt`` stays, and the same run with space back resumes and writes a loadable model."""
    from midizero_app.core.encoder import load_checkpoint
    from midizero_app.core.training.config import TrainConfig
    from midizero_app.core.training.train import train

    out = small_disk / "run"
    cfg = TrainConfig(batch_size=16, samples_per_epoch=48, epochs=2, seed=1, out_dir=str(out))
    state = 10 << 20  # last.pt (weights + optimiser) is about 9.8 MB; replacing it needs two
    stopped = 0
    for leave in (0, state // 2, int(state * 1.5)):  # the first save, the first, the second
        shutil.rmtree(out, ignore_errors=True)
        filler = _fill(small_disk, leave)
        try:
            train(cfg)
        except MidizeroError as exc:
            stopped += 1
            assert "\n" not in str(exc) and "disk is full" in str(exc), exc
            assert "training stopped at step" in str(exc), exc
        finally:
            filler.unlink()
        assert not list(out.glob(".*.tmp")), "a temporary file was left behind"
        final = train(cfg)  # space back: resumes (or finishes) the same run
        model, card = load_checkpoint(final)
        assert card["steps"] == cfg.total_steps
    assert stopped == 3


# --- file names, links, special files ---------------------------------------------------

@pytest.mark.skipif(sys.platform != "linux", reason="Linux file names are arbitrary bytes")
def test_file_name_that_is_not_utf8_is_indexed_listed_and_found(tmp_path, demo_files,
                                                                bundled_model):
    """Issue case 2: one undecodable name no longer stops the folder."""
    src = tmp_path / "scores"
    src.mkdir()
    odd = src / os.fsdecode(b"\xff\xfe odd \xe9.mid")
    shutil.copy(demo_files[3], odd)
    after = src / "zz after.mid"
    shutil.copy(demo_files[4], after)
    with Library(tmp_path / "lib") as lib:
        report = lib.add([src])
        assert sorted(report.added) == sorted([str(odd), str(after)])
        assert {p["path"] for p in lib.pieces()} == {str(odd), str(after)}
        assert _found(lib, odd) and _found(lib, after)
        assert lib.remove(src) and not lib.pieces()


def test_link_loops_and_fifos_are_listed_with_their_reason(tmp_path, demo_files, bundled_model):
    src = tmp_path / "scores"
    src.mkdir()
    shutil.copy(demo_files[0], src / "good.mid")
    os.symlink("loop.mid", src / "loop.mid")
    os.mkfifo(src / "pipe.mid")
    with Library(tmp_path / "lib") as lib:
        report = lib.add([src])
        assert report.added == [str(src / "good.mid")]
        failed = {p["path"]: p["error"] for p in lib.pieces(status="failed")}
        assert set(failed) == {str(src / "loop.mid"), str(src / "pipe.mid")}
        assert "link" in failed[str(src / "loop.mid")]
        assert "pipe" in failed[str(src / "pipe.mid")]


def test_removing_a_folder_leaves_its_look_alikes(tmp_path, demo_files, bundled_model):
    """Folder prefixes are compared byte for byte: '_' is not a wildcard, case counts."""
    a = _copy(demo_files[:1], tmp_path / "x_y")
    b = _copy(demo_files[1:2], tmp_path / "xzy")
    c = _copy(demo_files[2:3], tmp_path / "X_Y")
    with Library(tmp_path / "lib") as lib:
        lib.add([a, b, c])
        removed = lib.remove(a)
        assert removed == [str(a / demo_files[0].name)]
        assert len(lib.pieces()) == 2 and len(lib.folders()) == 2


def test_atomic_writes_never_follow_a_planted_link(tmp_path, demo_files, bundled_model):
    """Issue case 6: temporary files are created exclusively under unpredictable names."""
    from midizero_app.core.atomic import write_bytes

    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "out.mid"
    for name in ("out.mid.tmp", ".out.mid.tmp", "out.tmp"):
        os.symlink(victim, tmp_path / name)
    write_bytes(out, b"MThd")
    assert out.read_bytes() == b"MThd" and victim.read_text() == "precious"
    lib_dir = tmp_path / "lib"
    lib_dir.mkdir()
    for key in ("x", "melody2-x"):
        os.symlink(victim, lib_dir / f"index-{key}.hnsw.tmp")
    with Library(lib_dir) as lib:
        lib.add([_copy(demo_files[:2], tmp_path / "a")])
    assert victim.read_text() == "precious"


# --- a damaged library ------------------------------------------------------------------

@pytest.fixture()
def indexed(tmp_path, demo_files, bundled_model):
    src = _copy(demo_files[:6], tmp_path / "scores")
    lib_dir = tmp_path / "lib"
    with Library(lib_dir) as lib:
        lib.add([src])
    # fold the WAL into the database file, as a closed library leaves it
    con = sqlite3.connect(lib_dir / "library.sqlite")
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    return lib_dir, [src / f.name for f in demo_files[:6]]


def test_damaged_catalogue_is_repaired_from_what_is_intact(indexed):
    """Issue case 5: junk in the middle of library.sqlite."""
    lib_dir, pieces = indexed
    db = lib_dir / "library.sqlite"
    data = bytearray(db.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 8192] = os.urandom(8192)
    db.write_bytes(bytes(data))
    try:
        with Library(lib_dir) as lib:
            lib.stats()
            for p in pieces:
                lib.search(str(p))
    except LibraryDamaged as exc:
        assert "midizero library check" in str(exc)
    report = check_library(lib_dir)
    assert report.problems and report.moved_aside
    assert Path(report.moved_aside, "library.sqlite").is_file()  # never deleted
    _assert_sound_after(lib_dir, pieces)


def test_catalogue_that_does_not_open_is_rebuilt_from_its_folders(indexed):
    lib_dir, pieces = indexed
    db = lib_dir / "library.sqlite"
    db.write_bytes(b"\0" * 100 + db.read_bytes()[100:])  # the header is gone
    with pytest.raises(LibraryDamaged, match="library check"):
        Library(lib_dir)
    report = check_library(lib_dir)
    assert report.repaired and not report.lost
    _assert_sound_after(lib_dir, pieces)


def test_damaged_index_and_vectors_are_rebuilt(indexed):
    lib_dir, pieces = indexed
    for f in lib_dir.glob("index-*.hnsw"):
        data = bytearray(f.read_bytes())
        data[len(data) // 3:len(data) // 3 + 64] = b"\xff" * 64
        f.write_bytes(bytes(data))
    con = sqlite3.connect(lib_dir / "library.sqlite")
    con.execute("UPDATE vectors SET emb = substr(emb, 1, 100) WHERE piece = 1")
    con.execute("UPDATE frames SET offsets = X'00' WHERE piece = 2")
    con.commit()
    con.close()
    with Library(lib_dir) as lib:
        report = lib.check(repair=False)
        assert len(report.problems) >= 3 and not report.repaired
    report = _assert_sound_after(lib_dir, pieces)
    assert any("read again" in r for r in report.repaired)


def test_no_library_at_a_mistyped_folder_is_not_created(tmp_path):
    with pytest.raises(NoLibrary, match="no library"):
        Library(tmp_path / "typo", create=False)
    assert not (tmp_path / "typo").exists()


# --- kills ------------------------------------------------------------------------------

_INDEXER = """
import sys
from midizero_app.core.library import Library
lib = Library(sys.argv[1])
op = sys.argv[2]
if op == "index":
    lib.add(sys.argv[3:], workers=1)
elif op == "rescan":
    lib.rescan(workers=1)
elif op == "remove":
    lib.remove(*sys.argv[3:])
print("done", flush=True)
"""


def test_kill_at_random_points(tmp_path, demo_files, bundled_model):
    """kill -9 at seeded random moments of index, rescan and remove (20 of them)."""
    rng = random.Random(20261207)
    src_a = _copy(demo_files[:3], tmp_path / "a")
    src_b = _copy(demo_files[3:9], tmp_path / "b")
    lib_dir = tmp_path / "lib"
    with Library(lib_dir) as lib:
        lib.add([src_a])
    kept = [src_a / f.name for f in demo_files[:3]]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for i in range(20):
        op = ("index", "rescan", "remove")[i % 3]
        args = [str(src_b)] if op == "index" else [str(src_b / demo_files[3 + i % 6].name)] \
            if op == "remove" else []
        proc = subprocess.Popen([sys.executable, "-c", _INDEXER, str(lib_dir), op, *args],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.3, 2.5))
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        with Library(lib_dir) as lib:
            paths = [p["path"] for p in lib.pieces()]
            assert len(paths) == len(set(paths))
            for p in kept:
                assert _found(lib, p), f"{p.name} lost after kill {i} ({op})"
    _assert_sound_after(lib_dir, kept)


# --- damaged bytes ----------------------------------------------------------------------

_OPEN_AND_SEARCH = """
import sys
from midizero_app.core.errors import MidizeroError
from midizero_app.core.library import Library
try:
    with Library(sys.argv[1]) as lib:
        lib.stats()
        for q in sys.argv[2:]:
            lib.search(q)
    print("ok")
except MidizeroError as exc:
    print("message:", exc)
"""


def test_bytes_overwritten_in_library_files_end_in_a_message_or_a_repair(indexed):
    """Seeded places in library.sqlite (6) and each index file (3): no traceback, no crash
    (``benchmarks/fault_bench.py`` overwrites 100 places in each, and in the model)."""
    lib_dir, pieces = indexed
    pristine = tmp = lib_dir.parent / "pristine"
    shutil.copytree(lib_dir, pristine)
    rng = random.Random(7)
    targets = ["library.sqlite"] + sorted(p.name for p in lib_dir.glob("index-*.hnsw"))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for name in targets:
        for _ in range(6 if name == "library.sqlite" else 3):
            shutil.rmtree(lib_dir)
            shutil.copytree(pristine, lib_dir)
            f = lib_dir / name
            data = bytearray(f.read_bytes())
            at = rng.randrange(len(data))
            data[at:at + 16] = bytes(rng.randrange(256) for _ in range(16))
            f.write_bytes(bytes(data))
            r = subprocess.run([sys.executable, "-c", _OPEN_AND_SEARCH, str(lib_dir),
                                str(pieces[0])], env=env, capture_output=True, text=True,
                               timeout=300)
            assert r.returncode == 0, f"{name}@{at}: crashed ({r.returncode}) {r.stderr[-800:]}"
            assert "Traceback" not in r.stderr, f"{name}@{at}: {r.stderr[-800:]}"
            check_library(lib_dir)
            _assert_sound_after(lib_dir, pieces[:2])
    del tmp
