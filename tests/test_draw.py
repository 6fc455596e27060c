"""Draw → music: images, the canvas, the rule and library methods, MIDI export,
the CLI and the Draw tab — real files, a real library of the demo scores, real widgets.

Set ``MIDIZERO_SCREENSHOTS=DIR`` to keep the rendered Draw tab for a look.
"""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import io
import shutil
from pathlib import Path

import numpy as np
import pretty_midi
import pytest
from PIL import Image, ImageDraw, ImageFont

from midizero_app.core.frames import PITCH_LO
from midizero_app.draw import stitch
from midizero_app.draw import (DrawError, Drawing, generate, image_to_drawing, load_image,
                               parse_key)
from midizero_app.draw.metrics import blurred_iou, frechet_distance, in_key_share
from midizero_app.draw.theory import parse_progression

ROOT = Path(__file__).resolve().parents[1]
DEMO_SCORES = ROOT / "resources" / "demo" / "scores"
KEYS = ("C", "D", "F#", "Bb", "A minor", "C# minor", "Eb minor", "G")


# --- test pictures ----------------------------------------------------------------------

def heart_image(size=(600, 300), width=8, mode="L") -> Image.Image:
    img = Image.new(mode, size, "white" if mode != "RGBA" else (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    t = np.linspace(0, 2 * np.pi, 200)
    x = 16 * np.sin(t) ** 3
    y = 13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t)
    s = min(size) / 40
    pts = [(size[0] / 2 + s * a, size[1] / 2 - s * b) for a, b in zip(x, y)]
    ink = "black" if mode != "RGBA" else (0, 0, 0, 255)
    d.line(pts, fill=ink, width=width)
    return img


def word_image(word="Hi") -> Image.Image:
    img = Image.new("RGB", (500, 220), "white")
    d = ImageDraw.Draw(img)
    font_path = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")
    font = ImageFont.truetype(str(font_path), 150) if font_path.is_file() else \
        ImageFont.load_default(150)
    d.text((20, 10), word, font=font, fill="black")
    return img


def random_drawing(seed: int, bars: int = 8) -> Drawing:
    """A seeded scribble: a few random-walk strokes, some thick, some faint."""
    rng = np.random.default_rng(seed)
    d = Drawing.blank(bars)
    for _ in range(int(rng.integers(1, 5))):
        t0 = int(rng.integers(0, d.n_steps - 8))
        p = float(rng.uniform(21, 108))
        width = int(rng.integers(1, 6))
        dark = float(rng.uniform(0.2, 1.0))
        for t in range(t0, min(d.n_steps, t0 + int(rng.integers(8, 120)))):
            p = float(np.clip(p + rng.normal(0, 2), 21, 108))
            c = int(p) - 21
            d.ink[t, max(c - width // 2, 0):c + width // 2 + 1] = dark
    return d


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("pictures")
    out = {}
    heart_image().save(d / "heart.png")
    out["png"] = d / "heart.png"
    heart_image(mode="RGB").save(d / "heart.jpg", quality=80)
    out["jpeg"] = d / "heart.jpg"
    heart_image(mode="RGBA").save(d / "transparent.png")
    out["transparent"] = d / "transparent.png"
    Image.new("RGB", (300, 200), "white").save(d / "blank.png")
    out["blank"] = d / "blank.png"
    (d / "zero.png").write_bytes(b"")
    out["zero"] = d / "zero.png"
    good = (d / "heart.png").read_bytes()
    (d / "corrupt.png").write_bytes(good[:200] + bytes(300))
    out["corrupt"] = d / "corrupt.png"
    (d / "notes.txt.png").write_text("this is not a picture")
    out["text"] = d / "notes.txt.png"
    big = Image.new("L", (12000, 6000), 255)
    ImageDraw.Draw(big).line([(100, 5900), (11900, 100)], fill=0, width=60)
    big.save(d / "huge.png", optimize=False)
    out["huge"] = d / "huge.png"
    word_image().save(d / "word.png")
    out["word"] = d / "word.png"
    return out


# --- image loading ----------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["png", "jpeg", "transparent"])
def test_pictures_load_onto_the_roll(pictures, kind):
    dark = load_image(pictures[kind])
    assert dark.dtype == np.float32 and dark.ndim == 2
    assert 0.0 <= dark.min() and dark.max() <= 1.0
    assert dark.mean() < 0.3, "the paper is light, the strokes dark"
    d = image_to_drawing(dark, bars=8)
    assert d.ink.shape == (128, 88)
    pitches = np.flatnonzero(d.mask.any(0)) + 21
    assert pitches.min() >= 36 and pitches.max() <= 96  # the default image range
    assert d.mask.any(1).mean() > 0.9, "the heart spans the whole length"
    # the heart's outline: at its middle, ink at the top and the bottom, none inside
    mid = d.mask[64]
    assert mid.sum() < 20


def test_png_and_jpeg_and_transparent_agree(pictures):
    rolls = [image_to_drawing(load_image(pictures[k])).mask for k in ("png", "jpeg", "transparent")]
    assert blurred_iou(rolls[0], rolls[1]) > 0.8
    assert blurred_iou(rolls[0], rolls[2]) > 0.8


def test_bytes_and_inverted_pictures(pictures):
    inverted = Image.eval(heart_image(), lambda v: 255 - v)  # white on black
    buf = io.BytesIO()
    inverted.save(buf, "PNG")
    a = image_to_drawing(load_image(buf.getvalue())).mask
    b = image_to_drawing(load_image(pictures["png"])).mask
    assert blurred_iou(a, b) > 0.9


def test_huge_picture_is_scaled(pictures):
    dark = load_image(pictures["huge"])
    assert max(dark.shape) <= 2048
    d = image_to_drawing(dark, bars=4)
    cols = np.flatnonzero(d.mask.any(0))
    first, last = d.mask[:4].nonzero()[1].mean(), d.mask[-4:].nonzero()[1].mean()
    assert last > first + 20, "a rising line rises"
    assert len(cols) > 30


@pytest.mark.parametrize("kind,words", [("blank", "nothing is drawn"), ("zero", "empty"),
                                        ("corrupt", "damaged"), ("text", "not an image")])
def test_bad_pictures_give_a_clear_message(pictures, kind, words):
    with pytest.raises(DrawError) as err:
        image_to_drawing(load_image(pictures[kind]))
    assert words in str(err.value)
    assert "\n" not in str(err.value) and len(str(err.value)) < 200


def test_missing_file_and_bad_range(tmp_path, pictures):
    with pytest.raises(DrawError, match="no such file"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(DrawError, match="pitch range"):
        image_to_drawing(load_image(pictures["png"]), pitch_range=(10, 120))


# --- the rule method ----------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(12))
def test_rule_is_always_in_key_and_range(seed):
    drawing = random_drawing(seed)
    key = parse_key(KEYS[seed % len(KEYS)])
    g = generate(drawing, "rule", key, tempo=90, chords_per_bar=(1, 2, 4)[seed % 3])
    assert len(g) > 0
    p = g.notes[:, 2]
    assert p.min() >= 21 and p.max() <= 108
    assert in_key_share(p, key) == 1.0, f"out of key in {key}"
    assert (g.notes[:, 1] > g.notes[:, 0]).all()
    assert ((g.notes[:, 3] >= 1) & (g.notes[:, 3] <= 127)).all()
    assert g.notes[:, 1].max() <= drawing.n_steps


def test_rule_follows_the_drawing(pictures):
    d = image_to_drawing(load_image(pictures["png"]))
    rule = generate(d, "rule", "D")
    naive = generate(d, "naive", "D")
    assert blurred_iou(d.mask, naive.roll()) == pytest.approx(1.0)
    assert blurred_iou(d.mask, rule.roll(), 2.0) > 0.4
    # chords: every frame's notes are a few, not every drawn cell
    fr = rule.frames()
    assert len(fr.pitches) / len(fr) < 4


def test_rule_named_progression_and_velocity_from_darkness():
    d = Drawing.blank(4)
    d.ink[:32, 60 - 21] = 1.0   # a dark held line, then a faint one
    d.ink[32:, 60 - 21] = 0.25
    g = generate(d, "rule", "C", progression="I IV V I")
    assert g.info["progression"] == "I IV V I"
    loud = g.notes[g.notes[:, 0] < 32, 3].mean()
    soft = g.notes[g.notes[:, 0] >= 32, 3].mean()
    assert loud > soft + 20
    # held: one note per chord (bar), not one per 16th
    assert len(g) == 4 and (g.notes[:, 1] - g.notes[:, 0] == 16).all()
    with pytest.raises(ValueError, match="roman"):
        parse_progression("I X", parse_key("C"))


def test_rule_follows_lines_in_the_scale_and_fills_regions_with_the_chord():
    d = Drawing.blank(1)
    d.ink[:, 62 - 21] = 1.0           # a line on D: a scale tone outside the tonic chord
    d.ink[4:12, 72 - 21:96 - 21] = 1.0  # a filled block C5..B6
    g = generate(d, "rule", "C", progression="I")
    line = g.notes[g.notes[:, 2] < 70]
    assert line[:, 2].tolist() == [62] and line[0, 1] - line[0, 0] == 16  # followed, held
    block = g.notes[g.notes[:, 2] >= 70]
    key = parse_key("C")
    assert set(block[:, 2] % 12) == set(key.extended(0))  # C E G + the seventh and ninth
    assert len(block) >= 8 and (block[:, 1] == 12).all()  # across the span, to its end
    for t in np.unique(block[:, 0]):  # a broken chord of open-spaced groups, not a cluster
        struck = np.sort(block[block[:, 0] == t, 2])
        assert len(struck) <= 3 and (np.diff(struck) > 2).all()


def test_empty_drawing_and_bad_key():
    with pytest.raises(DrawError, match="nothing is drawn"):
        generate(Drawing.blank(2), "rule")
    with pytest.raises(ValueError, match="unknown key"):
        parse_key("H sharp")


# --- the library method on a tiny real library ----------------------------------------------

@pytest.fixture(scope="module")
def demo_library(tmp_path_factory, bundled_model):
    from midizero_app.core.library import Library

    lib = Library(tmp_path_factory.mktemp("draw-lib"))
    rep = lib.add([DEMO_SCORES], workers=2)
    assert not rep.failed, rep.failed
    yield lib
    lib.close()


def test_library_notes_come_from_the_library(demo_library, pictures):
    lib = demo_library
    d = image_to_drawing(load_image(pictures["word"]), bars=8)
    g = generate(d, "library", "G", tempo=100, library=lib)
    assert len(g) > 20 and g.method == "library"
    assert g.origin is not None and len(g.origin) == len(g)
    titles = {p["id"]: p["title"] for p in lib.pieces()}
    # every note is a note of the library frame it names, moved by its window's transposition
    for (s, e, pitch, _v), (src, frame) in zip(g.notes, g.origin):
        source = g.sources[src]
        chord = lib.frames_of(source["piece_id"]).chord(int(frame))
        assert pitch - source["transpose"] in chord
    # and sounds only on a drawn row, near its ink (a lower-stroke chord may have moved
    # onto an upper-stroke onset)
    reach = stitch.STENCIL_STEPS + stitch.SYNC_STEPS
    for s, e, pitch, _v in g.notes:
        assert d.mask[max(s - reach, 0):e + reach, pitch - PITCH_LO].any(), (s, e, pitch)
    # and the sources are named: pieces of this library, with titles and bars
    named = g.source_pieces()
    assert named and all(p["title"] == titles[p["piece_id"]] for p in named)
    assert all(1 <= b <= 8 for p in named for b in p["bars"])
    assert in_key_share(g.notes[:, 2], g.key) > 0.8
    # a line drawing is followed far better than chance, even from ten pieces
    heart = image_to_drawing(load_image(pictures["png"]), bars=8)
    g2 = generate(heart, "library", "G", library=lib)
    iou = blurred_iou(heart.mask, g2.roll(), 2.0)
    chance = blurred_iou(heart.mask, np.roll(g2.roll(), 12, axis=1), 2.0)  # an octave off
    assert iou > 0.15 and iou > 2 * chance


def test_library_notes_ring_while_their_row_is_drawn():
    from midizero_app.draw.stitch import ring_notes

    mask = np.zeros((16, 88), bool)
    mask[0:8, 60 - 21] = True    # a drawn stroke on C4, steps 0..7
    mask[0:12, 64 - 21] = True
    notes = np.array([[0, 2, 60, 80], [1, 3, 64, 80], [6, 7, 64, 80], [12, 14, 67, 80]])
    out = ring_notes(notes, mask)
    assert out[:, [0, 2, 3]].tolist() == notes[:, [0, 2, 3]].tolist()  # onsets, pitches kept
    # to the stroke's end; up to the next onset of its pitch; not over empty paper
    assert out[:, 1].tolist() == [8, 6, 12, 14]


def test_ring_holds_drawn_rows_and_stops_at_a_chord_change():
    from midizero_app.draw.drawing import ring

    mask = np.zeros((6, 88), bool)
    mask[:, 10] = True
    mask[:3, 20] = True
    on = np.zeros((6, 88), bool)
    on[0, [10, 20]] = True
    ring(on, mask, hold=np.array([False, True, True, True, False, True]))
    assert np.flatnonzero(on[:, 10]).tolist() == [0, 1, 2, 3]  # held until the change
    assert np.flatnonzero(on[:, 20]).tolist() == [0, 1, 2]     # until the row ends
    rolls = np.zeros((2, 6, 88), np.float32)                   # a batch of candidates
    rolls[1, 0, 10] = 0.5
    ring(rolls, mask)
    assert rolls[1, :, 10].tolist() == [0.5] * 6 and not rolls[0].any()


def test_lower_stroke_is_played_with_the_upper_one():
    from midizero_app.draw.stitch import sync_layers

    # upper stroke onsets at steps 0, 4, 8; the lower stroke's own rhythm is 1, 3, 7, 12
    notes = np.array([[0, 2, 72, 80], [4, 6, 74, 80], [8, 9, 76, 80],
                      [1, 4, 48, 60], [3, 5, 50, 60], [7, 8, 52, 60], [12, 15, 53, 60]])
    layer = np.array([0, 0, 0, 1, 1, 1, 1])
    sync_layers(notes, layer, reach=2)
    assert notes[:3].tolist() == [[0, 2, 72, 80], [4, 6, 74, 80], [8, 9, 76, 80]]
    # moved onto the nearest upper onset with their lengths; step 12 is too far to move
    assert notes[3:, :2].tolist() == [[0, 3], [4, 6], [8, 9], [12, 15]]
    # a chord that would strike a second against the upper stroke keeps its own time;
    # one lower chord per onset (two would make the lower stroke's melody a cluster)
    notes = np.array([[0, 2, 72, 80], [1, 3, 70, 60], [2, 3, 65, 60], [5, 6, 60, 60],
                      [6, 7, 62, 60], [4, 5, 76, 80]])
    sync_layers(notes, np.array([0, 1, 1, 1, 1, 0]), reach=2)
    assert notes[1:5, 0].tolist() == [1, 0, 4, 6]


def test_pictures_go_where_the_library_music_lives(demo_library, tmp_path, pictures):
    from midizero_app.core.library import Library
    from midizero_app.draw.drawing import IMAGE_RANGE
    from midizero_app.draw.register import MIN_WIDTH, library_register

    lo, hi = library_register(demo_library)
    pitches = np.concatenate([demo_library.frames_of(p["id"]).pitches
                              for p in demo_library.pieces("ok")])
    assert 21 <= lo < hi <= 108 and hi - lo >= MIN_WIDTH
    assert abs((lo + hi) / 2 - pitches.mean()) <= 1.0       # centred on the library's notes
    inside = np.mean((pitches >= lo) & (pitches <= hi))
    assert 0.8 <= inside < 1.0                                 # most of them, not the extremes
    assert library_register(None) == IMAGE_RANGE
    empty = Library(tmp_path / "empty")
    assert library_register(empty) == IMAGE_RANGE
    empty.close()
    d = image_to_drawing(load_image(pictures["png"]), bars=8, pitch_range=(lo, hi))
    drawn = np.flatnonzero(d.mask.any(0)) + 21
    assert drawn.min() >= lo and drawn.max() <= hi


def test_library_can_exclude_pieces(demo_library):
    lib = demo_library
    d = random_drawing(3)
    ids = [p["id"] for p in lib.pieces()]
    g = generate(d, "library", "C", library=lib, exclude=set(ids[:-2]))
    assert {s["piece_id"] for s in g.sources} <= set(ids[-2:])


def test_library_needs_a_library(tmp_path, bundled_model):
    from midizero_app.core.library import Library

    with pytest.raises(DrawError, match="needs a library"):
        generate(random_drawing(1), "library")
    with Library(tmp_path / "empty") as lib:
        with pytest.raises(DrawError, match="library is empty"):
            generate(random_drawing(1), "library", library=lib)


# --- MIDI export and the CLI ------------------------------------------------------------------

@pytest.mark.parametrize("tempo,bars", [(96, 8), (140, 3)])
def test_exported_midi_has_the_length_and_tempo(tmp_path, tempo, bars):
    d = random_drawing(7, bars=bars)
    d.ink[:, :] = 0
    d.ink[:8, 40] = 1  # only the beginning is drawn: the file still lasts every bar
    g = generate(d, "rule", "E minor", tempo=tempo)
    path = g.write_midi(tmp_path / "out.mid")
    pm = pretty_midi.PrettyMIDI(str(path))
    _times, tempi = pm.get_tempo_changes()
    assert tempi[0] == pytest.approx(tempo, rel=1e-3)
    assert pm.get_end_time() == pytest.approx(bars * 4 * 60 / tempo, abs=1e-3)
    assert pm.key_signature_changes[0].key_number == 4 + 12  # E minor
    notes = pm.instruments[0].notes
    assert len(notes) == len(g)
    assert sorted(n.pitch for n in notes) == sorted(g.notes[:, 2].tolist())
    with pytest.raises(DrawError, match="does not exist"):
        g.write_midi(tmp_path / "no" / "such" / "dir.mid")


def test_cli_draw(tmp_path, pictures, demo_library, capsys):
    from midizero_app.cli import main

    out = tmp_path / "song.mid"
    rc = main(["draw", str(pictures["png"]), "--out", str(out), "--key", "D", "--tempo", "96",
               "--bars", "8"])
    assert rc == 0 and out.is_file()
    pm = pretty_midi.PrettyMIDI(str(out))
    assert pm.get_end_time() == pytest.approx(20.0, abs=1e-3)
    assert "D major" in capsys.readouterr().out
    out2 = tmp_path / "lib.mid"
    rc = main(["draw", str(pictures["word"]), "--out", str(out2), "--method", "library",
               "--library", str(demo_library.path), "--key", "Am", "--json"])
    assert rc == 0
    import json

    summary = json.loads(capsys.readouterr().out)
    assert summary["method"] == "library" and summary["sources"]
    from midizero_app.draw.register import library_register

    assert summary["pitch_range"] == list(library_register(demo_library))
    rc = main(["draw", str(pictures["word"]), "--out", str(out2), "--library",
               str(demo_library.path), "--low", "48", "--high", "84", "--json"])
    assert rc == 0 and json.loads(capsys.readouterr().out)["pitch_range"] == [48, 84]
    rc = main(["draw", str(pictures["corrupt"]), "--out", str(tmp_path / "x.mid")])
    err = capsys.readouterr().err
    assert rc == 1 and "damaged" in err and not (tmp_path / "x.mid").exists()
    rc = main(["draw", str(pictures["png"]), "--out", str(tmp_path / "y.mid"), "--key", "Q"])
    assert rc == 1 and "unknown key" in capsys.readouterr().err


def test_draw_out_never_writes_through_a_link_planted_at_its_temporary_name(tmp_path, pictures,
                                                                          capsys):
    """``draw --out`` (and the Draw tab's export, the same ``write_midi``) writes a fresh
    temporary file: a symlink planted at the predictable ``<name>.tmp`` is not followed, the
    file it points at is untouched, and a complete MIDI file replaces the target."""
    from midizero_app.cli import main

    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "song.mid"
    out.write_bytes(b"old")
    planted = tmp_path / "song.mid.tmp"
    planted.symlink_to(victim)
    rc = main(["draw", str(pictures["png"]), "--out", str(out), "--library",
               str(tmp_path / "no-library")])
    assert rc == 0, capsys.readouterr().err
    assert victim.read_text() == "precious"
    assert planted.is_symlink() and os.readlink(planted) == str(victim)
    assert len(pretty_midi.PrettyMIDI(str(out)).instruments[0].notes) > 0
    assert not (tmp_path / "no-library").exists()  # the library is only read, never made
    # the Draw tab's export: a link planted where the target itself goes is replaced, not
    # followed
    g = generate(image_to_drawing(load_image(pictures["png"]), bars=4), "rule", "C", 96.0)
    linked = tmp_path / "export.mid"
    linked.symlink_to(victim)
    g.write_midi(linked)
    assert victim.read_text() == "precious" and not linked.is_symlink()
    assert pretty_midi.PrettyMIDI(str(linked)).get_end_time() > 0
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp") and p != planted]
    assert not leftovers


def test_frechet_distance_is_zero_for_one_sample_and_grows():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 4))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(x, x + 1.0) == pytest.approx(4.0, rel=0.01)


# --- the canvas and the Draw tab (real widgets, offscreen) ------------------------------------

qt = pytest.importorskip("pytestqt")


def test_canvas_draws_and_undoes(qtbot):
    from midizero_app.gui.draw_canvas import DrawCanvas, drag

    c = DrawCanvas(bars=8)
    qtbot.addWidget(c)
    c.resize(900, 500)
    c.show()
    qtbot.waitExposed(c)
    with qtbot.waitSignal(c.changed):
        drag(c, [(s, 60 + s * 0.25) for s in range(0, 64)])
    first = c.ink.copy()
    assert first[:64].any(1).all(), "a continuous stroke"
    assert not first[70:].any()
    rows = np.flatnonzero(first[10]) + 21
    assert abs(rows.mean() - (60 + 2.5)) <= 2
    c.pen_width = 4
    drag(c, [(100, 40), (120, 40)])
    assert c.ink[100:121].any()
    c.undo()
    np.testing.assert_array_equal(c.ink, first)
    c.redo()
    assert c.ink[100:121].any()
    c.eraser = True
    drag(c, [(s, 60 + s * 0.25) for s in range(0, 64)])
    assert not c.ink[5:60].any()
    c.undo()
    c.undo()
    np.testing.assert_array_equal(c.ink, first)
    c.clear()
    assert not c.ink.any() and c.can_undo
    c.undo()
    np.testing.assert_array_equal(c.ink, first)


def test_canvas_survives_many_repaints(qtbot):
    """Drawing repaints on every mouse move; PySide6 6.12 on Python 3.11 used to abort the
    interpreter after a few thousand Qt calls that return void (see gui/__init__.py)."""
    from midizero_app.gui.draw_canvas import DrawCanvas, NotesView

    c, v = DrawCanvas(bars=8), NotesView(bars=8)
    for w in (c, v):
        qtbot.addWidget(w)
        w.resize(700, 450)
        w.show()
    c.ink[::2, ::3] = 0.6
    v.set_notes(np.array([[s, s + 2, p, 80] for s in range(0, 128, 4) for p in range(30, 100, 7)]),
                128, c.ink > 0)
    for i in range(400):
        c.ink[i % 128, i % 88] = 1.0
        c.repaint()
        v.set_cursor(i % 128)
        v.repaint()
    assert c.grab().width() == 700


@pytest.fixture
def window(qtbot, tmp_path, demo_library):
    from PySide6.QtCore import QSettings

    from midizero_app.gui.app import MainWindow

    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat)
    w = MainWindow(settings=settings, library_dir=str(demo_library.path), first_run_demo=False)
    qtbot.addWidget(w)
    w.resize(1200, 780)
    w.show()
    qtbot.waitUntil(lambda: w.library is not None, timeout=120_000)
    yield w
    w.close()


def drop_on(widget, path: Path) -> None:
    """Drag-enter and drop a file URL on a widget, as a file manager does."""
    from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
    from PySide6.QtGui import QDragEnterEvent, QDropEvent
    from PySide6.QtWidgets import QApplication

    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    enter = QDragEnterEvent(QPoint(50, 50), Qt.CopyAction, mime, Qt.LeftButton,
                            Qt.NoModifier)
    QApplication.sendEvent(widget, enter)
    assert enter.isAccepted(), "the Draw tab refuses a picture"
    ev = QDropEvent(QPointF(50, 50), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    QApplication.sendEvent(widget, ev)
    assert ev.isAccepted()


def shot(widget, path: Path) -> None:
    assert widget.grab().save(str(path))
    keep = os.environ.get("MIDIZERO_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(keep) / path.name)


def test_draw_tab_generates_exports_and_identifies(qtbot, window, pictures, tmp_path):
    from midizero_app.gui.draw_canvas import drag

    tab = window.draw
    window.tabs.setCurrentWidget(tab)
    qtbot.waitExposed(tab)
    assert not tab.generate_btn.isEnabled()
    # open a picture (in a worker), then add a stroke by hand
    job = tab.open_image(str(pictures["png"]))
    qtbot.waitUntil(lambda: job.settled, timeout=60_000)
    assert tab.canvas.ink.any() and tab.generate_btn.isEnabled()
    drag(tab.canvas, [(s, 90 - s * 0.2) for s in range(10, 50)])
    tab.key_combo.setCurrentText("D major")
    tab.tempo_spin.setValue(100)
    job = tab.generate()
    qtbot.waitUntil(lambda: job.settled, timeout=60_000)
    g = tab.result
    assert g is not None and g.method == "rule" and len(g) > 10
    assert in_key_share(g.notes[:, 2], parse_key("D")) == 1.0
    assert "notes" in tab.status.text() and "D major" in tab.status.text()
    shot(window, tmp_path / "draw_tab_rule.png")
    # the library method names its sources
    tab.method_combo.setCurrentIndex(tab.method_combo.findData("library"))
    job = tab.generate()
    qtbot.waitUntil(lambda: job.settled, timeout=120_000)
    assert tab.result.method == "library" and tab.result.sources
    assert "Material from" in tab.status.text()
    shot(window, tmp_path / "draw_tab_library.png")
    # export
    out = tab.export_midi(str(tmp_path / "tab.mid"))
    pm = pretty_midi.PrettyMIDI(str(out))
    assert pm.get_end_time() == pytest.approx(8 * 4 * 60 / 100, abs=1e-3)
    # play: the synth, or a clear message where there is no audio device
    job = tab.play()
    if job is not None:
        qtbot.waitUntil(lambda: job.settled, timeout=60_000)
    assert tab.player is not None or "Playback unavailable" in tab.status.text()
    tab.stop()
    # send to Identify: the Identify tab searches the generated piece
    job = tab.send_to_identify()
    assert window.tabs.currentWidget() is window.identify
    qtbot.waitUntil(lambda: job.settled, timeout=120_000)
    assert window.identify.file_result is not None
    assert "drawing.mid" in window.identify.status.text()
    # a picture dropped on the canvas replaces the drawing (and can be undone)
    window.tabs.setCurrentWidget(tab)
    before = tab.canvas.ink.copy()
    drop_on(tab.canvas, pictures["jpeg"])
    qtbot.waitUntil(lambda: not np.array_equal(tab.canvas.ink, before), timeout=60_000)
    tab.canvas.undo()
    np.testing.assert_array_equal(tab.canvas.ink, before)
    # bad picture: a message, the canvas unchanged
    job = tab.open_image(str(pictures["corrupt"]))
    qtbot.waitUntil(lambda: job.settled, timeout=60_000)
    assert "Cannot use the picture" in tab.status.text()
    np.testing.assert_array_equal(tab.canvas.ink, before)
