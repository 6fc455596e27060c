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
                                     "eval", "devices", "listen"])
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
    out = midizero("search", q, "--library", tmp_path / "empty")
    assert out.returncode == 1 and "library is empty" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


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
