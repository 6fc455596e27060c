""""Not in your library" for tunes on a small library: a teacher's folder, not 3,349 scores.

    python -m benchmarks.melody_small_library [--pieces 8 60] [--strangers 100] [--n 100]

The melody confidence is fitted on a 3,349-piece library, where a stranger's theme rarely
leads the runner-up by much; in a small library every answer leads by more. This checks
it where that matters most: a library of Bach chorales from the music21 corpus (MusicXML,
one style, mostly even notes) and themes from other chorales as strangers. Themes are
the soprano's notes (``--n`` a cell) at random starts, exact or as remembered
(``melody_queries.remembered``), in a random key, at the score's rhythm (a quarter = 0.5 s).
Some "strangers" are other harmonisations of a library chorale's hymn tune, so finding
them is not always wrong: rejection here is a lower bound. No ASAP data needed.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.melody_queries import LENGTHS, remembered
from midizero_app.core.encoder import default_model_path
from midizero_app.core.frames import Frames
from midizero_app.core.library import Library
from midizero_app.core.melody_search import search_melody


def soprano(path: str) -> tuple[np.ndarray, np.ndarray] | None:
    """The first part's notes of a corpus score: MIDI pitches and onsets in seconds."""
    import music21

    part = music21.converter.parse(path).parts[0].stripTies()
    notes = [n for n in part.recurse().notes if n.isNote]
    onsets = np.array([float(n.getOffsetInHierarchy(part)) for n in notes]) * 0.5
    if len(notes) < 30 or np.any(np.diff(onsets) <= 0):
        return None
    return np.array([n.pitch.midi for n in notes], np.int64), onsets


def main() -> None:
    import music21

    ap = argparse.ArgumentParser()
    ap.add_argument("--pieces", type=int, nargs="+", default=[8, 60])
    ap.add_argument("--strangers", type=int, default=100)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--seed", type=int, default=5)
    args = ap.parse_args()
    rows = ["| chorales in the library | notes | form | Top-1 (in) | rejected (out) | "
            "Top-1 unflagged (in) |", "|---|---|---|---|---|---|"]
    for size in args.pieces:
        rng = np.random.default_rng(args.seed)
        paths = sorted(str(p) for p in music21.corpus.getComposer("bach")
                       if str(p).endswith(".mxl"))
        rng.shuffle(paths)
        lines: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for p in paths:
            if (line := soprano(p)) is not None:
                lines[p] = line
            if len(lines) == size + args.strangers:
                break
        keys = list(lines)
        inside, outside = keys[:size], keys[size:]
        with tempfile.TemporaryDirectory() as tmp:
            scores = Path(tmp) / "scores"
            scores.mkdir()
            for k in inside:
                (scores / Path(k).name).write_bytes(Path(k).read_bytes())
            lib = Library(Path(tmp) / "lib", model=default_model_path())
            lib.add([scores])
            name_of = {p["id"]: Path(p["path"]).name for p in lib.pieces()}
            for length in LENGTHS:
                for form in ("exact", "remembered"):
                    found, flagged_in, flagged_out = [], [], []
                    for is_in, pool in ((True, inside), (False, outside)):
                        for _ in range(args.n):
                            k = pool[int(rng.integers(len(pool)))]
                            line, onsets = lines[k]
                            s = int(rng.integers(0, len(line) - length))
                            q, t = line[s:s + length], onsets[s:s + length]
                            if form == "remembered":
                                q, t = remembered(q, t, rng)
                            q = q + int(rng.choice([x for x in range(-6, 7) if x]))
                            cands, flag = search_melody(lib, Frames.from_chords(
                                [[int(p)] for p in q], onsets=t - t[0]))
                            if is_in:
                                found.append(bool(cands) and name_of[cands[0].piece]
                                             == Path(k).name)
                                flagged_in.append(flag)
                            else:
                                flagged_out.append(flag)
                    f = np.array(found)
                    rows.append(f"| {size} | {length} | {form} | {f.mean():.2f} | "
                                f"{np.mean(flagged_out):.2f} | "
                                f"{np.mean(f & ~np.array(flagged_in)):.2f} |")
                    print(rows[-1], flush=True)
            lib.close()
    print("\n".join(rows))


if __name__ == "__main__":
    main()
