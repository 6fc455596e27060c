"""Notation: real scores engraved by verovio, their measures against the app's readers,
notation made from MIDI, and files that cannot be shown."""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from midizero_app.core.frames import to_frames
from midizero_app.core.scores import load_notes
from midizero_app.notation import (MAX_PAGES, EngraverProcess, NotationError, ScoreRendering,
                                   measure_boxes)

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

ROOT = Path(__file__).resolve().parents[1]
SCORES = ROOT / "resources" / "demo" / "scores"
MOZART = SCORES / "Mozart - Sonata K.545 (I, exposition).mxl"
CHORALE = SCORES / "Bach - Chorale BWV 66.6.mxl"  # a pickup measure printed "0"
ODE = SCORES / "Beethoven - Ode to Joy.mid"


def musicxml(n_measures: int, backward_repeat_at: int | None = None) -> str:
    """A one-part MusicXML score: ``n_measures`` measures of 4/4, four quarter notes each,
    at 120 quarter notes a minute; a backward repeat bar line (with no forward one) at the
    end of measure ``backward_repeat_at``."""
    steps = "CDEFGAB"
    measures = []
    for m in range(1, n_measures + 1):
        attrs = ('<attributes><divisions>1</divisions><key><fifths>0</fifths></key>'
                 '<time><beats>4</beats><beat-type>4</beat-type></time><clef><sign>G</sign>'
                 '<line>2</line></clef></attributes><sound tempo="120"/>') if m == 1 else ""
        notes = "".join(f'<note><pitch><step>{steps[(m + k) % 7]}</step><octave>4</octave>'
                        f'</pitch><duration>1</duration><type>quarter</type></note>'
                        for k in range(4))
        bar = ('<barline location="right"><bar-style>light-heavy</bar-style>'
               '<repeat direction="backward"/></barline>') if m == backward_repeat_at else ""
        measures.append(f'<measure number="{m}">{attrs}{notes}{bar}</measure>')
    return ('<?xml version="1.0" encoding="UTF-8"?><score-partwise version="3.1"><part-list>'
            '<score-part id="P1"><part-name>Piano</part-name></score-part></part-list>'
            f'<part id="P1">{"".join(measures)}</part></score-partwise>')


@pytest.fixture(scope="module")
def worker():
    proc = EngraverProcess().start()
    yield proc
    proc.close()


def test_real_musicxml_rendered():
    r = ScoreRendering.open(MOZART, isolated=False)
    notes = load_notes(MOZART)
    assert r.pages >= 1 and not r.from_midi
    assert r.qpm == 132.0  # the file's <sound tempo="132">
    # as many measures as the app's reader finds, numbered 1.. in score order
    assert len(r.measures) == int(notes.measure.max()) == 12
    assert [m.number for m in r.measures] == list(range(1, 13))
    assert [m.label for m in r.measures] == [str(i) for i in range(1, 13)]
    assert all(m.end_q - m.start_q == 4.0 for m in r.measures)  # 4/4 throughout
    m = r.measure_at(4 * 2 + 1.5)  # beat 2.5 of the third measure
    assert (m.number, m.label, m.start_q, m.end_q) == (3, "3", 8.0, 12.0)
    assert m.start_s == pytest.approx(8.0 * 60 / 132)
    assert r.page_of(m) == r.page_of(m.id) == r.page_of(3) == m.page == 1
    svg = r.svg(1)
    assert svg.lstrip().startswith("<svg") and f'id="{m.id}"' in svg
    assert r.svg(1) is svg  # cached
    box = r.measure_box(m)
    assert box is not None and box.width > 0 and box.height > 0
    assert 0 < box.fx < 1 and 0 < box.fy < 1 and 0 < box.fx + box.fw <= 1
    # measures of one system share a top line; the next measure starts where this one ends
    nxt = r.measure_box(r.measures[3])
    if r.measures[3].page == m.page and nxt.y == box.y:
        assert nxt.x == pytest.approx(box.x + box.width, abs=1)
    # the notes sounding at the start of measure 3 are engraved in it
    ids = r.notes_at(m.start_q)
    assert ids and all(f'id="{i}"' in svg for i in ids)
    measure_svg = svg[svg.index(f'id="{m.id}"'):svg.index(f'id="{r.measures[3].id}"')]
    assert all(f'id="{i}"' in measure_svg for i in r.notes_between(m.start_q, m.end_q))
    with pytest.raises(NotationError):
        r.svg(r.pages + 1)


@pytest.mark.parametrize("path", [MOZART, CHORALE], ids=["mozart", "chorale-pickup"])
def test_measures_agree_with_library_frames(path):
    r = ScoreRendering.open(path, isolated=False)
    frames, kind = to_frames(load_notes(path), "score")
    assert kind == "score" and len(frames) > 20
    for onset, number, beat in zip(frames.onset, frames.measure, frames.beat):
        m, page = r.at_seconds(onset)
        assert m.number == number, (onset, number, m)
        assert page == m.page
        assert r.measure_for(int(number))[0] is m
        q = r.quarters_at_seconds(onset)
        _, in_measure = r.beat_in_measure(q)
        assert r.quarters_for(int(number), in_measure) == pytest.approx(q, abs=1e-3)
        if path == MOZART:  # 4/4: the frames' beat counts quarter notes from 1
            assert in_measure == pytest.approx(beat - 1.0, abs=1e-3)
    if path == CHORALE:  # the pickup: printed "0", first in the file
        assert r.measures[0].label == "0" and r.by_number("0") is r.measures[0]
        assert r.measures[0].end_q - r.measures[0].start_q == pytest.approx(1.0)


def test_midi_only_piece_via_worker(worker):
    r = ScoreRendering.open(ODE, worker=worker)
    assert r.from_midi and r.pages >= 1 and len(r.measures) >= 4
    svg = r.svg(1)
    assert f'id="{r.measures[0].id}"' in svg
    frames, _ = to_frames(load_notes(ODE), "score")
    got = [r.at_seconds(t)[0].number for t in frames.onset]
    assert got == [int(n) for n in frames.measure]
    r.close()
    # a page asked for after the worker let the score go: loaded again
    r2 = ScoreRendering.open(ODE, worker=worker)
    key_svg = r2.svg(1)
    r2.close()
    assert f'id="{r.measures[0].id}"' in key_svg  # ids are stable from load to load


def test_worker_and_in_process_agree(worker):
    a = ScoreRendering.open(MOZART, worker=worker)
    b = ScoreRendering.open(MOZART, isolated=False)
    assert a.measures == b.measures and a.pages == b.pages
    assert a.svg(1) == b.svg(1)
    a.close()


def test_unrenderable_files(tmp_path, worker):
    rng = np.random.default_rng(7)
    noise = tmp_path / "noise.musicxml"
    noise.write_bytes(rng.integers(0, 256, 4000, dtype=np.uint8).tobytes())
    empty = tmp_path / "empty.mei"
    empty.write_bytes(b"")
    text = tmp_path / "text.musicxml"
    text.write_text("<score-partwise><part-list/></score-partwise>")
    no_music = tmp_path / "nothing.abc"
    no_music.write_text("%% a comment, no tune\n")
    zipped = tmp_path / "truncated.mxl"
    zipped.write_bytes(b"PK\x03\x04" + bytes(40))
    folder = tmp_path / "folder.mxl"
    folder.mkdir()
    for path in (noise, empty, text, no_music, zipped, folder, tmp_path / "missing.krn",
                 tmp_path / "notes.txt"):
        messages = []
        for isolated in (False, True):
            with pytest.raises(NotationError) as err:
                ScoreRendering.open(path, isolated=isolated, worker=worker)
            messages.append(str(err.value))
        here, there = messages
        assert here and "\n" not in here and len(here) < 200, (path.name, here)
        assert there == here  # the worker says the same, not that it crashed


def test_broken_repeats_render(tmp_path):
    path = tmp_path / "broken repeat.musicxml"
    path.write_text(musicxml(8, backward_repeat_at=4))  # a backward repeat, no forward one
    r = ScoreRendering.open(path, isolated=False)
    assert len(r.measures) == 8  # score order, the repeat not unfolded
    assert [m.start_q for m in r.measures] == [4.0 * i for i in range(8)]
    svg = r.svg(1)
    assert all(f'id="{m.id}"' in svg for m in r.measures)
    frames, _ = to_frames(load_notes(path), "score")
    assert [r.at_seconds(t)[0].number for t in frames.onset] == [int(n) for n in frames.measure]


def test_many_pages_quickly(tmp_path, worker):
    path = tmp_path / "long.musicxml"
    path.write_text(musicxml(400))
    t0 = time.perf_counter()
    r = ScoreRendering.open(path, worker=worker)
    t_open = time.perf_counter() - t0
    assert r.pages > 3 and len(r.measures) == 400
    assert [m.page for m in r.measures] == sorted(m.page for m in r.measures)
    assert r.measures[-1].page == r.pages
    t0 = time.perf_counter()
    svg = r.svg(1)
    t_page = time.perf_counter() - t0
    on_page_1 = r.measures_on(1)
    assert on_page_1 and all(f'id="{m.id}"' in svg for m in on_page_1)
    assert f'id="{r.measures[-1].id}"' not in svg  # one page, not the whole score
    last = r.svg(r.pages)
    assert f'id="{r.measures[-1].id}"' in last
    assert set(measure_boxes(last)) == {m.id for m in r.measures_on(r.pages)}
    # generous bounds for a shared 2-core machine
    assert t_open < 5.0 and t_page < 2.0, (t_open, t_page)
    r.close()


def test_thousands_of_pages_refused(tmp_path, worker):
    path = tmp_path / "long.musicxml"
    path.write_text(musicxml(MAX_PAGES + 100))
    # a small page holds one measure: more pages than the limit
    with pytest.raises(NotationError, match="pages"):
        ScoreRendering.open(path, page_width=600, page_height=400, worker=worker)


def test_piece_without_measures(tmp_path):
    path = tmp_path / "no measures.musicxml"
    path.write_text('<?xml version="1.0"?><score-partwise version="3.1"><part-list>'
                    '<score-part id="P1"><part-name>P</part-name></score-part></part-list>'
                    '<part id="P1"></part></score-partwise>')
    with pytest.raises(NotationError):
        ScoreRendering.open(path, isolated=False)


def test_time_limit_kills_the_worker(tmp_path):
    path = tmp_path / "long.musicxml"
    path.write_text(musicxml(600))
    with EngraverProcess() as proc:
        with pytest.raises(NotationError, match="longer than"):
            ScoreRendering.open(path, worker=proc, timeout_s=0.05)
        # the next request gets a fresh worker
        r = ScoreRendering.open(MOZART, worker=proc)
        assert r.pages >= 1


def test_humdrum_and_abc(tmp_path):
    krn = SCORES / "Chopin - Mazurka Op. 6 No. 2.krn"
    r = ScoreRendering.open(krn, isolated=False)
    frames, _ = to_frames(load_notes(krn), "score")
    assert np.mean([r.at_seconds(t)[0].number == n
                    for t, n in zip(frames.onset, frames.measure)]) == 1.0
    abc = tmp_path / "tune.abc"
    abc.write_text("X:1\nT:Scale\nM:4/4\nL:1/4\nK:C\nCDEF|GABc|cBAG|FEDC|]\n")
    r = ScoreRendering.open(abc, isolated=False)
    assert len(r.measures) == 4 and r.qpm == 120.0
    assert r.measure_at(5.0).number == 2
    assert os.path.basename(r.path) == "tune.abc"


@pytest.mark.parametrize("isolated", [False, True], ids=["here", "worker"])
def test_cache_opens_a_score_seen_before(tmp_path, worker, isolated):
    path = tmp_path / "long.musicxml"
    path.write_text(musicxml(400))
    cache_dir = tmp_path / "engraved"
    first = ScoreRendering.open(path, isolated=isolated, worker=worker, cache_dir=cache_dir)
    page1 = first.svg(1)
    first.close()
    deadline = time.monotonic() + 10  # the worker stores it after sending page 1
    while not list(cache_dir.glob("*.json")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(list(cache_dir.glob("*.json"))) == 1 and len(list(cache_dir.glob("*.mei"))) == 1
    t0 = time.perf_counter()
    again = ScoreRendering.open(path, isolated=isolated, worker=worker, cache_dir=cache_dir)
    svg1 = again.svg(1)
    assert time.perf_counter() - t0 < 0.5
    assert svg1 == page1 and again.measures == first.measures and again.pages == first.pages
    # other pages load from the cached MEI: the same measures on the same pages
    last = again.svg(again.pages)
    assert set(measure_boxes(last)) == {m.id for m in again.measures_on(again.pages)}
    again.close()
    # an edited file misses; a damaged entry is a miss, not an error
    path.write_text(musicxml(12))
    assert len(ScoreRendering.open(path, isolated=False, cache_dir=cache_dir).measures) == 12
    for entry in cache_dir.glob("*.json"):
        entry.write_text("{not json")
    path.write_text(musicxml(400))
    assert len(ScoreRendering.open(path, isolated=False, cache_dir=cache_dir).measures) == 400


def test_qtsvg_draws_the_page(qapp):
    """The pages are SVG that QtSvg draws (no nested <svg>), with the measures' ids."""
    from PySide6.QtCore import QByteArray, QRectF
    from PySide6.QtGui import QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    r = ScoreRendering.open(MOZART, isolated=False)
    svg = r.svg(1)
    renderer = QSvgRenderer(QByteArray(svg.encode("utf-8")))
    assert renderer.isValid()
    w, h = r.page_size[0] * r.scale // 100, r.page_size[1] * r.scale // 100
    assert (renderer.defaultSize().width(), renderer.defaultSize().height()) == (w, h)
    vb = renderer.viewBoxF()
    assert (vb.width(), vb.height()) == (r.page_size[0] * 10, r.page_size[1] * 10)
    image = QImage(w, h, QImage.Format.Format_ARGB32)
    image.fill(0xFFFFFFFF)
    painter = QPainter(image)
    renderer.render(painter)
    painter.end()
    pixels = np.frombuffer(image.constBits(), np.uint8).reshape(h, w, 4)
    assert (pixels[..., 0] < 128).mean() > 0.01  # ink on the page
    for m in r.measures_on(1):
        box = r.measure_box(m)
        assert renderer.elementExists(m.id)
        # staff lines, notes above and below; Qt leaves out the parents' transforms
        drawn = renderer.transformForElement(m.id).mapRect(renderer.boundsOnElement(m.id))
        assert drawn.adjusted(-20, -20, 20, 20).contains(
            QRectF(box.x, box.y, box.width, box.height)), (m.label, drawn, box)


@pytest.mark.data
@pytest.mark.parametrize("name", ["Mozart/Piano_Sonatas/8-1/midi_score.mid",
                                  "Bach/Prelude/bwv_846/midi_score.mid"])
def test_notation_from_real_midi_keeps_the_files_measures(asap, worker, name):
    """Notation made from a real score MIDI (durations a tick short, as exported by
    notation programs): its measures are the file's, as the app's MIDI reader counts them."""
    path = asap / name
    r = ScoreRendering.open(path, worker=worker)
    assert r.from_midi and r.pages >= 2
    frames, _ = to_frames(load_notes(path), "score")
    got = np.asarray([r.at_seconds(t)[0].number for t in frames.onset])
    assert np.array_equal(got, frames.measure)
    assert all(m.end_q - m.start_q == pytest.approx(4.0) for m in r.measures[:-1])  # 4/4
    r.close()


def test_a_killed_worker_is_replaced(worker):
    r = ScoreRendering.open(ODE, worker=worker)
    first = r.svg(1)
    pid = worker.pid
    os.kill(pid, 9)  # as a crash in verovio or partitura would end it
    deadline = time.monotonic() + 10
    while worker.pid is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    other = ScoreRendering.open(MOZART, worker=worker)  # the first score in a new worker
    r.forget_pages()
    assert r.svg(1) == first  # loaded again, not the new worker's other score
    assert worker.pid not in (None, pid)
    assert f'id="{other.measures[0].id}"' in other.svg(1)
    r.close()
    other.close()


def test_notes_of_notation_from_midi_are_the_files():
    r = ScoreRendering.open(ODE, isolated=False)
    notes = load_notes(ODE)
    for onset in np.unique(notes.onset):
        q = r.quarters_at_seconds(onset)
        assert len(r.notes_between(q, q + 0.01)) == int(np.sum(notes.onset == onset))


def test_utf16_musicxml(tmp_path):
    path = tmp_path / "utf16.musicxml"
    text = musicxml(8).replace('encoding="UTF-8"', 'encoding="UTF-16"')
    path.write_bytes(text.replace('tempo="120"', 'tempo="90"').encode("utf-16"))
    r = ScoreRendering.open(path, isolated=False)
    assert len(r.measures) == 8 and r.qpm == 90.0
