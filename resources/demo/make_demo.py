"""Rebuild the demo library and its played queries (public-domain music only).

    python resources/demo/make_demo.py

Scores: a few works from the music21 corpus (copied as they are) and "Ode to Joy"
(Beethoven's tune, a simple arrangement written here). Queries: excerpts "played" from the
scores with human timing (tempo change, jitter, chord spread, a dropped and a wrong note),
plus one piece that is not in the demo library. See resources/LICENSES.md.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pretty_midi

HERE = Path(__file__).resolve().parent
CORPUS = {  # music21 corpus path → demo file name
    "joplin/maple_leaf_rag.mxl": "Joplin - Maple Leaf Rag.mxl",
    "mozart/k545/movement1_exposition.mxl": "Mozart - Sonata K.545 (I, exposition).mxl",
    "bach/bwv846.mxl": "Bach - Prelude in C, BWV 846.mxl",
    "bach/bwv66.6.mxl": "Bach - Chorale BWV 66.6.mxl",
    "bach/bwv7.7.mxl": "Bach - Chorale BWV 7.7.mxl",
    "chopin/mazurka06-2.krn": "Chopin - Mazurka Op. 6 No. 2.krn",
    "verdi/laDonnaEMobile.mxl": "Verdi - La donna è mobile.mxl",
    "liliuokalani/aloha_oe.mxl": "Liliuokalani - Aloha Oe.mxl",
    "cpebach/h186.mxl": "C. P. E. Bach - H. 186.mxl",
}
NOT_IN_LIBRARY = "bach/bwv4.8.mxl"  # a chorale the demo library does not have
ODE = [64, 64, 65, 67, 67, 65, 64, 62, 60, 60, 62, 64, 64, 62, 62,
       64, 64, 65, 67, 67, 65, 64, 62, 60, 60, 62, 64, 62, 60, 60]
ODE_LEN = [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1.5, 0.5, 2,
           1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1.5, 0.5, 2]


def ode_to_joy(path: Path) -> None:
    pm = pretty_midi.PrettyMIDI(initial_tempo=100)
    piano = pretty_midi.Instrument(0, name="Ode to Joy")
    beat = 0.6
    t = 0.0
    for i, (p, d) in enumerate(zip(ODE, ODE_LEN)):
        piano.notes.append(pretty_midi.Note(80, p, t, t + d * beat))
        t += d * beat
    chords = [(48, 55), (48, 55), (43, 50), (48, 55)] * 2  # C G C, two bars each phrase
    for bar, (a, b) in enumerate(chords[:8]):
        for q in range(4):
            for p in (a, b) if q % 2 == 0 else (b + 4,):
                piano.notes.append(pretty_midi.Note(60, p, (bar * 4 + q) * beat,
                                                    (bar * 4 + q + 1) * beat))
    pm.instruments.append(piano)
    pm.write(str(path))


def played(notes: list[tuple[float, int]], seed: int, start: float, length: float,
           out: Path) -> None:
    """Write an excerpt as a human might play it."""
    rng = np.random.default_rng(seed)
    sel = [(t, p) for t, p in notes if start <= t < start + length]
    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(0)
    wrong = int(rng.integers(len(sel)))
    for i, (t, p) in enumerate(sel):
        if rng.random() < 0.05:
            continue
        on = 0.3 + (t - start) * 1.08 + rng.normal(0, 0.012) + rng.uniform(0, 0.025)
        inst.notes.append(pretty_midi.Note(int(rng.integers(50, 90)),
                                           p + (1 if i == wrong else 0), max(on, 0), on + 0.3))
    pm.instruments.append(inst)
    pm.write(str(out))


def main() -> None:
    import music21

    from midizero_app.core.scores import load_notes

    scores, queries = HERE / "scores", HERE / "queries"
    for d in (scores, queries):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir()
    for src, name in CORPUS.items():
        shutil.copy(music21.corpus.getWork(src), scores / name)
    ode_to_joy(scores / "Beethoven - Ode to Joy.mid")

    def notes_of(path) -> list[tuple[float, int]]:
        n = load_notes(path)
        return list(zip(n.onset.tolist(), n.pitch.tolist()))

    played(notes_of(scores / "Beethoven - Ode to Joy.mid"), 1, 0.0, 8.0,
           queries / "played - ode to joy.mid")
    played(notes_of(scores / "Joplin - Maple Leaf Rag.mxl"), 2, 20.0, 10.0,
           queries / "played - maple leaf rag, middle.mid")
    played(notes_of(scores / "Mozart - Sonata K.545 (I, exposition).mxl"), 3, 6.0, 8.0,
           queries / "played - mozart.mid")
    played(notes_of(music21.corpus.getWork(NOT_IN_LIBRARY)), 4, 4.0, 10.0,
           queries / "played - a chorale not in the library.mid")


if __name__ == "__main__":
    main()
