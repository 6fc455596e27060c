"""Melody queries: top line, monophony, key-invariant windows, tolerant alignment,
and end to end on a small real library (music21 corpus chorales)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from midizero_app.core.frames import Frames, group_score
from midizero_app.core.library import Library
from midizero_app.core.melody import (CENTER, MAX_LINES, Rhythm, align, exact_score,
                                      is_monophonic, library_windows, likelihood,
                                      match_evidence, melody_lines, melody_windows, place_tempo,
                                      segment, skyline, tune_notes)
from midizero_app.core.scores import load_notes

from .conftest import random_piece, write_midi

CHORALES = ("bach/bwv66.6", "bach/bwv7.7", "bach/bwv26.6", "bach/bwv40.3", "bach/bwv248.23-2",
            "bach/bwv269", "bach/bwv281", "bach/bwv324")


def soprano(name: str) -> np.ndarray:
    """The real top voice of a corpus chorale, by corpus name or path (MIDI pitches, ties
    merged)."""
    import music21

    part = music21.corpus.parse(name).parts[0].stripTies()
    return np.array([n.pitch.midi for n in part.recurse().notes if n.isNote], np.int64)


def sql(lib: Library, query: str, args: tuple = ()) -> list[tuple]:
    """Rows of ``query`` read from the library's catalogue (a read-only connection of its
    own)."""
    import sqlite3

    db = sqlite3.connect(f"file:{lib.db_path}?mode=ro", uri=True)
    try:
        return db.execute(query, args).fetchall()
    finally:
        db.close()


def tune(pitches, step: float = 0.4) -> Frames:
    return Frames.from_chords([[int(p)] for p in pitches], onsets=np.arange(len(pitches)) * step)


def test_skyline_takes_the_top_note_of_each_frame():
    f = Frames.from_chords([[48, 64, 67], [50], [43, 71, 59], [72]])
    assert skyline(f).tolist() == [67, 50, 71, 72]


def test_crossing_voices_skyline_follows_whichever_is_higher():
    # voice A falls 72→60 while voice B rises 60→72: the top line is the upper envelope
    a, b = np.linspace(72, 60, 7).round(), np.linspace(60, 72, 7).round()
    f = Frames.from_chords([[int(x), int(y)] for x, y in zip(a, b)])
    assert skyline(f).tolist() == np.maximum(a, b).astype(int).tolist()


def test_monophonic_detection():
    assert is_monophonic(tune([60, 62, 64, 65, 67, 69, 71, 72]))
    # a few legato overlaps grouped into one frame are still a melody
    chords = [[60], [62], [64, 65], [67], [69], [71], [72], [74], [76], [77], [79], [81]]
    assert is_monophonic(Frames.from_chords(chords))
    two_hands = [[48, 60], [62], [52, 64], [65], [55, 67], [69], [48, 72], [71]]
    assert not is_monophonic(Frames.from_chords(two_hands))
    assert not is_monophonic(tune([60, 62, 64]))  # too short to call


def test_melody_windows_are_key_invariant():
    line = np.array([60, 62, 64, 65, 67, 65, 64, 62, 60, 59, 60, 64])
    w0, s0, sh0 = melody_windows(line, 1)
    w5, s5, sh5 = melody_windows(line + 5, 1)
    assert np.array_equal(w0, w5)
    assert np.array_equal(sh0 - sh5, np.full(len(sh0), 5))
    assert w0.shape == (3, 10, 88) and w0.sum(axis=2).max() == 1
    med = np.median(np.nonzero(w0[0])[1] + 21)
    assert abs(med - CENTER) <= 1


def test_alignment_reports_the_shift_and_forgives_slips():
    rng = np.random.default_rng(1)
    lib_line = rng.integers(55, 80, 80)
    q = lib_line[30:46].copy() - 4          # the passage, 4 semitones down
    q[5] += 12                               # an octave slip
    q = np.delete(q, 9)                      # a dropped note
    q = np.insert(q, 3, q[3])                # a repeated note added
    other = rng.integers(55, 80, 60)
    a = align(q, np.stack([segment(lib_line, 22, 60), other]))
    assert a[0].transpose == 4
    assert 22 + a[0].start == 30
    assert a[0].score > 8 and a[0].score > a[1].score + 5


def test_alignment_skips_accompaniment_notes_in_the_library_top_line():
    melody = [72, 74, 76, 77, 79, 77, 76, 74, 72, 71, 72]
    lib_line = []
    for i, p in enumerate(melody):  # a low accompaniment note after every other tune note
        lib_line.append(p)
        if i % 2:
            lib_line.append(48)
    a = align(np.array(melody) + 2, np.array([lib_line]))[0]
    assert a.transpose == -2
    n_accompaniment = len(lib_line) - len(melody)
    exact = sum(exact_score(d) for d in np.diff(melody))
    assert a.score >= exact - 0.5 * n_accompaniment - 1e-6  # each costs ≤ ½ interval


def test_a_matched_leap_counts_more_than_a_matched_step():
    # The same tune, one interval wrong in each library line: the line that keeps the
    # tune's rare leap (a sixth up) is the better match than the one that keeps a step.
    q = np.array([64, 62, 60, 62, 64, 64, 64, 73, 71, 69])
    kept_leap = q.copy()
    kept_leap[2] = 59  # two steps become a whole and a minor third; the sixth stays
    kept_step = q.copy()
    kept_step[7] = 72  # the sixth becomes a fifth and the step after it a minor second
    assert exact_score(9) > exact_score(0) > 0 and exact_score(-2) < 1
    a_leap, a_step = align(q + 3, np.stack([kept_leap, kept_step]))
    assert a_leap.transpose == a_step.transpose == -3
    assert a_leap.score > a_step.score


def test_alignment_reports_the_register_as_well_as_the_key():
    q = np.array([60, 62, 64, 65, 67, 69, 67, 65, 64, 62])
    lib = np.stack([segment(q + 7, -3, 20), segment(q - 17, -3, 20)])
    up, down = align(q, lib)
    assert (up.transpose, up.offset) == (-5, 7)     # a fifth up: key −5, register +7
    assert (down.transpose, down.offset) == (-5, -17)


def test_a_segment_too_short_for_the_tune_aligns_no_note():
    """A long tune against a segment with a few scattered notes (a short line's end among
    padding): no alignment exists; it scores about −1e9 and aligns nothing, and the segment
    beside it that holds the tune is aligned as usual."""
    q = np.array([60, 62, 64, 65, 67, 69, 71, 72] * 4)
    sparse = np.full(2 * len(q) + 16, -1)
    sparse[[0, 3, 4, 9]] = [60, 64, 65, 71]
    held = segment(q + 2, -8, 2 * len(q) + 16)
    none, found = align(q, np.stack([sparse, held]))
    assert none.score < -1e8 and (none.start, none.end, none.matched, none.offset) == (0, 0, 0, 0)
    assert (found.start, found.offset, found.matched) == (8, 2, len(q) - 1)


def test_likelihood_sums_a_tune_s_places_and_forgives_slips():
    rng = np.random.default_rng(3)
    q = np.array([67, 67, 69, 67, 72, 71, 67, 67, 69, 67, 74, 72])  # Happy Birthday
    noise = rng.integers(50, 80, 12)
    once = np.concatenate([noise, q + 2, noise])
    twice = np.concatenate([noise, q + 2, noise, q + 2])
    wrong = once.copy()
    wrong[12 + 5] += 1                  # the player hits a neighbouring key
    octave = once.copy()
    octave[12 + 4] -= 12                # ... one note an octave off
    dropped = np.delete(once, 12 + 2)   # ... leaves a note out
    stranger = rng.integers(50, 80, len(once))
    segs = np.stack([segment(x, 0, 50) for x in (once, twice, wrong, octave, dropped, stranger)])
    fit = likelihood(q, segs, np.full(len(segs), 2))
    total = fit.sum(1)
    assert 0.9 < total[0] < 1.2                      # note for note: 1, at the tune's end
    assert fit[0].argmax() == 12 + len(q) - 1
    assert total[1] == pytest.approx(2 * total[0], rel=0.05)  # a tune heard twice counts twice
    for slipped in total[2:5]:
        assert 1e-3 < slipped < 0.1 * total[0]       # a slip costs, but keeps the place
    assert total[5] < 1e-6 * total[2:5].min()        # unrelated notes fit nowhere
    assert match_evidence(q) > len(q)                # each note ~1.5-4 nats above chance


def test_rhythm_tells_apart_places_that_hold_the_same_notes():
    q = np.array([67, 67, 69, 67, 72, 71, 67, 67, 69, 67, 74, 72])  # Happy Birthday
    beats = np.array([0, 0.75, 1, 2, 3, 4, 6, 6.75, 7, 8, 9, 10])   # its dotted rhythm
    even = np.arange(len(q), dtype=float)
    segs = np.stack([segment(q, 0, 20)] * 2)
    lib_times = np.stack([np.r_[beats, np.full(8, np.nan)], np.r_[even, np.full(8, np.nan)]])
    aligned = align(q, segs)
    pitch_only = likelihood(q, segs, np.zeros(2, np.int64)).sum(1)
    # A dotted figure is strong evidence; even notes are weak (a player who does not know
    # the rhythm plays them), but they still prefer the place in even notes.
    for played, own, lead in ((beats * 0.4, 0, 100), (even * 0.3, 1, 1.2)):  # own tempo
        tempo = place_tempo(aligned, played, lib_times)
        assert tempo[own] == pytest.approx(played[-1] / lib_times[own, len(q) - 1])
        fit = likelihood(q, segs, np.zeros(2, np.int64), Rhythm(played, lib_times, tempo)).sum(1)
        assert fit[own] > lead * fit[1 - own]          # the place in the played rhythm wins
        assert fit[1 - own] > 0.5 * pitch_only[1 - own] - 1e-12  # the other loses ≤ half
    # a place whose tempo is unknown is ranked on pitches alone
    unknown = likelihood(q, segs, np.zeros(2, np.int64), Rhythm(even, lib_times, np.zeros(2)))
    assert np.allclose(unknown, likelihood(q, segs, np.zeros(2, np.int64)))


def test_the_piece_in_the_played_rhythm_comes_first(tmp_path, bundled_model):
    """Two pieces hold the same notes, one in even notes, one dotted: the tune's rhythm,
    played at a tempo of its own, names it."""
    d = tmp_path / "scores"
    d.mkdir()
    line = [64, 64, 65, 67, 67, 65, 64, 62, 60, 60, 62, 64, 64, 62, 62]
    dotted = np.cumsum([0] + [0.75, 0.25] * 7)[:len(line)] * 0.5
    write_midi(d / "even.mid", [(i * 0.5, p, 0.5) for i, p in enumerate(line)])
    write_midi(d / "dotted.mid", [(t, p, 0.2) for t, p in zip(dotted, line)])
    write_midi(d / "other.mid", random_piece(4, 80))
    with Library(tmp_path / "lib", model=bundled_model) as lib:
        assert not lib.add([d]).failed
        for onsets, name in ((np.arange(len(line)) * 0.35, "even.mid"),
                             (dotted * 1.3, "dotted.mid")):
            query = Frames.from_chords([[p + 3] for p in line], onsets=onsets)
            res = lib.search(query, top=3)
            assert res["mode"] == "melody"
            assert [Path(r["path"]).name for r in res["results"][:2]] == \
                [name, ({"even.mid", "dotted.mid"} - {name}).pop()], res["results"]
            assert res["results"][0]["transpose"] == -3


def test_gram_votes_weigh_rarity_and_rhythm_not_library_order(tmp_path, bundled_model):
    """The places a tune is aligned at are the ones its shared runs say most about: a rare
    leap figure beats a scale run that many pieces hold, and the same notes in the tune's
    own rhythm beat them in even notes, though those pieces were added first (with plain
    counts, ties went to the pieces added first)."""
    from midizero_app.core.melody_search import LineGrams

    first, last = tmp_path / "first", tmp_path / "last"
    first.mkdir()
    last.mkdir()
    scale = [60, 62, 64, 65, 67, 69, 71, 72]
    for i in range(6):  # each holds the tune's opening run, as scales everywhere do
        write_midi(first / f"scale{i}.mid", [(k * 0.5, p + i, 0.5)
                                              for k, p in enumerate(scale * 3)])
    leaps = [50, 57, 65, 53, 65, 52, 59, 48]  # holds the tune's leap figure 65 53 65 52
    write_midi(last / "leaps.mid", [(k * 0.5, p, 0.5) for k, p in enumerate(leaps)])
    dotted = [67, 67, 69, 67, 72, 71, 67, 67, 69, 67, 74, 72]
    beats = [0, 0.75, 1, 2, 3, 4, 6, 6.75, 7, 8, 9, 10]
    write_midi(first / "even.mid", [(k * 0.5, p, 0.5) for k, p in enumerate(dotted)])
    write_midi(last / "dotted.mid", [(b * 0.5, p, 0.4) for b, p in zip(beats, dotted)])
    with Library(tmp_path / "lib", model=bundled_model) as lib:
        assert not lib.add([first]).failed and not lib.add([last]).failed
        grams = LineGrams.of(lib)

        def best(line, onsets=None) -> str:
            pseudo, _ = grams.vote(np.asarray(line) + 2, 1, onsets)[0]
            return Path(lib.piece(pseudo // MAX_LINES)["path"]).name

        # each shares one run with the tune: the rare one tells more
        assert best([60, 62, 64, 65, 70, 65, 53, 65, 52]) == "leaps.mid"
        assert best(dotted, np.array(beats) * 0.6) == "dotted.mid"
        assert best(dotted, np.arange(len(dotted)) * 0.3) == "even.mid"


def test_a_short_tune_whose_opening_recurs_is_aligned_where_it_is_played(tmp_path,
                                                                         bundled_model):
    """A refrain's opening figure comes eight times, going on otherwise each time, before
    the whole tune; played with a wrong note, the tune shares only that figure with its
    place, so all nine places tie on votes. The interval grams alone (no learned windows)
    still align it where it is: a tune of a few notes keeps more places per line."""
    from midizero_app.core.melody_search import PLACES, PLACES_TINY, search_melody

    rng = np.random.default_rng(0)
    theme = [60, 67, 64, 72, 71, 62, 65, 69]
    line: list[int] = []
    for _ in range(8):
        line += theme[:5] + rng.integers(40, 56, 5).tolist()
    line += rng.integers(40, 56, 30).tolist()
    at = len(line)
    line += theme + rng.integers(40, 56, 10).tolist()
    assert PLACES < 9 <= PLACES_TINY
    d = tmp_path / "scores"
    d.mkdir()
    write_midi(d / "refrain.mid", [(k * 0.5, p, 0.5) for k, p in enumerate(line)])
    with Library(tmp_path / "lib", model=bundled_model) as lib:
        assert not lib.add([d]).failed
        played = list(theme)
        played[5] += 1
        query = Frames.from_chords([[p + 3] for p in played], onsets=np.arange(8) * 0.45)
        cands, _ = search_melody(lib, query, sources=("grams",))
        assert cands[0].positions[0]["offset"] == at
        assert cands[0].transpose == -3


def test_the_rhythm_a_place_keeps_is_evidence_for_the_answer(tmp_path, bundled_model):
    """A dotted tune played in its own rhythm (at another tempo) keeps its place's rhythm;
    the same notes in a rhythm of their own keep less of it, and the confidence, which
    never falls for more rhythm kept, is no higher."""
    from midizero_app.core.melody_confidence import FEATURES, confidence_features
    from midizero_app.core.melody_search import search_melody, tune_evidence

    rng = np.random.default_rng(1)
    notes = [60, 64, 67, 65, 64, 62, 60, 67, 69, 71, 72, 74, 72, 69, 67, 65]
    beats = np.cumsum([0] + [1.5, 0.5] * 8)[:len(notes)]  # long-short, long-short
    line = rng.integers(48, 84, 40).tolist() + notes + rng.integers(48, 84, 40).tolist()
    times = np.r_[np.arange(40) * 0.5, 20 + beats * 0.5, 20 + beats[-1] * 0.5 + 1
                  + np.arange(40) * 0.5]
    d = tmp_path / "scores"
    d.mkdir()
    write_midi(d / "dotted.mid", [(float(t), int(p), 0.2) for t, p in zip(times, line)])
    with Library(tmp_path / "lib", model=bundled_model) as lib:
        assert not lib.add([d]).failed
        kept = {}
        for name, onsets in {"its own": beats * 0.4,
                             "even": np.arange(len(notes)) * 0.4,
                             "short-long": np.cumsum([0] + [0.5, 1.5] * 8)[:len(notes)] * 0.4
                             }.items():
            q = Frames.from_chords([[p + 2] for p in notes], onsets=onsets)
            cands, _ = search_melody(lib, q)
            line_, _, match, rhythm = tune_evidence(q)
            x = confidence_features(cands, len(line_), match, rhythm)
            kept[name] = (x[FEATURES.index("rhythm_kept")], cands[0].confidence)
        assert kept["its own"][0] > 0.5, kept
        for other in ("even", "short-long"):
            assert kept[other][0] < kept["its own"][0] - 0.3, kept
        assert kept["short-long"][1] <= kept["its own"][1] + 1e-9, kept


def spread_chords(line, lead: float = 0.06, below: int = 17, step: float = 0.5) -> Frames:
    """A tune as a pianist plays it with a bass under every other note, struck ``lead``
    seconds early (a spread chord: too far apart for one frame at τ = 50 ms)."""
    chords, onsets = [], []
    for i, p in enumerate(line):
        t = 1.0 + i * step
        if i % 2 == 0:
            chords.append([int(p) - below])
            onsets.append(t - lead)
        chords.append([int(p)])
        onsets.append(t)
    return Frames.from_chords(chords, onsets=np.array(onsets))


def test_tune_notes_drop_the_bass_of_a_spread_chord():
    line = [67, 69, 71, 72, 74, 72]
    assert tune_notes(spread_chords(line))[0].tolist() == line
    # struck just after the tune note, too; the tune notes keep their times
    late = Frames.from_chords([[72], [48], [74], [76]], onsets=[0.0, 0.05, 0.5, 1.0])
    pitches, onsets = tune_notes(late)
    assert pitches.tolist() == [72, 74, 76] and onsets.tolist() == [0.0, 0.5, 1.0]
    # a fast run by step keeps every note, and so does a line without times
    run = [60, 62, 64, 65, 67, 69, 71, 72]
    assert tune_notes(tune(run, step=0.06))[0].tolist() == run
    assert tune_notes(Frames.from_chords([[p] for p in [60, 72, 48, 67]]))[0].tolist() == \
        [60, 72, 48, 67]


@pytest.fixture(scope="module")
def chorale_library(tmp_path_factory, bundled_model):
    import music21

    from midizero_app.core.library import Library

    d = tmp_path_factory.mktemp("chorales")
    for name in CHORALES:
        src = Path(str(music21.corpus.getWork(name, fileExtensions=("mxl",))))
        (d / f"{name.replace('/', '_')}{src.suffix}").write_bytes(src.read_bytes())
    lib = Library(tmp_path_factory.mktemp("lib"), model=bundled_model)
    report = lib.add([d])
    assert not report.failed
    yield lib
    lib.close()


@pytest.mark.parametrize("name", CHORALES[:4])
def test_one_hand_theme_in_three_keys_is_found_first(chorale_library, name):
    line = soprano(name)[:14]
    for shift in (0, -5, 3):
        res = chorale_library.search(tune(line + shift), top=3)
        assert res["mode"] == "melody"
        top = res["results"][0]
        assert Path(top["path"]).stem == name.replace("/", "_"), (shift, res["results"])
        assert not res["not_in_library"]
        assert top["transpose"] == -shift
        assert top["positions"][0]["frame"] <= 2  # the theme opens the chorale


@pytest.mark.parametrize("name", ["bach/bwv7.7", "bach/bwv269"])
def test_a_tune_played_with_spread_bass_notes_is_found_in_three_keys(chorale_library, name):
    line = soprano(name)[:12]
    for shift in (0, -5, 3):
        res = chorale_library.search(spread_chords(line + shift), top=3)
        top = res["results"][0]
        assert Path(top["path"]).stem == name.replace("/", "_"), (shift, res["results"])
        assert top["transpose"] == -shift and not res["not_in_library"]


def test_a_remembered_theme_with_slips_is_still_found(chorale_library):
    line = soprano("bach/bwv26.6")[4:20].copy() + 2
    line[6] -= 12                     # an octave off
    line[11] += 1                     # a wrong note
    line = np.delete(line, 2)         # a dropped note
    res = chorale_library.search(tune(line), top=3)
    assert Path(res["results"][0]["path"]).stem == "bach_bwv26.6"


def stranger_chorales(n: int) -> list[str]:
    """Corpus chorales not in ``chorale_library`` (paths), in a fixed order."""
    import music21

    return [w for w in sorted(str(p) for p in music21.corpus.getComposer("bach"))
            if w.endswith(".mxl") and "bwv2" in w
            and not any(Path(c).name + ".mxl" == Path(w).name for c in CHORALES)][:n]


def test_themes_of_pieces_not_in_the_library_are_rejected(chorale_library):
    # Chorale openings are the hardest strangers (the library's own style, in even notes);
    # the confidence is fitted to reject ≥ 92 % of held-out themes in a 3,349-piece
    # library, and rejects 85-96 % of 12-24-note ones in this 8-chorale one.
    flagged = []
    for i, path in enumerate(stranger_chorales(12)):
        res = chorale_library.search(tune(soprano(path)[:14] + (i % 5) - 2), top=3)
        assert res["mode"] == "melody"
        flagged.append(res["not_in_library"])
    assert len(flagged) == 12 and sum(flagged) >= 9, flagged


def test_a_flagged_short_tune_reads_not_sure_and_a_longer_one_not_in_library(chorale_library):
    # A flag on a tune of fewer than 16 notes also falls on right answers, so it reads
    # "unsure" (more of the tune would tell); from 16 notes on it reads "not_in_library".
    short_flags, long_flags = [], []
    for i, path in enumerate(stranger_chorales(8)):
        line = soprano(path) + (i % 5) - 2
        short = chorale_library.search(tune(line[:10]), top=3)
        assert short["mode"] == "melody" and short["tune_notes"] == 10
        assert short["verdict"] == ("unsure" if short["not_in_library"] else "found")
        longer = chorale_library.search(tune(line[:24]), top=3)
        assert longer["tune_notes"] == 24
        assert longer["verdict"] == ("not_in_library" if longer["not_in_library"] else "found")
        short_flags.append(short["not_in_library"])
        long_flags.append(longer["not_in_library"])
    assert sum(short_flags) >= 4 and sum(long_flags) >= 4, (short_flags, long_flags)
    own = chorale_library.search(tune(soprano("bach/bwv66.6")[:10] - 4), top=3)
    assert own["verdict"] == "found" and own["tune_notes"] == 10
    texture = chorale_library.search(Frames.from_chords(
        [[48, 60, 64, 67], [50, 62, 65, 69], [52, 64, 67, 71]] * 4,
        onsets=np.arange(12) * 0.5), top=3)
    assert texture["mode"] == "texture" and texture["tune_notes"] is None


def test_a_stranger_tune_played_live_reads_not_sure_then_not_in_library(chorale_library):
    from midizero_app.live.replay import simulate
    from midizero_app.live.session import LiveSession

    line = next(soprano(p)[:30] for p in stranger_chorales(8)
                if chorale_library.search(tune(soprano(p)[:24]), top=3)["not_in_library"])
    updates = []
    session = LiveSession(chorale_library, on_update=updates.append, tau=0.05)
    simulate(session, np.arange(len(line)) * 0.4, line)
    tunes = [u for u in updates if u["mode"] == "melody"]
    assert tunes
    for u in tunes:
        short = u["tune_notes"] < 16
        assert u["verdict"] == ("found" if not u["not_in_library"] else
                                "unsure" if short else "not_in_library"), u
    assert tunes[-1]["tune_notes"] == 24 and tunes[-1]["verdict"] == "not_in_library"
    assert any(u["verdict"] == "unsure" for u in tunes)


def test_two_hand_query_searches_the_full_texture(chorale_library, tmp_path):
    import music21

    score = music21.corpus.parse("bach/bwv7.7")
    notes = []
    for n in score.flatten().notes:
        for p in n.pitches:
            notes.append((float(n.offset) * 0.5, p.midi, float(n.quarterLength) * 0.5))
    path = write_midi(tmp_path / "played.mid", [x for x in notes if 4 <= x[0] < 14])
    res = chorale_library.search(str(path), top=3)
    assert res["mode"] == "texture"
    assert Path(res["results"][0]["path"]).stem == "bach_bwv7.7"


def test_melody_flag_forces_the_melody_view(chorale_library):
    line = soprano("bach/bwv40.3")[:12]
    chords = [[int(p)] if i % 3 else [int(p), int(p) - 12] for i, p in enumerate(line)]
    res = chorale_library.search(Frames.from_chords(chords), top=3, melody=True)
    assert res["mode"] == "melody"
    assert Path(res["results"][0]["path"]).stem == "bach_bwv40.3"


def test_the_demo_library_finds_ode_to_joy_played_as_a_tune(tmp_path, bundled_model):
    from midizero_app.core.library import Library

    from .conftest import ROOT

    lib = Library(tmp_path / "lib", model=bundled_model)
    lib.add([ROOT / "resources" / "demo" / "scores"])
    ode = [64, 64, 65, 67, 67, 65, 64, 62, 60, 60, 62, 64, 64, 62, 62]  # E E F G G F E D C...
    for shift in (0, 7, -3):  # in C, in G, in A
        res = lib.search(tune(np.array(ode) + shift), top=3)
        assert res["mode"] == "melody" and not res["not_in_library"]
        assert "Ode to Joy" in res["results"][0]["title"], res["results"]
        assert (res["results"][0]["transpose"] + shift) % 12 == 0  # shifts are up to octaves
    lib.close()


def test_any_key_finds_a_full_texture_played_in_another_key(chorale_library):
    f = None
    for p in chorale_library.pieces():
        if p["path"].endswith("bwv26.6.mxl"):
            f = chorale_library.frames_of(p["id"])
    chords = [[int(x) + 4 for x in c] for c in f.chords()[10:40]]  # a major third up
    res = chorale_library.search(Frames.from_chords(chords, f.onset[10:40]), top=3,
                                 any_key=True)
    assert res["mode"] == "texture"
    assert Path(res["results"][0]["path"]).stem == "bach_bwv26.6"
    assert (res["results"][0]["transpose"] + 4) % 12 == 0


# --- score voices as lines of their own ------------------------------------------------

_STEPS = ("C", "C", "D", "D", "E", "F", "F", "G", "G", "A", "A", "B")
_TYPES = {1: "quarter", 2: "half", 4: "whole"}


def write_two_voice_xml(path: Path, voices: list[list[tuple[int, int]]]) -> Path:
    """A one-staff MusicXML score in 4/4 whose voices 1, 2, ... play (MIDI pitch,
    quarters) notes; no note crosses a barline."""
    def bars(notes):
        out, cur, filled = [], [], 0
        for p, q in notes:
            cur.append((p, q))
            filled += q
            if filled == 4:
                out.append(cur)
                cur, filled = [], 0
        return out

    per_voice = [bars(v) for v in voices]
    measures = []
    for m in range(len(per_voice[0])):
        body = ["<attributes><divisions>1</divisions><key><fifths>0</fifths></key><time>"
                "<beats>4</beats><beat-type>4</beat-type></time><clef><sign>G</sign>"
                "<line>2</line></clef></attributes>"] if m == 0 else []
        for vi, vbars in enumerate(per_voice):
            if vi:
                body.append("<backup><duration>4</duration></backup>")
            for p, q in vbars[m]:
                alter = "<alter>1</alter>" if _STEPS[p % 12] == _STEPS[(p - 1) % 12] else ""
                body.append(f"<note><pitch><step>{_STEPS[p % 12]}</step>{alter}"
                            f"<octave>{p // 12 - 1}</octave></pitch><duration>{q}</duration>"
                            f"<voice>{vi + 1}</voice><type>{_TYPES[q]}</type></note>")
        measures.append(f'<measure number="{m + 1}">{"".join(body)}</measure>')
    path.write_text('<?xml version="1.0" encoding="UTF-8"?>\n<score-partwise version="3.1">'
                    '<part-list><score-part id="P1"><part-name>Piano</part-name></score-part>'
                    f'</part-list><part id="P1">{"".join(measures)}</part></score-partwise>\n')
    return path


# The tune is in the lower voice; the upper voice holds half notes above it, so the top
# line of the frames loses every other tune note.
INNER_TUNE = [60, 62, 64, 65, 67, 65, 64, 62, 64, 67, 69, 67, 65, 64, 62, 60]
HELD_ABOVE = [76, 77, 79, 77, 76, 74, 72, 74]


def _voice_lines_of(path: Path) -> list:
    return [line for line in melody_lines(group_score(load_notes(path))) if line.voice]


def test_two_voices_on_one_staff_give_each_voice_its_line(tmp_path):
    path = write_two_voice_xml(tmp_path / "inner.musicxml",
                               [[(p, 2) for p in HELD_ABOVE], [(p, 1) for p in INNER_TUNE]])
    frames = group_score(load_notes(path))
    assert frames.voices.shape == (2, 16)
    top = skyline(frames)
    assert top[::2].tolist() == HELD_ABOVE  # the held voice hides every other tune note
    upper, lower = _voice_lines_of(path)
    assert lower.pitches.tolist() == INNER_TUNE and lower.frames.tolist() == list(range(16))
    assert upper.pitches.tolist() == HELD_ABOVE and upper.frames.tolist() == list(range(0, 16, 2))


def test_crossing_voices_keep_their_own_lines(tmp_path):
    falling = [72, 71, 69, 67, 65, 64, 62, 60]
    rising = [60, 62, 64, 65, 67, 69, 71, 72]
    path = write_two_voice_xml(tmp_path / "crossing.musicxml",
                               [[(p, 1) for p in falling], [(p, 1) for p in rising]])
    a, b = _voice_lines_of(path)
    assert a.pitches.tolist() == falling and b.pitches.tolist() == rising


def test_a_voice_that_is_the_whole_top_line_adds_no_line_nor_windows():
    chords = [[48, 60 + i % 5] for i in range(30)]
    f = Frames.from_chords(chords)
    without = library_windows(f, 2)[0]
    f.voices = np.array([[60 + i % 5 for i in range(30)], [48] * 30], np.int16)
    assert [line.voice for line in melody_lines(f)] == [False, True]  # the bass only
    # a voice equal to the top line for a stretch: those windows are line 0's already
    f.voices[1, :] = f.voices[0]
    f.voices[1, 20:] = 40
    wins, labels = library_windows(f, 2)
    voice_starts = labels[labels // 1_000_000 == 1] % 1_000_000
    assert len(wins) < 2 * len(without)
    assert voice_starts.min() >= 11  # windows inside frames 0..19 dropped (20 − 10 + 1)


def test_midi_pieces_have_no_voice_lines(tmp_path, bundled_model):
    path = write_midi(tmp_path / "two.mid", [(i * 0.5, p, 1.0) for i, p in enumerate(HELD_ABOVE)]
                      + [(i * 0.25, p, 0.25) for i, p in enumerate(INNER_TUNE)])
    with Library(tmp_path / "lib", model=bundled_model) as lib:
        lib.add([path])
        pid = lib.pieces()[0]["id"]
        assert lib.frames_of(pid).voices is None
        assert sql(lib, "SELECT voices FROM frames WHERE piece=?", (pid,))[0][0] is None
        _, label_frame = lib.view_maps("melody")
        assert (label_frame // 1_000_000).max() <= 1  # the top line and its no-dip form


def _tiny_library(tmp_path: Path, model: Path, target: Path) -> Library:
    """``target`` beside a plain-melody variant of the inner tune (three notes changed) and
    two unrelated pieces."""
    d = tmp_path / f"scores-{target.suffix[1:]}"
    d.mkdir()
    (d / target.name).write_bytes(target.read_bytes())
    variant = list(INNER_TUNE)
    variant[3], variant[8], variant[12] = 64, 62, 67
    write_midi(d / "variant.mid", [(i * 0.5, p, 0.5) for i, p in enumerate(variant)])
    for seed in (1, 2):
        write_midi(d / f"other{seed}.mid", random_piece(seed, 80))
    lib = Library(tmp_path / f"lib-{target.suffix[1:]}", model=model)
    assert not lib.add([d]).failed
    return lib


def test_a_tune_in_an_inner_voice_is_found_through_its_voice_line(tmp_path, bundled_model):
    xml = write_two_voice_xml(tmp_path / "inner.musicxml",
                              [[(p, 2) for p in HELD_ABOVE], [(p, 1) for p in INNER_TUNE]])
    # the same notes as MIDI: no voices, so only the top line (every other tune note)
    mid = write_midi(tmp_path / "inner.mid",
                     [(i * 1.0, p, 1.0) for i, p in enumerate(HELD_ABOVE)]
                     + [(i * 0.5, p, 0.5) for i, p in enumerate(INNER_TUNE)])
    query = tune(np.array(INNER_TUNE) + 3)
    for target, expect_first in ((xml, True), (mid, False)):
        lib = _tiny_library(tmp_path, bundled_model, target)
        res = lib.search(query, top=3)
        lib.close()
        assert res["mode"] == "melody"
        first = Path(res["results"][0]["path"]).name
        assert (first == target.name) is expect_first, (target.name, res["results"])
        if expect_first:
            assert res["results"][0]["transpose"] == -3
            assert res["results"][0]["positions"][0]["frame"] == 0


def test_a_tune_held_as_one_piece_s_melody_and_another_s_inner_voice_names_the_melody(
        tmp_path, bundled_model):
    """Both align note for note; a tune is mostly a top line, so the tie goes to it."""
    d = tmp_path / "scores"
    d.mkdir()
    write_two_voice_xml(d / "inner.musicxml",
                        [[(p, 2) for p in HELD_ABOVE], [(p, 1) for p in INNER_TUNE]])
    write_two_voice_xml(d / "melody.musicxml", [[(p, 1) for p in INNER_TUNE]])
    for seed in (1, 2):
        write_midi(d / f"other{seed}.mid", random_piece(seed, 80))
    with Library(tmp_path / "lib", model=bundled_model) as lib:
        assert not lib.add([d]).failed
        res = lib.search(tune(np.array(INNER_TUNE) - 2), top=3)
    names = [Path(r["path"]).name for r in res["results"]]
    assert names[:2] == ["melody.musicxml", "inner.musicxml"], res["results"]
    assert res["results"][0]["transpose"] == 2


def test_a_library_made_before_voice_lines_opens_and_searches(tmp_path, bundled_model):
    import sqlite3

    import music21

    d = tmp_path / "scores"
    d.mkdir()
    for name in CHORALES[:2]:
        src = Path(str(music21.corpus.getWork(name, fileExtensions=("mxl",))))
        (d / f"{name.replace('/', '_')}{src.suffix}").write_bytes(src.read_bytes())
    with Library(tmp_path / "lib", model=bundled_model) as lib:
        lib.add([d])
    # Make it an older library: no voices or row checksums, its melody view under the old
    # version.
    db = sqlite3.connect(tmp_path / "lib" / "library.sqlite")
    db.execute("ALTER TABLE frames DROP COLUMN voices")
    db.execute("ALTER TABLE frames DROP COLUMN digest")
    db.execute("ALTER TABLE vectors DROP COLUMN digest")
    for table in ("vectors", "index_state"):
        db.execute(f"UPDATE {table} SET model_id = replace(model_id, 'melody2-', 'melody1-')")
    db.commit()
    db.close()
    with Library(tmp_path / "lib") as lib:
        cols = [r[1] for r in sql(lib, "PRAGMA table_info(frames)")]
        assert "voices" in cols
        assert all(lib.frames_of(p["id"]).voices is None for p in lib.pieces())
        res = lib.search(tune(soprano(CHORALES[1])[:14] - 2), top=3)  # re-embeds the view
        assert Path(res["results"][0]["path"]).stem == CHORALES[1].replace("/", "_")
        assert sql(lib, "SELECT COUNT(*) FROM vectors WHERE model_id LIKE 'melody2-%'")[0][0] == 2
        # The next add parses those scores again, once, and they gain their voice lines.
        report = lib.add([d])
        assert len(report.updated) == 2 and not report.unchanged and not report.failed
        assert all(lib.frames_of(p["id"]).voices.shape[0] >= 3 for p in lib.pieces())
        assert len(lib.add([d]).unchanged) == 2


def test_a_score_whose_voices_are_all_short_is_not_parsed_again(tmp_path, bundled_model):
    d = tmp_path / "short"
    d.mkdir()
    write_two_voice_xml(d / "short.musicxml", [[(72, 2), (74, 2)], [(60, 1), (62, 1), (64, 2)]])
    with Library(tmp_path / "lib", model=bundled_model) as lib:
        assert len(lib.add([d]).added) == 1
        pid = lib.pieces()[0]["id"]
        assert lib.frames_of(pid).voices is None  # no voice long enough for a line
        assert sql(lib, "SELECT voices FROM frames WHERE piece=?", (pid,))[0][0] == b""
        assert len(lib.add([d]).unchanged) == 1


def test_one_note_at_a_time_is_searched_as_a_tune_too_across_registers(chorale_library):
    # a chorale's soprano with every third note dropped two octaves: strictly one note at
    # a time, leaping like the top notes of a two-hand passage rather than moving like a tune
    line = soprano("bach/bwv40.3")[:16]
    leaps = [int(p) - 24 if i % 3 == 1 else int(p) for i, p in enumerate(line)]
    q = tune(np.array(leaps) + 2)  # and in another key
    assert not is_monophonic(q)  # not a line ...
    res = chorale_library.search(q, top=3)
    assert res["mode"] == "fused"  # ... but searched as a tune too
    assert Path(res["results"][0]["path"]).stem == "bach_bwv40.3"


def test_one_note_at_a_time_takes_a_confident_tune_answer():
    from midizero_app.core.query import answered_as_tune

    leaping = tune(np.array([60, 72, 43, 76, 62, 79, 48, 74]))
    chords = Frames.from_chords([[60], [64], [67, 48], [72], [71], [69, 53], [67], [65]])
    assert answered_as_tune("melody", leaping, melody_flag=True)  # a clear tune, always
    assert answered_as_tune("fused", leaping, melody_flag=False)
    assert not answered_as_tune("fused", leaping, melody_flag=True)  # unsure: the more
    assert not answered_as_tune("fused", chords, melody_flag=False)  # confident view wins
    assert not answered_as_tune("texture", leaping, melody_flag=False)


def test_a_one_note_passage_inside_a_live_performance_keeps_the_texture_answer(chorale_library):
    """Played live: a chorale's full texture, then only its top line (the hands in turn, or
    a transcription that lost the accompaniment). The latest notes alone look like a tune,
    but what was heard is a texture with a confident answer, and that answer stands."""
    from midizero_app.live.replay import simulate
    from midizero_app.live.session import LiveSession

    f = next(chorale_library.frames_of(p["id"]) for p in chorale_library.pieces()
             if p["path"].endswith("bwv7.7.mxl"))
    chords = f.chords()
    onsets, pitches = [], []
    for i in range(60):  # full chords, 0.4 s apart
        onsets += [i * 0.4] * len(chords[i])
        pitches += [int(p) for p in chords[i]]
    for i in range(60, 90):  # then the top note only
        onsets.append(i * 0.4)
        pitches.append(int(max(chords[i])))
    updates = []
    session = LiveSession(chorale_library, on_update=updates.append, tau=0.05)
    simulate(session, np.array(onsets), np.array(pitches))
    tune_like = [u for u in updates if u["frames"] > 84]  # the last 24 frames single notes
    assert tune_like
    for u in tune_like:
        assert u["mode"] == "texture"
        assert Path(u["results"][0]["path"]).stem == "bach_bwv7.7"


def test_a_library_of_one_piece_does_not_take_any_tune_for_it(tmp_path, bundled_model):
    # With no other piece the rival is any tune: a tune the piece explains no better than
    # chance (a scale here: worse; leaps: about as well) is not taken for it.
    import music21

    d = tmp_path / "scores"
    d.mkdir()
    src = Path(str(music21.corpus.getWork("bach/bwv66.6", fileExtensions=("mxl",))))
    (d / "bwv66.6.mxl").write_bytes(src.read_bytes())
    with Library(tmp_path / "lib", model=bundled_model) as lib:
        assert not lib.add([d]).failed
        own = lib.search(tune(soprano("bach/bwv66.6")[:12] + 3), top=3)
        assert own["mode"] == "melody" and own["results"][0]["transpose"] == -3
        assert not own["not_in_library"]
        tunes = {"a scale": [60, 62, 64, 65, 67, 69, 71, 72, 74, 76, 77, 79],
                 "leaps": [60, 72, 55, 70, 49, 66, 81, 58, 75, 52, 69, 84]}
        for name, line in tunes.items():
            res = lib.search(tune(np.asarray(line)), top=3)
            assert res["not_in_library"], (name, res["results"][:1])
