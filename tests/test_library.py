"""The library: real SQLite + real hnswlib, with real files, failures and a killed run."""
from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from midizero_app.core.library import Library, scan_paths

from .conftest import ROOT, random_piece, write_midi


def perform(notes, seed: int, start: float, length: float, drop: float = 0.1,
            spread: float = 0.03, wrong: int = 1):
    """A 'played' excerpt: jitter, chord spread, dropped notes, a wrong note, new tempo."""
    rng = np.random.default_rng(seed)
    sel = [(t, p, d) for t, p, d in notes if start <= t < start + length]
    out = []
    for t, p, d in sel:
        if rng.random() < drop:
            continue
        t2 = (t - start) * 1.1 + rng.normal(0, 0.01) + rng.uniform(0, spread)
        out.append((max(t2, 0.0) + 0.5, p, d))
    for i in rng.choice(len(out), wrong, replace=False):
        t, p, d = out[i]
        out[i] = (t, p + int(rng.choice([-1, 1, 2])), d)
    return out


@pytest.fixture()
def scores(tmp_path, mini_scores) -> Path:
    """A private copy of the mini library (tests change files in it)."""
    d = tmp_path / "scores"
    shutil.copytree(mini_scores, d)
    return d


@pytest.fixture()
def lib(tmp_path, bundled_model, scores):
    library = Library(tmp_path / "lib")
    report = library.add([scores])
    assert len(report.added) == 15 and not report.failed
    yield library
    library.close()


def test_add_search_update_remove(lib, scores, tmp_path):
    mini_scores = scores
    st = lib.stats()
    assert st["ok"] == 15 and st["windows"] > 500 and st["index_bytes"] > 0
    # Re-adding is a no-op.
    again = lib.add([mini_scores])
    assert len(again.unchanged) == 15 and not again.added
    # Perturbed played excerpts find their piece first, with the position in the score.
    for s in (0, 5, 9):
        q = write_midi(tmp_path / f"q{s}.mid", perform(random_piece(s), s, start=10.0, length=8.0))
        res = lib.search(q, top=3)
        assert res["query_kind"] == "performance"
        top = res["results"][0]
        assert Path(top["path"]).name == f"piece_{s:02d}.mid"
        assert abs(top["positions"][0]["seconds"] - 10.0) <= 2.0
    # Updating a file replaces its windows: the old content is no longer found there.
    target = mini_scores / "piece_03.mid"
    old = random_piece(3)
    write_midi(target, random_piece(103))
    os.utime(target, (time.time() + 5, time.time() + 5))
    rep = lib.add([mini_scores])
    assert [Path(p).name for p in rep.updated] == ["piece_03.mid"]
    q = write_midi(tmp_path / "new.mid", perform(random_piece(103), 1, 5.0, 8.0))
    assert Path(lib.search(q)["results"][0]["path"]).name == "piece_03.mid"
    q_old = write_midi(tmp_path / "old.mid", perform(old, 1, 5.0, 8.0, drop=0, wrong=0))
    res_old = lib.search(q_old)
    assert Path(res_old["results"][0]["path"]).name != "piece_03.mid" or res_old["not_in_library"]
    # Removing forgets pieces (the files stay).
    removed = lib.remove(mini_scores / "piece_00.mid")
    assert len(removed) == 1 and (mini_scores / "piece_00.mid").exists()
    q0 = write_midi(tmp_path / "q0b.mid", perform(random_piece(0), 2, 10.0, 8.0))
    assert all(Path(r["path"]).name != "piece_00.mid" for r in lib.search(q0)["results"])


def test_persistence_and_corrupt_index_rebuilt(lib, tmp_path):
    path = lib.path
    q = write_midi(tmp_path / "q.mid", perform(random_piece(7), 7, 4.0, 8.0))
    expected = lib.search(q)["results"][0]["path"]
    model_id = lib.model_id
    lib.close()
    index_file = path / f"index-{model_id}.hnsw"
    data = bytearray(index_file.read_bytes())
    data[100:4000] = os.urandom(3900)  # garbage that could crash hnswlib if loaded
    index_file.write_bytes(bytes(data))
    lib2 = Library(path)
    assert lib2.search(q)["results"][0]["path"] == expected
    lib2.close()
    index_file.unlink()
    lib3 = Library(path)
    assert lib3.search(q)["results"][0]["path"] == expected
    assert index_file.is_file()
    lib3.close()


def test_bad_inputs_are_reported_and_nothing_else_lost(tmp_path, bundled_model):
    d = tmp_path / "bad"
    d.mkdir()
    write_midi(d / "good.mid", random_piece(1))
    (d / "empty.mid").write_bytes(b"")
    good = (d / "good.mid").read_bytes()
    (d / "truncated.mid").write_bytes(good[: len(good) // 3])
    (d / "random.mid").write_bytes(np.random.default_rng(0).bytes(4000))
    (d / "broken.musicxml").write_text("<?xml version='1.0'?><score-partwise><part id='P1'>"
                                       "<measure number='1'><note><pitch><step>C")
    write_midi(d / "drums.mid", random_piece(2, 30), drums=True)
    os.mkfifo(d / "fifo.mid")
    (d / "folder.mid").mkdir()
    lib = Library(tmp_path / "lib")
    rep = lib.add([d, tmp_path / "missing"])
    failed = {Path(p).name: r for p, r in rep.failed}
    assert [Path(p).name for p in rep.added] == ["good.mid"]
    assert failed["empty.mid"] == "empty file"
    assert "corrupt MIDI" in failed["truncated.mid"]
    assert "corrupt MIDI" in failed["random.mid"]
    assert "could not parse" in failed["broken.musicxml"]
    assert "drums" in failed["drums.mid"]
    assert "regular file" in failed["fifo.mid"]
    assert failed["missing"] == "no such file or folder"
    listed = {Path(p["path"]).name: p for p in lib.pieces()}
    assert listed["random.mid"]["status"] == "failed" and listed["random.mid"]["error"]
    assert lib.stats()["ok"] == 1
    lib.close()


def test_unreadable_folder_reported(tmp_path, bundled_model):
    d = tmp_path / "scores"
    (d / "locked").mkdir(parents=True)
    write_midi(d / "ok.mid", random_piece(4, 20))
    write_midi(d / "locked" / "hidden.mid", random_piece(5, 20))
    os.chmod(d / "locked", 0o000)
    cmd = [sys.executable, "-m", "midizero_app.cli", "index", str(d), "--library",
           str(tmp_path / "lib"), "--json", "--quiet"]
    if os.geteuid() == 0:
        # root reads everything: run without the capabilities that bypass permissions.
        if not shutil.which("setpriv"):
            pytest.skip("running as root without setpriv: cannot make a folder unreadable")
        cmd = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] + cmd
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=str(ROOT), timeout=300)
    os.chmod(d / "locked", 0o755)
    assert out.returncode == 0, out.stderr
    import json
    report = json.loads(out.stdout)
    assert [Path(p).name for p in report["added"]] == ["ok.mid"]
    assert any(f["path"].endswith("locked") and "not readable" in f["reason"]
               for f in report["failed"])


def test_killed_indexing_run_leaves_library_searchable(tmp_path, bundled_model, mini_scores):
    lib_dir = tmp_path / "lib"
    with Library(lib_dir) as lib:
        lib.add([mini_scores / "piece_01.mid", mini_scores / "piece_02.mid"])
    many = tmp_path / "many"
    many.mkdir()
    for s in range(200, 260):
        write_midi(many / f"m{s}.mid", random_piece(s, 400))
    proc = subprocess.Popen([sys.executable, "-m", "midizero_app.cli", "index", str(many),
                             "--library", str(lib_dir), "--workers", "1", "--quiet"],
                            cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    db = lib_dir / "library.sqlite"
    deadline = time.monotonic() + 240
    n = 0
    while time.monotonic() < deadline and proc.poll() is None:
        con = sqlite3.connect(db, timeout=30)
        n = con.execute("SELECT COUNT(DISTINCT piece) FROM vectors").fetchone()[0]
        con.close()
        if n >= 5:
            break
        time.sleep(0.2)
    proc.kill()
    proc.wait()
    assert n >= 5, "the indexing run never got going"
    with Library(lib_dir) as lib:
        q = write_midi(tmp_path / "q.mid", perform(random_piece(2), 3, 6.0, 8.0))
        assert Path(lib.search(q)["results"][0]["path"]).name == "piece_02.mid"
        assert lib.stats()["ok"] >= n  # every piece the killed run stored is kept


def test_scan_paths_single_file_and_order(tmp_path):
    write_midi(tmp_path / "b.mid", random_piece(1, 12))
    write_midi(tmp_path / "a.mid", random_piece(2, 12))
    (tmp_path / "notes.txt").write_text("not a score")
    files, problems = scan_paths([tmp_path])
    assert [f.name for f in files] == ["a.mid", "b.mid"] and not problems


def test_remove_in_a_fresh_process_keeps_the_index_consistent(tmp_path, bundled_model,
                                                             mini_scores):
    """``midizero library remove`` opens the library without loading its indexes: the
    removed windows must still leave the saved index files (a stale file returned labels
    of removed pieces)."""
    lib_dir = tmp_path / "lib"
    keep, gone = mini_scores / "piece_02.mid", mini_scores / "piece_03.mid"
    with Library(lib_dir) as lib:
        lib.add([keep, gone])
    with Library(lib_dir) as lib:  # a new process's view: nothing loaded yet
        assert lib.remove(gone) == [str(gone.resolve())]
    with Library(lib_dir) as lib:
        q = write_midi(tmp_path / "q.mid", perform(random_piece(3), 3, 6.0, 8.0))
        res = lib.search(q)
        assert all(Path(r["path"]).name != "piece_03.mid" for r in res["results"])
        q2 = write_midi(tmp_path / "q2.mid", perform(random_piece(2), 3, 6.0, 8.0))
        assert Path(lib.search(q2)["results"][0]["path"]).name == "piece_02.mid"
        tune = lib.search(str(q2), melody=True)  # the melody view too
        assert all(Path(r["path"]).name != "piece_03.mid" for r in tune["results"])


def _candidates(lib, path):
    """The texture search's steps up to the confidence: ranked, verified candidates."""
    from midizero_app.core.frames import group_performance
    from midizero_app.core.scores import load_notes
    from midizero_app.core.search import QueryWindows, VoteAccumulator, verify
    from midizero_app.core.windows import QUERY_HOP, make_windows

    emb = lib.embedder
    frames = group_performance(load_notes(path))
    w, starts = make_windows(frames, QUERY_HOP, emb.win_length)
    e = emb.embed(w)
    labels, sims = lib.knn(e, 10)
    acc = VoteAccumulator(*lib.label_maps)
    acc.add(starts, labels, sims, emb.win_length)
    return verify(acc.rank(5), {0: QueryWindows(e, starts, frames)}, lib)


def test_alignment_evidence_tells_a_played_piece_from_an_unknown_one(lib, tmp_path):
    known = write_midi(tmp_path / "known.mid", perform(random_piece(5), 5, 8.0, 8.0))
    unknown = write_midi(tmp_path / "unknown.mid", perform(random_piece(205), 5, 8.0, 8.0))
    top = _candidates(lib, known)[0]
    assert Path(lib.piece(top.piece)["path"]).name == "piece_05.mid"
    # most of the played windows lie close to the score's windows at the aligned place,
    # and most played notes are in the score there (one wrong, 10 % dropped: perform())
    assert top.aligned > 0.7 and top.aligned_hi > 0.5 and top.notes > 0.85
    stranger = _candidates(lib, unknown)[0]
    assert stranger.aligned < top.aligned - 0.2 and stranger.aligned_hi < top.aligned_hi / 2
    assert stranger.notes < top.notes - 0.2
    assert lib.search(unknown)["not_in_library"] and not lib.search(known)["not_in_library"]


def test_window_vectors_are_the_indexed_ones(lib):
    label_piece, label_frame = lib.label_maps
    label = int(np.flatnonzero(label_piece >= 0)[40])
    pid, frame = int(label_piece[label]), int(label_frame[label])
    starts, vecs = lib.window_vectors(pid, frame - 0.5, frame + 4)
    assert starts.tolist() == [frame, frame + 2, frame + 4]
    # stored as float16: equal to the index's vector within that precision
    stored = lib._views["texture"].index.get_items([label])[0]
    assert np.allclose(vecs[0], stored, atol=2e-3)
    assert lib.window_vectors(pid, 1e6, 1e6 + 10)[0].size == 0
    assert lib.window_vectors(10**6, 0, 10)[0].size == 0


def test_threshold_per_query_length():
    from midizero_app.core.search import Calibration

    c = Calibration.from_card({"calibration": {"threshold": 0.9,
                                               "thresholds": [[30, 0.8], [120, 0.4]]}})
    assert c.threshold_for(10) == pytest.approx(0.8) and c.threshold_for(500) == pytest.approx(0.4)
    assert c.threshold_for(60) == pytest.approx(0.6)  # halfway in log windows
    assert Calibration.from_card({"calibration": {"threshold": 0.9}}).threshold_for(60) == 0.9


def test_note_agreement_along_an_alignment():
    from midizero_app.core.frames import Frames
    from midizero_app.core.search import note_agreement

    score = Frames.from_chords([(48,), (60, 64), (62,), (65,), (67, 71), (72,)] * 4,
                               [0.5 * i for i in range(24)])
    played = Frames.from_chords([(60, 64), (62,), (66,), (67, 71)], [0.0, 0.4, 0.8, 1.2])
    # played frame i sits at score frame 1 + i: 5 of its 6 notes are there (66 is not)
    assert note_agreement(played, 0, score, 1.0, 1.0) == pytest.approx(5 / 6)
    # a live query's frames start at frame 10 of the query: the same place
    assert note_agreement(played, 10, score, -9.0, 1.0) == pytest.approx(5 / 6)
    assert note_agreement(played, 0, score, 400.0, 1.0) == 0.0  # beyond the score
    other = Frames.from_chords([(30,), (31,)] * 10, [0.5 * i for i in range(20)])
    assert note_agreement(played, 0, other, 1.0, 1.0) == 0.0


def test_a_long_query_is_judged_part_by_part(lib, tmp_path, monkeypatch):
    import midizero_app.core.query as query

    whole = write_midi(tmp_path / "whole.mid", perform(random_piece(5), 7, 0.0, 50.0))  # 44 s
    r = lib.search(whole)
    assert r["segments"]["searched"] == 2 and r["segments"]["agreeing"] == 2
    assert not r["not_in_library"] and Path(r["results"][0]["path"]).name == "piece_05.mid"
    # 22 s of a library piece, then 33 s of a stranger: the whole query's votes still
    # name the piece, its second half does not, and the confidence says so
    mixed = perform(random_piece(5), 7, 0.0, 20.0) + [
        (t + 23.0, p, d) for t, p, d in perform(random_piece(205), 8, 0.0, 30.0)]
    path = write_midi(tmp_path / "mixed.mid", mixed)
    judged = lib.search(path)
    assert judged["segments"] == {"searched": 2, "agreeing": 1}
    monkeypatch.setattr(query, "LONG_QUERY_S", 1e9)
    plain = lib.search(path)
    assert "segments" not in plain
    assert judged["results"][0]["confidence"] < plain["results"][0]["confidence"]
    # a short query is not split
    short = write_midi(tmp_path / "short.mid", perform(random_piece(5), 7, 8.0, 10.0))
    assert "segments" not in lib.search(short)


def test_search_after_removing_nearly_every_piece(lib, scores, tmp_path):
    """hnswlib keeps removed windows, marked deleted; with fewer live windows left than a
    search asks for, its query raised ("Probably ef or M is too small") instead of
    answering from what is left. An index that is mostly deleted windows is rebuilt."""
    tune = write_midi(tmp_path / "tune.mid",
                      [(0.4 * i, p, 0.35) for i, p in enumerate((60, 62, 64, 65, 67, 65, 64, 62,
                                                                 60, 67, 64, 60))])
    assert not lib.add([tune]).failed
    lib.load_index(view="melody")
    before = lib.stats()["index_bytes"]
    lib.remove(scores)
    assert [p["path"] for p in lib.pieces()] == [str(tune)]
    assert lib.stats()["index_bytes"] < before / 10  # rebuilt from the tune's windows
    for melody in (True, False):  # the melody view (k = 20) and the texture view
        res = lib.search(tune, top=3, melody=melody)
        assert res["results"] and res["results"][0]["path"] == str(tune), (melody, res)
