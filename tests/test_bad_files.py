"""Malformed, odd and hostile input files: each is indexed or fails with a one-line reason,
and the good files beside them are indexed and found.

Everything here is a real file on disk read by the real parsers, worker processes and
library; the long MIDI files are written with mido.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import mido
import numpy as np
import pytest

from midizero_app.core.parsing import parse_files
from midizero_app.core.scores import ScoreError, load_notes

from .conftest import ROOT, random_piece, write_midi

DEMO = ROOT / "resources" / "demo"
GOOD = ("Beethoven - Ode to Joy.mid", "Mozart - Sonata K.545 (I, exposition).mxl",
        "Joplin - Maple Leaf Rag.mxl", "Chopin - Mazurka Op. 6 No. 2.krn")
ALL_SUFFIXES = (".mid", ".midi", ".musicxml", ".xml", ".mxl", ".mei", ".krn", ".abc", ".wav",
                ".flac", ".ogg", ".mp3")
NON_UTF8 = os.fsdecode(b"\xff\xfe")  # a file name part that is not UTF-8


def long_midi(path: Path, hours: float, step_s: float = 0.5, tpb: int = 480,
              bpm: float = 120.0) -> Path:
    """A type-1 MIDI file of ``hours``: one note every ``step_s`` seconds, held half of it."""
    mid = mido.MidiFile(type=1, ticks_per_beat=tpb)
    meta = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm), time=0),
                           mido.MetaMessage("time_signature", numerator=4, denominator=4)])
    track = mido.MidiTrack()
    step = round(step_s * tpb * bpm / 60)
    for i in range(int(hours * 3600 / step_s)):
        pitch = 48 + (i * 7) % 36
        track.append(mido.Message("note_on", note=pitch, velocity=80,
                                  time=0 if i == 0 else step - step // 2))
        track.append(mido.Message("note_off", note=pitch, velocity=0, time=step // 2))
    mid.tracks += [meta, track]
    mid.save(path)
    return path


def assert_reason(reason: str) -> None:
    """A reason a user can read: one printable line, no traceback, no Python internals."""
    assert isinstance(reason, str) and reason.strip(), reason
    assert "\n" not in reason and "Traceback" not in reason and 'File "' not in reason
    assert len(reason) < 300, reason
    reason.encode("utf-8")  # storable and printable: no undecodable file-name bytes


# --- long files -----------------------------------------------------------------------

def test_a_five_hour_midi_is_read_not_refused_as_corrupt(tmp_path, bundled_model):
    from midizero_app.core.library import Library

    folder = tmp_path / "scores"
    folder.mkdir()
    path = long_midi(folder / "five hours.mid", 5.0, step_s=2.0)
    [result] = list(parse_files([path], workers=1))
    assert result.error is None, result.error
    notes = result.notes
    assert len(notes) == 9000 and notes.onset[-1] == pytest.approx(5 * 3600 - 2.0)
    assert notes.quantised and notes.measure[-1] == 9000
    # indexed, and found from 40 notes played from its fourth hour
    lib = Library(tmp_path / "lib")
    try:
        report = lib.add([folder])
        assert [Path(p).name for p in report.added] == [path.name], report.failed
        excerpt = [(i * 0.5, 48 + ((i + 7000) * 7) % 36, 0.25) for i in range(40)]
        res = lib.search(write_midi(tmp_path / "excerpt.mid", excerpt))
        assert res["results"][0]["title"] == "five hours"
    finally:
        lib.close()


def test_a_midi_with_fine_ticks_keeps_its_times_and_grid(tmp_path):
    """9,600 ticks a beat for 3 hours: 207 M ticks, read with its ticks scaled."""
    notes = load_notes(long_midi(tmp_path / "fine.mid", 3.0, step_s=1.0, tpb=9600))
    assert len(notes) == 10800
    np.testing.assert_allclose(notes.onset, np.arange(10800) * 1.0, atol=1e-3)
    assert notes.quantised and len(np.unique(notes.grid)) == 10800
    assert notes.measure[-1] == 5400 and notes.beat[-1] == pytest.approx(3.0)


def test_a_midi_past_the_limit_is_too_long_not_corrupt(tmp_path):
    path = long_midi(tmp_path / "thirty hours.mid", 30.0, step_s=60.0)
    with pytest.raises(ScoreError, match=r"^too long \(30 h; the limit is 24 h\)$"):
        load_notes(path)


# --- not audio, and third-party noise ---------------------------------------------------

QUIET_SCRIPT = textwrap.dedent("""
    import sys
    from midizero_app.audio.worker import transcribe_files
    from midizero_app.core.parsing import parse_files
    audio = [r for r in transcribe_files(sys.argv[1:3])]
    scores = [r for r in parse_files(sys.argv[3:], workers=1)]
    for r in audio + scores:
        print(r.error or f"{len(r.notes)} notes")
""")


def test_a_text_file_named_mp3_is_not_an_audio_file_and_the_terminal_stays_quiet(tmp_path):
    text = tmp_path / "notes.mp3"
    text.write_text("shopping list: milk, eggs\n")
    junk = tmp_path / "junk.mp3"
    junk.write_bytes(b"\x00" * 4000)  # mpg123 prints while it looks for a frame
    entity = tmp_path / "entity.musicxml"
    entity.write_text(_musicxml(title="&title;"))  # partitura warns on a one-measure score
    args = [sys.executable, "-c", QUIET_SCRIPT, str(text), str(junk), str(entity)]
    env = {k: v for k, v in os.environ.items() if k != "MIDIZERO_VERBOSE"}
    out = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "not an audio file (it holds text, not WAV, FLAC, Ogg, MP3 or AIFF audio)"
    assert lines[1].startswith("not an audio file") and lines[2] == "2 notes"
    assert out.stderr == ""
    # --verbose (MIDIZERO_VERBOSE=1) keeps the workers' stderr: the noise is still there
    loud = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env={**env, "MIDIZERO_VERBOSE": "1"})
    assert loud.stdout == out.stdout and loud.stderr.strip()


# --- titles ---------------------------------------------------------------------------

def _musicxml(title: str | None = None, composer: str | None = None) -> str:
    work = f"<work><work-title>{title}</work-title></work>" if title is not None else ""
    ident = (f'<identification><creator type="composer">{composer}</creator></identification>'
             if composer is not None else "")
    return textwrap.dedent(f"""\
        <?xml version="1.0" encoding="UTF-8"?>
        <!DOCTYPE score-partwise PUBLIC "-//Recordare//DTD MusicXML 3.1 Partwise//EN"
          "http://www.musicxml.org/dtds/partwise.dtd">
        <score-partwise version="3.1">{work}{ident}
          <part-list><score-part id="P1"><part-name>Piano</part-name></score-part></part-list>
          <part id="P1"><measure number="1">
            <attributes><divisions>1</divisions>
              <time><beats>4</beats><beat-type>4</beat-type></time></attributes>
            <note><pitch><step>C</step><octave>4</octave></pitch><duration>1</duration></note>
            <note><pitch><step>E</step><octave>4</octave></pitch><duration>1</duration></note>
          </measure></part>
        </score-partwise>
        """)


def test_an_unresolved_entity_title_falls_back_to_the_file_name(tmp_path):
    path = tmp_path / "Satie - Gymnopédie No. 1.musicxml"
    path.write_text(_musicxml(title="&title;", composer="&composer;"))
    notes = load_notes(path)
    assert notes.title == "Satie - Gymnopédie No. 1" and notes.composer == "Satie"
    own = tmp_path / "Satie - Other.musicxml"
    own.write_text(_musicxml(title="Gnossienne", composer="Erik Satie"))
    assert (load_notes(own).title, load_notes(own).composer) == ("Gnossienne", "Erik Satie")


def test_every_format_without_a_title_takes_the_file_name(tmp_path):
    import partitura

    stem = "Satie - Gnossienne No. 1"
    write_midi(tmp_path / f"{stem}.mid", random_piece(3, 20))
    (tmp_path / f"{stem}.musicxml").write_text(_musicxml())
    shutil.copy(partitura.EXAMPLE_MEI, tmp_path / f"{stem}.mei")  # an empty <title/>
    (tmp_path / f"{stem}.krn").write_text("**kern\n*M4/4\n=1\n4c\n4e\n4g\n4cc\n==\n*-\n")
    (tmp_path / f"{stem}.abc").write_text("X:1\nM:4/4\nL:1/4\nK:C\nCDEF|GABc|\n")
    plain = tmp_path / "gnossienne_2.abc"
    plain.write_text("X:1\nM:4/4\nL:1/4\nK:C\nCDEF|GABc|\n")
    results = {Path(r.path).name: r for r in parse_files(sorted(tmp_path.iterdir()))}
    assert len(results) == 6
    for name, r in results.items():
        assert r.error is None, (name, r.error)
        if name == plain.name:
            assert (r.notes.title, r.notes.composer) == ("gnossienne 2", "")
        else:
            assert (r.notes.title, r.notes.composer) == (stem, "Satie"), name


# --- worker processes whose parent is gone ----------------------------------------------

KILLED_SCRIPT = textwrap.dedent("""
    import sys
    from midizero_app.core.parsing import parse_files
    print("started", flush=True)
    for r in parse_files(sys.argv[1:], workers=2):
        print(r.error or "ok", flush=True)
""")

ISOLATED_SCRIPT = textwrap.dedent("""
    from midizero_app.core.isolated import run_isolated
    print("started", flush=True)
    run_isolated("tests.test_bad_files:report_progress_for_a_while", progress=print)
""")


def report_progress_for_a_while(progress=None, cancel=None) -> int:
    """A job for run_isolated: reports progress every 10 ms for 60 s (ignores cancel)."""
    for i in range(6000):
        progress(i)
        time.sleep(0.01)
    return 0


def _kill_parent_and_read_stderr(script: str, args: list[str], after_s: float) -> str:
    """Start ``script``, kill -9 it ``after_s`` seconds after it prints "started", and
    return what its children print to the stderr they share, once they have all exited."""
    env = {**os.environ, "MIDIZERO_VERBOSE": "1"}  # workers keep stderr: tracebacks show
    proc = subprocess.Popen([sys.executable, "-c", script, *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        assert proc.stdout.readline().strip() == "started"
        time.sleep(after_s)
        proc.kill()
        proc.wait()
        # the pipe closes when the last worker exits (each holds stderr)
        _, err = proc.communicate(timeout=120)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # nothing left behind if the test fails
        except ProcessLookupError:
            pass
    return err


def test_a_killed_indexers_workers_exit_quietly(tmp_path):
    files = [long_midi(tmp_path / f"long{i}.mid", 3.0, step_s=0.5) for i in range(4)]
    err = _kill_parent_and_read_stderr(KILLED_SCRIPT, [str(f) for f in files], 4.0)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


def test_an_isolated_job_whose_parent_is_killed_exits_quietly():
    err = _kill_parent_and_read_stderr(ISOLATED_SCRIPT, [], 3.0)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


# --- file names that are not UTF-8 ------------------------------------------------------

def test_file_names_that_are_not_utf8_parse_in_the_workers(tmp_path):
    if sys.platform == "win32":
        pytest.skip("Windows file names are UTF-16")
    import soundfile as sf

    mid = write_midi(tmp_path / f"{NON_UTF8}.mid", random_piece(4, 24))
    xml = tmp_path / f"Satie {NON_UTF8} - Nocturne.musicxml"
    xml.write_text(_musicxml())
    krn = tmp_path / f"{NON_UTF8}.krn"
    krn.write_text("**kern\n*M4/4\n=1\n4c\n4e\n4g\n4cc\n==\n*-\n")
    abc = tmp_path / f"{NON_UTF8}.abc"
    abc.write_text("X:1\nT:Tune\nM:4/4\nL:1/4\nK:C\nCDEF|GABc|\n")
    bad = tmp_path / f"bad {NON_UTF8}.mxl"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    results = {r.path: r for r in parse_files([mid, xml, krn, abc, bad])}
    assert set(results) == {str(p) for p in (mid, xml, krn, abc, bad)}
    for p in (mid, xml, krn, abc):
        assert results[str(p)].error is None, results[str(p)].error
    assert results[str(mid)].notes.title == "\\xff\\xfe"
    assert results[str(xml)].notes.title == "Satie \\xff\\xfe - Nocturne"
    assert results[str(xml)].notes.composer == "Satie \\xff\\xfe"
    assert results[str(abc)].notes.title == "Tune"
    assert_reason(results[str(bad)].error)
    # audio: decoded by name, errors printable
    from midizero_app.audio.decode import AudioError, load_audio

    wav = tmp_path / f"{NON_UTF8}.wav"
    sf.write(os.fsencode(wav), np.zeros(1600, np.float32), 16000)
    assert len(load_audio(wav, 16000)[0]) == 1600
    text = tmp_path / f"{NON_UTF8} text.wav"
    text.write_text("not audio")
    with pytest.raises(AudioError) as err:
        load_audio(text, 16000)
    assert_reason(str(err.value))
    from midizero_app.audio.worker import transcribe_files

    results = {r.path: r for r in transcribe_files([wav, text])}
    assert results[str(wav)].error is None and len(results[str(wav)].notes) == 0
    assert results[str(text)].error.startswith("not an audio file")


# --- a corpus of malformed files, indexed beside good ones ------------------------------

def _truncations(src: Path, folder: Path, offsets: list[int]) -> list[Path]:
    data = src.read_bytes()
    out = []
    for off in offsets:
        p = folder / f"cut {off} of {src.stem}{src.suffix}"
        p.write_bytes(data[:off])
        out.append(p)
    return out


def make_corpus(folder: Path) -> dict[str, str]:
    """Good demo scores and malformed, odd and special files in ``folder``; returns
    ``{file name: "good" | "odd-good" | "bad" | "special"}``."""
    kinds: dict[str, str] = {}
    for name in GOOD:
        shutil.copy(DEMO / "scores" / name, folder / name)
        kinds[name] = "good"
    # truncations of real MIDI and MusicXML (plain and compressed)
    mid = DEMO / "scores" / "Beethoven - Ode to Joy.mid"
    size = mid.stat().st_size
    for p in _truncations(mid, folder, [4, 14, 22, 30, size // 3, size // 2, size - 3]):
        kinds[p.name] = "bad"
    mxl = DEMO / "scores" / "Bach - Chorale BWV 66.6.mxl"
    for p in _truncations(mxl, folder, [10, 100, mxl.stat().st_size // 2]):
        kinds[p.name] = "bad"
    with zipfile.ZipFile(mxl) as z:
        inner = next(n for n in z.namelist() if n.endswith(".xml")
                     and not n.startswith("META-INF"))
        xml = folder / "Bach - Chorale BWV 66.6 (plain).musicxml"
        xml.write_bytes(z.read(inner))
    n = xml.stat().st_size
    for p in _truncations(xml, folder, [50, n // 4, n // 2, n - 20]):
        kinds[p.name] = "bad"
    xml.unlink()
    # random bytes and empty files with every suffix
    rng = np.random.default_rng(30)
    for suffix in ALL_SUFFIXES:
        (folder / f"random{suffix}").write_bytes(rng.bytes(int(rng.integers(1, 20000))))
        kinds[f"random{suffix}"] = "bad"
        (folder / f"empty{suffix}").write_bytes(b"")
        kinds[f"empty{suffix}"] = "bad"
    (folder / "text.mp3").write_text("this is text, not audio\n")
    kinds["text.mp3"] = "bad"
    # huge: 60 MB, sparse, after a MIDI header and a track chunk that claims all of it
    huge = folder / "huge.mid"
    with open(huge, "wb") as f:
        f.write(b"MThd\x00\x00\x00\x06\x00\x00\x00\x01\x01\xe0MTrk\x03\x93\x87\x00")
        f.truncate(60 * 1024 * 1024)
    kinds[huge.name] = "bad"
    # zip bomb-ish: a 200 MB member compressed to a few hundred kB
    bomb = folder / "bomb.mxl"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("META-INF/container.xml",
                   '<?xml version="1.0"?><container><rootfiles><rootfile full-path="s.xml"/>'
                   "</rootfiles></container>")
        with z.open("s.xml", "w", force_zip64=True) as member:
            member.write(b'<?xml version="1.0"?><score-partwise version="3.1">')
            block = b" " * (1 << 20)
            for _ in range(200):
                member.write(block)
            member.write(b"</score-partwise>")
    kinds[bomb.name] = "bad"
    # odd names around valid content
    odd = ["with  spaces.mid", "ünïcödé – 曲.mid", "-leading-dash.mid", "new\nline.mid",
           "bell\x07 and escape\x1b[31m.mid"]
    if sys.platform != "win32":
        odd.append(f"{NON_UTF8}.mid")
    for i, name in enumerate(odd):
        write_midi(folder / name, random_piece(100 + i, 60))
        kinds[name] = "odd-good"
    # special files: a link loop and a FIFO named like scores
    os.symlink("loop-b.mid", folder / "loop-a.mid")
    os.symlink("loop-a.mid", folder / "loop-b.mid")
    kinds["loop-a.mid"] = kinds["loop-b.mid"] = "special"
    if hasattr(os, "mkfifo"):
        os.mkfifo(folder / "pipe.mid")
        kinds["pipe.mid"] = "special"
    return kinds


def test_a_corpus_of_malformed_files_is_indexed_or_failed_with_a_reason(tmp_path,
                                                                        bundled_model):
    from midizero_app.core.library import Library

    folder = tmp_path / "scores"
    folder.mkdir()
    kinds = make_corpus(folder)
    lib = Library(tmp_path / "lib")
    try:
        report = lib.add([folder])
        indexed = {Path(p).name for p in report.added + report.updated}
        failed = {Path(p).name: reason for p, reason in report.failed}
        for name, reason in sorted(failed.items()):
            print(f"{name!r}: {reason}")
        for name, kind in kinds.items():
            assert (name in indexed) != (name in failed), f"{name!r}: neither or both"
            if name in failed:
                assert_reason(failed[name])
            if kind in ("good", "odd-good"):
                assert name in indexed, f"{name!r}: {failed.get(name)}"
            if kind == "special":
                assert name in failed
        assert not [r for r in failed.values() if r.startswith("too long")]
        assert failed["text.mp3"].startswith("not an audio file")
        assert failed["empty.mid"] == "empty file"
        # the good files are found
        for query, title in (("played - ode to joy.mid", "Ode to Joy"),
                             ("played - maple leaf rag, middle.mid", "Joplin - Maple Leaf Rag")):
            res = lib.search(DEMO / "queries" / query)
            assert res["results"] and res["results"][0]["title"] == title, res["results"][:1]
        # each file as a search query: notes, or a reason
        from midizero_app.audio.queries import read_queries

        queries = read_queries([str(folder / name) for name in kinds])
        for name, kind in kinds.items():
            r = queries[str(folder / name)]
            if kind in ("good", "odd-good"):
                assert r.error is None and len(r.notes), (name, r.error)
            elif r.notes is None:
                assert_reason(r.error)
        # every file with a score or audio name is in the catalogue, indexed or failed
        listed = {Path(p["path"]).name: p for p in lib.pieces()}
        for name, kind in kinds.items():
            if kind == "special":
                continue  # link loops and FIFOs: see the next test
            assert name in listed, name
            assert listed[name]["status"] in ("ok", "repaired", "failed"), listed[name]
        # titles from odd names are one printable line
        assert listed["new\nline.mid"]["title"] == "new line"
        assert listed["bell\x07 and escape\x1b[31m.mid"]["title"] == \
            "bell\\x07 and escape\\x1b[31m"
    finally:
        lib.close()
        for big in ("huge.mid", "bomb.mxl"):  # pytest keeps the last runs' folders
            (folder / big).unlink(missing_ok=True)


def test_link_loops_and_fifos_are_listed_in_the_library(tmp_path, bundled_model):
    """``index`` reports a link loop and a FIFO; ``library list`` shows them too."""
    from midizero_app.core.library import Library

    folder = tmp_path / "scores"
    folder.mkdir()
    os.symlink("loop-b.mid", folder / "loop-a.mid")
    os.symlink("loop-a.mid", folder / "loop-b.mid")
    os.mkfifo(folder / "pipe.mid")
    write_midi(folder / "tune.mid", random_piece(5, 40))
    lib = Library(tmp_path / "lib")
    try:
        report = lib.add([folder])
        failed = {Path(p).name: reason for p, reason in report.failed}
        assert set(failed) == {"loop-a.mid", "loop-b.mid", "pipe.mid"}
        for reason in failed.values():
            assert_reason(reason)
        listed = {Path(p["path"]).name: p["status"] for p in lib.pieces()}
        # The catalogue (library storage, core/library.py) records these as failed pieces;
        # this assertion fails while it keeps only files it parsed.
        assert listed == {"tune.mid": "ok", "loop-a.mid": "failed", "loop-b.mid": "failed",
                          "pipe.mid": "failed"}
    finally:
        lib.close()
