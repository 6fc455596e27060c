"""Index kinds: hnsw-float and ivf-sq6 over the demo library (real SQLite, hnswlib, faiss)."""
from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from midizero_app.cli import main
from midizero_app.core import index_store
from midizero_app.core.errors import LibraryError, WriteFailed
from midizero_app.core.index_store import EMBED_DIM, HNSW_FLOAT, IVF_SQ6, IvfSq
from midizero_app.core.library import Library, check_library

pytest.importorskip("faiss")

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "resources" / "demo"
QUERIES = {"played - maple leaf rag, middle.mid": "Joplin - Maple Leaf Rag.mxl",
           "played - mozart.mid": "Mozart - Sonata K.545 (I, exposition).mxl",
           "played - ode to joy.mid": "Beethoven - Ode to Joy.mid"}


@pytest.fixture(scope="module")
def built(tmp_path_factory, bundled_model) -> dict[str, tuple[Path, Path]]:
    """The demo scores indexed once into a library of each kind: kind → (library, scores)."""
    base = tmp_path_factory.mktemp("kinds")
    scores = base / "scores"
    shutil.copytree(DEMO / "scores", scores)
    out = {}
    for kind in (HNSW_FLOAT, IVF_SQ6):
        with Library(base / kind) as lib:
            lib.choose_index_kind(kind)
            report = lib.add([scores])
            assert len(report.added) == 10 and not report.failed
        out[kind] = base / kind, scores
    return out


def _copy(built, kind: str, tmp_path: Path) -> tuple[Path, Path]:
    src, scores = built[kind]
    dst = tmp_path / kind
    shutil.copytree(src, dst)
    return dst, scores


def _top(lib: Library, query: Path) -> tuple[str | None, float]:
    res = lib.search(str(query))["results"]
    return (Path(res[0]["path"]).name, res[0]["confidence"]) if res else (None, 0.0)


def test_both_kinds_give_the_same_top_answers(built):
    for kind in (HNSW_FLOAT, IVF_SQ6):
        with Library(built[kind][0]) as lib:
            assert lib.index_kind == kind
            for query, piece in QUERIES.items():
                name, conf = _top(lib, DEMO / "queries" / query)
                assert name == piece, (kind, query, name)
                assert conf > 0.5, (kind, query, conf)
            # the flagged query stays flagged
            _, conf = _top(lib, DEMO / "queries" / "played - a chorale not in the library.mid")
            assert conf < 0.5, kind


def test_kind_is_recorded_with_its_files_and_vectors(built):
    lib_dir, _ = built[IVF_SQ6]
    assert sorted(p.suffix for p in lib_dir.glob("index-*")) == [".ivfsq", ".ivfsq"]
    assert not list(lib_dir.glob("index-*.hnsw"))
    con = sqlite3.connect(f"file:{lib_dir / 'library.sqlite'}?mode=ro", uri=True)
    try:
        assert con.execute("SELECT value FROM meta WHERE key='index_kind'").fetchone() == \
            (IVF_SQ6,)
        widths = {w for (w,) in con.execute(
            "SELECT length(emb) / (length(starts) / 4) FROM vectors WHERE length(starts) > 0")}
    finally:
        con.close()
    assert widths == {EMBED_DIM}  # int8 vectors: half of float16's bytes
    with Library(lib_dir) as lib:
        st = lib.stats()
        assert st["index_kind"] == IVF_SQ6
        # the compact index file is at most ~110 bytes a window, plus its lists' centroids
        assert 0 < st["index_bytes"] < 110 * st["windows"] + 200 * EMBED_DIM * 4


def test_existing_library_keeps_its_kind(built, tmp_path):
    lib_dir, _ = _copy(built, HNSW_FLOAT, tmp_path)
    with Library(lib_dir) as lib:
        with pytest.raises(LibraryError, match="hnsw-float, chosen when it was made; convert it"):
            lib.choose_index_kind(IVF_SQ6)
        lib.choose_index_kind(HNSW_FLOAT)  # the same kind: nothing to do
        assert lib.index_kind == HNSW_FLOAT
        with pytest.raises(LibraryError, match="unknown index kind"):
            lib.choose_index_kind("annoy")


@pytest.mark.parametrize("start,target", [(HNSW_FLOAT, IVF_SQ6), (IVF_SQ6, HNSW_FLOAT)])
def test_convert_keeps_the_answers_and_rewrites_vectors_and_files(built, tmp_path, start, target):
    lib_dir, _ = _copy(built, start, tmp_path)
    with Library(lib_dir) as lib:
        before = {q: _top(lib, DEMO / "queries" / q)[0] for q in QUERIES}
        windows = lib.stats()["windows"]
        seen = []
        n = lib.convert_index_kind(target, progress=lambda d, t, m: seen.append((d, t)))
        assert lib.index_kind == target
        assert n >= windows  # both views' windows
        assert seen and seen[-1][0] == seen[-1][1]
        assert {q: _top(lib, DEMO / "queries" / q)[0] for q in QUERIES} == before
        assert lib.convert_index_kind(target) == 0  # already that kind
    suffix = index_store.SUFFIXES[target]
    assert {p.suffix for p in lib_dir.glob("index-*")} == {suffix}
    con = sqlite3.connect(f"file:{lib_dir / 'library.sqlite'}?mode=ro", uri=True)
    try:
        widths = {w for (w,) in con.execute(
            "SELECT length(emb) / (length(starts) / 4) FROM vectors WHERE length(starts) > 0")}
    finally:
        con.close()
    assert widths == {EMBED_DIM if target == IVF_SQ6 else 2 * EMBED_DIM}
    assert check_library(lib_dir, repair=False).clean
    with Library(lib_dir) as lib:  # reopened: the converted index loads from its file
        assert lib.index_kind == target
        assert _top(lib, DEMO / "queries" / "played - ode to joy.mid")[0] == \
            "Beethoven - Ode to Joy.mid"


def test_cancelled_conversion_leaves_the_library_as_it_was(built, tmp_path):
    import threading

    lib_dir, _ = _copy(built, HNSW_FLOAT, tmp_path)
    db = (lib_dir / "library.sqlite").read_bytes()
    files = {p.name: p.read_bytes() for p in lib_dir.glob("index-*")}
    cancel = threading.Event()

    def progress(done, total, message):
        cancel.set()  # cancelled after the first rows were re-encoded in the transaction

    with Library(lib_dir) as lib:
        assert lib.convert_index_kind(IVF_SQ6, progress=progress, cancel=cancel) == 0
        assert lib.index_kind == HNSW_FLOAT
        assert _top(lib, DEMO / "queries" / "played - mozart.mid")[0] == \
            QUERIES["played - mozart.mid"]
    assert {p.name: p.read_bytes() for p in lib_dir.glob("index-*")} == files
    con = sqlite3.connect(f"file:{lib_dir / 'library.sqlite'}?mode=ro", uri=True)
    try:
        widths = {w for (w,) in con.execute(
            "SELECT length(emb) / (length(starts) / 4) FROM vectors WHERE length(starts) > 0")}
    finally:
        con.close()
    assert widths == {2 * EMBED_DIM} and len(db) > 0


def test_suggested_kind_follows_the_library_size():
    assert index_store.suggested_kind(0) == HNSW_FLOAT
    assert index_store.suggested_kind(index_store.COMPACT_FROM_WINDOWS - 1) == HNSW_FLOAT
    assert index_store.suggested_kind(index_store.COMPACT_FROM_WINDOWS) == IVF_SQ6


def test_cli_library_convert(built, tmp_path, capsys):
    lib_dir, _ = _copy(built, HNSW_FLOAT, tmp_path)
    assert main(["library", "convert", "--library", str(lib_dir)]) != 0
    assert "needs --index-kind" in capsys.readouterr().err
    assert main(["library", "convert", "--index-kind", IVF_SQ6, "--library", str(lib_dir),
                 "--json"]) == 0
    out = capsys.readouterr().out
    assert '"to": "ivf-sq6"' in out and '"from": "hnsw-float"' in out
    assert main(["library", "convert", "--index-kind", IVF_SQ6, "--library", str(lib_dir)]) == 0
    assert "ivf-sq6 already" in capsys.readouterr().out


def test_cli_index_kind_makes_a_compact_library(tmp_path, bundled_model, capsys):
    scores = tmp_path / "scores"
    scores.mkdir()
    for name in ("Beethoven - Ode to Joy.mid", "Joplin - Maple Leaf Rag.mxl"):
        shutil.copy(DEMO / "scores" / name, scores / name)
    lib_dir = tmp_path / "lib"
    assert main(["index", str(scores), "--library", str(lib_dir), "--index-kind", IVF_SQ6,
                 "--quiet"]) == 0
    assert "2 added" in capsys.readouterr().out
    assert main(["index", str(scores), "--library", str(lib_dir), "--quiet"]) == 0
    with Library(lib_dir) as lib:
        assert lib.index_kind == IVF_SQ6
        assert _top(lib, DEMO / "queries" / "played - ode to joy.mid")[0] == \
            "Beethoven - Ode to Joy.mid"


def test_compact_add_remove_update_without_rebuild(tmp_path, bundled_model):
    scores = tmp_path / "scores"  # its own files: one of them is changed below
    shutil.copytree(DEMO / "scores", scores)
    lib_dir = tmp_path / "lib"
    with Library(lib_dir) as lib:
        lib.choose_index_kind(IVF_SQ6)
        lib.add([scores])
    files = {p.stem: p for p in lib_dir.glob("index-*.ivfsq")}
    with Library(lib_dir) as lib:
        lib.load_index()
        index = lib.views["texture"].index
        count = index.count()
        maple = scores / "Joplin - Maple Leaf Rag.mxl"
        lib.remove(maple)
        assert lib.views["texture"].index is index  # taken out in place, not rebuilt
        assert index.count() == count and index.stored() < count
        name, _ = _top(lib, DEMO / "queries" / "played - maple leaf rag, middle.mid")
        assert name != maple.name
        removed = index.removed
        assert removed > 0
        # back again: appended to the saved index (loaded as it was, not rebuilt)
        report = lib.add([scores])
        assert report.added == [str(maple)]
        index = lib.views["texture"].index
        assert index.removed == removed and index.stored() > count - removed
        assert _top(lib, DEMO / "queries" / "played - maple leaf rag, middle.mid")[0] == \
            maple.name
        # a changed file replaces its windows: the old ones are taken out
        ode = scores / "Beethoven - Ode to Joy.mid"
        ode.write_bytes((scores / "Verdi - La donna è mobile.mxl").read_bytes())
        assert lib.add([scores]).updated == [str(ode)]
        assert lib.views["texture"].index.removed > removed
        assert _top(lib, DEMO / "queries" / "played - ode to joy.mid")[0] != ode.name
    # the saved file and its record agree: the next open loads it as it is
    for key_file in files.values():
        assert key_file.is_file()
    with Library(lib_dir) as lib:
        key = lib.views["texture"].key(lib.model_id)
        count, checksum, deleted = lib.catalogue.q(
            "SELECT count, checksum, deleted FROM index_state WHERE model_id=?", (key,))[0]
        assert deleted > 0
        loaded = index_store.load_file(index_store.index_file(lib_dir, key, IVF_SQ6),
                                       checksum, count, IVF_SQ6, deleted)
        assert loaded is not None and loaded.stored() == count - deleted
        assert lib.check(repair=False).clean


def test_damaged_compact_index_is_rebuilt_by_check(built, tmp_path):
    lib_dir, _ = _copy(built, IVF_SQ6, tmp_path)
    for f in lib_dir.glob("index-*.ivfsq"):
        data = bytearray(f.read_bytes())
        data[len(data) // 3:len(data) // 3 + 64] = b"\xff" * 64
        f.write_bytes(bytes(data))
    victim = next(lib_dir.glob("index-*.ivfsq"))
    victim.write_bytes(victim.read_bytes()[:1000])  # and one cut short
    with Library(lib_dir) as lib:
        report = lib.check(repair=False)
        assert sum("index file" in p for p in report.problems) == 2 and not report.repaired
    report = check_library(lib_dir)
    assert sum("rebuilt" in r for r in report.repaired) == 2 and not report.lost
    with Library(lib_dir) as lib:
        assert lib.check(repair=False).clean
        assert lib.index_kind == IVF_SQ6
        for query, piece in QUERIES.items():
            assert _top(lib, DEMO / "queries" / query)[0] == piece


def test_short_compact_file_is_refused_before_it_replaces_one(tmp_path):
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(300, EMBED_DIM)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    index = IvfSq.build([(1, 0, np.arange(300), emb)], 300)
    good = tmp_path / "good.ivfsq"
    index.write(good)
    IvfSq.verify(good, 300)
    short = tmp_path / "short.ivfsq"
    short.write_bytes(good.read_bytes()[:-500])
    with pytest.raises(WriteFailed, match="not written completely"):
        IvfSq.verify(short, 300)
    with pytest.raises(WriteFailed):
        IvfSq.verify(good, 299)
    # its search finds each vector itself
    labels, sims = index.search(emb[:20], 3, None)
    assert (labels[:, 0] == np.arange(20)).all() and (sims[:, 0] > 0.98).all()


def test_int8_vectors_round_trip():
    rng = np.random.default_rng(1)
    emb = rng.normal(size=(50, EMBED_DIM)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    starts = np.arange(50, dtype=np.int32).tobytes()
    for kind, width in ((HNSW_FLOAT, 2 * EMBED_DIM), (IVF_SQ6, EMBED_DIM)):
        blob = index_store.encode_vectors(emb, kind)
        assert len(blob) == 50 * width
        s, e = index_store.decode_vectors(starts, blob)
        assert len(s) == 50 and np.abs(e.astype(np.float32) - emb).max() < 0.01
    with pytest.raises(ValueError):
        index_store.decode_vectors(starts, b"\0" * 100)


def test_index_checksums_split_and_older_plain_ones(built, tmp_path):
    """Index files are checked by a hash of their two halves at once (about half the time
    on two cores): a changed byte in either half fails it; a record written with the
    plain whole-file hash still loads its file as it is."""
    from midizero_app.core.hashing import (SPLIT_PREFIX, checksum_matches, file_hash,
                                           split_file_hash)

    lib_dir, _ = _copy(built, IVF_SQ6, tmp_path)
    key_rows = sqlite3.connect(lib_dir / "library.sqlite").execute(
        "SELECT model_id, checksum FROM index_state").fetchall()
    assert key_rows and all(c.startswith(SPLIT_PREFIX) for _, c in key_rows)
    f = next(lib_dir.glob("index-*.ivfsq"))
    good = f.read_bytes()
    assert checksum_matches(f, split_file_hash(f)) and checksum_matches(f, file_hash(f))
    for at in (5, len(good) // 2 + 5, len(good) - 1):
        bad = bytearray(good)
        bad[at] ^= 1
        damaged = tmp_path / f"damaged{at}.ivfsq"
        damaged.write_bytes(bytes(bad))
        assert not checksum_matches(damaged, split_file_hash(f))
    # an older record: the plain hash of every index file; the library opens them unrebuilt
    db = sqlite3.connect(lib_dir / "library.sqlite")
    for key, _ in key_rows:
        files = list(lib_dir.glob(f"index-{key}.*"))
        if files:
            db.execute("UPDATE index_state SET checksum=? WHERE model_id=?",
                       (file_hash(files[0]), key))
    db.commit()
    db.close()
    before = {p.name: p.stat().st_mtime_ns for p in lib_dir.glob("index-*")}
    with Library(lib_dir) as lib:
        for query, piece in QUERIES.items():
            assert _top(lib, DEMO / "queries" / query)[0] == piece
    assert {p.name: p.stat().st_mtime_ns for p in lib_dir.glob("index-*")} == before
