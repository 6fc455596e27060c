"""The ``midizero`` command line: contracts of DESIGN §4.1–4.2, run as a real process."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT, random_piece, write_midi
from .test_library import perform

RESULT_KEYS = {"query", "frames", "windows", "elapsed_ms", "not_in_library", "model_id", "results"}
ENTRY_KEYS = {"rank", "piece_id", "path", "title", "composer", "score", "confidence",
              "transpose", "positions"}
POSITION_KEYS = {"seconds", "measure", "beat", "frame", "support"}


def midizero(*args, check: bool = False) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-m", "midizero_app.cli", *map(str, args)],
                         capture_output=True, text=True, cwd=str(ROOT), timeout=600)
    if check:
        assert out.returncode == 0, out.stderr
    return out


@pytest.mark.parametrize("command", ["index", "search", "library", "demo", "gen-data", "train",
                                     "eval", "devices", "listen", "match-recordings", "draw"])
def test_every_command_has_help(command):
    out = midizero(command, "--help")
    assert out.returncode == 0 and "usage: midizero" in out.stdout


def test_usage_error_exit_2():
    assert midizero("search").returncode == 2
    assert midizero("no-such-command").returncode == 2


def test_index_search_json_contract(tmp_path, bundled_model, mini_scores):
    lib = tmp_path / "lib"
    out = midizero("index", mini_scores, "--library", lib, check=True)
    assert "15 added" in out.stdout
    q1 = write_midi(tmp_path / "q1.mid", perform(random_piece(4), 4, 12.0, 10.0))
    q2 = write_midi(tmp_path / "q2.mid", perform(random_piece(8), 8, 2.0, 10.0))
    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"MThd garbage")
    out = midizero("search", q1, bad, q2, "--library", lib, "--json", "--top", "3")
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert [Path(r["query"]).name for r in lines] == ["q1.mid", "bad.mid", "q2.mid"]
    assert "corrupt MIDI" in lines[1]["error"]
    for res, want in ((lines[0], "piece_04.mid"), (lines[2], "piece_08.mid")):
        assert RESULT_KEYS <= set(res)
        assert len(res["results"]) == 3
        top = res["results"][0]
        assert ENTRY_KEYS <= set(top) and POSITION_KEYS <= set(top["positions"][0])
        assert Path(top["path"]).name == want and top["rank"] == 1
        assert 0.0 <= top["confidence"] <= 1.0
    assert abs(lines[0]["results"][0]["positions"][0]["seconds"] - 12.0) <= 2.0
    text = midizero("search", q1, "--library", lib, "--aggregate", "sum")
    assert "piece 04" in text.stdout.splitlines()[1]
    stats = json.loads(midizero("library", "stats", "--library", lib, "--json", check=True).stdout)
    assert stats["ok"] == 15
    listed = json.loads(midizero("library", "list", "--library", lib, "--json", check=True).stdout)
    assert len(listed) == 15 and {"title", "composer", "status", "n_frames"} <= set(listed[0])
    out = midizero("library", "remove", mini_scores / "piece_04.mid", "--library", lib, check=True)
    assert "removed 1" in out.stdout


def test_transpose_finds_shifted_query(tmp_path, bundled_model, mini_scores):
    lib = tmp_path / "lib"
    midizero("index", mini_scores, "--library", lib, check=True)
    shifted = [(t, p + 3, d) for t, p, d in perform(random_piece(6), 6, 8.0, 10.0)]
    q = write_midi(tmp_path / "up3.mid", shifted)
    res = json.loads(midizero("search", q, "--library", lib, "--json", "--transpose", "4",
                              check=True).stdout)
    top = res["results"][0]
    assert Path(top["path"]).name == "piece_06.mid" and top["transpose"] == -3


def test_empty_library_is_a_clear_user_error(tmp_path, bundled_model):
    q = write_midi(tmp_path / "q.mid", random_piece(1, 20))
    (tmp_path / "nothing").mkdir()
    midizero("index", tmp_path / "nothing", "--library", tmp_path / "empty", check=True)
    out = midizero("search", q, "--library", tmp_path / "empty")
    assert out.returncode == 1 and "library is empty" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def one_line_error(out: subprocess.CompletedProcess) -> str:
    """The single ``midizero: ...`` line a user error prints (exit 1, no traceback)."""
    assert out.returncode == 1, (out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("midizero: "), out.stderr
    return lines[0]


def test_a_mistyped_library_folder_is_one_line_and_no_library_is_made(tmp_path, bundled_model):
    """``--library <typo>``: search, library list/stats/check and listen say there is no
    library there (one line, exit 1) and leave nothing behind; index makes one."""
    import numpy as np
    import soundfile

    q = write_midi(tmp_path / "q.mid", random_piece(1, 20))
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    t = np.arange(22050) / 22050
    soundfile.write(recordings / "a.wav", 0.3 * np.sin(2 * np.pi * 440 * t), 22050)
    typo = tmp_path / "libary"
    exists = tmp_path / "some-folder"  # a folder that exists but holds no library
    exists.mkdir()
    for folder in (typo, exists):
        for args in (("search", q), ("library", "list"), ("library", "stats"),
                     ("library", "check"), ("listen", "--replay", q),
                     ("match-recordings", recordings)):
            out = midizero(*args, "--library", folder)
            line = one_line_error(out)
            assert "no library" in line and str(folder) in line, line
        assert not typo.exists()
        assert list(exists.iterdir()) == []
    midizero("index", q, "--library", typo, check=True)
    assert (typo / "library.sqlite").is_file()


def test_every_midizero_error_is_one_line_and_verbose_shows_the_traceback(tmp_path):
    """A MidizeroError anywhere below the CLI is one line and exit 1; ``--verbose`` (before
    or after the command) adds the traceback."""
    typo = tmp_path / "nope"
    line = one_line_error(midizero("library", "stats", "--library", typo))
    assert "Traceback" not in line
    for args in (("--verbose", "library", "stats"), ("library", "stats", "--verbose")):
        out = midizero(*args, "--library", typo)
        assert out.returncode == 1 and "Traceback" in out.stderr and "NoLibrary" in out.stderr
        assert out.stderr.strip().splitlines()[-1].startswith("midizero: there is no library")


def test_last_net_words_damage_and_a_full_disk_in_one_line():
    """What reaches main() unwrapped from SQLite or the disk still reads as one line that
    says what to do."""
    import errno
    import sqlite3

    from midizero_app.cli import user_message
    from midizero_app.core.errors import LibraryBusy, LibraryDamaged, WriteFailed

    damaged = user_message(sqlite3.DatabaseError("database disk image is malformed"))
    assert damaged == "the library is damaged: run `midizero library check`"
    full = "the disk is full: nothing was changed; free space and run `midizero index` again"
    assert user_message(OSError(errno.ENOSPC, "No space left on device")) == full
    assert user_message(sqlite3.OperationalError("database or disk is full")) == full
    assert user_message(LibraryDamaged("index-texture.hnsw is damaged")) == \
        "index-texture.hnsw is damaged: run `midizero library check`"
    assert "try again" in user_message(LibraryBusy("the library is being updated"))
    assert user_message(WriteFailed("could not write x.mid (Permission denied): nothing "
                                    "was changed")).startswith("could not write x.mid")
    assert user_message(ValueError("a bug")) is None  # a bug keeps its traceback


def test_a_damaged_catalogue_is_one_line_that_names_library_check(tmp_path, bundled_model,
                                                                   mini_scores):
    """Junk in the middle of library.sqlite: search and stats say the library is damaged
    and how to repair it, in one line."""
    lib = tmp_path / "lib"
    midizero("index", mini_scores, "--library", lib, check=True)
    db = lib / "library.sqlite"
    data = bytearray(db.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    for at in range(page, len(data), page):  # junk in every page but the first (the schema)
        data[at:at + 200] = bytes(range(200))
    db.write_bytes(bytes(data))
    for wal in (lib / "library.sqlite-wal", lib / "library.sqlite-shm"):
        wal.unlink(missing_ok=True)
    q = write_midi(tmp_path / "q.mid", random_piece(4, 40))
    for args in (("search", q), ("library", "stats")):
        line = one_line_error(midizero(*args, "--library", lib))
        assert "midizero library check" in line, line


def test_library_check_reports_repairs_and_exit_codes(tmp_path, bundled_model, mini_scores):
    """``library check``: a clean library is reported clean (exit 0); with its index files
    deleted, ``--no-repair`` reports the damage and changes nothing (exit 1), a plain check
    rebuilds them (exit 0, each repair listed) and the search works again."""
    lib = tmp_path / "lib"
    midizero("index", mini_scores, "--library", lib, check=True)
    out = midizero("library", "check", "--library", lib, check=True)
    assert out.stdout.strip()
    report = json.loads(midizero("library", "check", "--library", lib, "--json",
                                 check=True).stdout)
    assert report["clean"] and report["ok"] and not report["lost"] and not report["repaired"]
    assert {"summary", "problems"} <= set(report)
    indexes = sorted(lib.glob("*.hnsw"))
    assert indexes, sorted(p.name for p in lib.iterdir())
    for f in indexes:
        f.write_bytes(b"\0" * 64)  # damaged in place
    out = midizero("library", "check", "--no-repair", "--library", lib, "--json")
    report = json.loads(out.stdout)
    assert out.returncode == 1 and not report["clean"] and report["problems"]
    assert all(f.read_bytes() == b"\0" * 64 for f in indexes)  # nothing changed
    out = midizero("library", "check", "--library", lib)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "repaired: " in out.stdout and "lost: " not in out.stdout
    q = write_midi(tmp_path / "q.mid", perform(random_piece(4), 4, 12.0, 10.0))
    res = json.loads(midizero("search", q, "--library", lib, "--json", check=True).stdout)
    assert Path(res["results"][0]["path"]).name == "piece_04.mid"
    out = midizero("library", "check", "--library", lib, "--json", check=True)
    assert json.loads(out.stdout)["clean"]


def test_demo_command_identifies_the_played_demo_queries(tmp_path, bundled_model):
    """The README's first command: the bundled demo library and its played excerpts."""
    out = midizero("demo", "--library", tmp_path / "demo", check=True)
    assert "10 added" in out.stdout and "0 failed" in out.stdout
    blocks = out.stdout.split("played - ")[1:]
    found = {b.split(":")[0]: b.splitlines()[1:3] for b in blocks}
    assert "Maple Leaf Rag" in found["maple leaf rag, middle.mid"][0]
    assert "Mozart" in found["mozart.mid"][0]
    assert "Ode to Joy" in found["ode to joy.mid"][0]
    assert "not in your library" in found["a chorale not in the library.mid"][0]


def test_a_doubted_short_tune_says_not_sure(tmp_path, bundled_model, mini_scores):
    """A stranger's 10-note tune: not confident, and too short to call "not in your
    library"; the JSON says so as ``"verdict": "unsure"``."""
    from .test_melody import soprano

    lib = tmp_path / "lib"
    midizero("index", mini_scores, "--library", lib, check=True)
    line = soprano("bach/bwv269")[:10] + 2
    q = write_midi(tmp_path / "tune.mid", [(0.5 * i, int(p), 0.45) for i, p in enumerate(line)])
    out = midizero("search", q, "--library", lib)
    assert out.returncode == 1 and "not sure: 10 notes of a tune" in out.stdout, out.stdout
    res = json.loads(midizero("search", q, "--library", lib, "--json").stdout)
    assert res["mode"] == "melody" and res["tune_notes"] == 10
    assert res["not_in_library"] and res["verdict"] == "unsure"
