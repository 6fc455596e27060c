"""Real recordings: identify openly licensed piano recordings of ASAP pieces.

    nice -n 5 python -m benchmarks.real_recordings [--manifest FILE] [--excerpts 10]
        [--lengths 5 10 20] [--seed 0] [--library benchmarks/.cache/asap-library]

The recordings and their manifest (``manifest.json``: file, source repository, path and
commit, licence, performer, ``asap_piece`` = the ASAP folder of the piece or null when the
piece is not in the library) live in ``benchmarks/.cache/real-recordings/``, outside git.
Each recording is identified as ``midizero search FILE`` does it — decode to 22,050 Hz,
basic-pitch transcription, τ = ``AUDIO_TAU``, the library search — as a whole file and as
seeded random excerpts of each length (each excerpt's audio transcribed on its own).
Pieces in the library are graded by Top-1 (folder without its version suffix); pieces not in
it by whether the answer is flagged "not in your library". *pos*: the reported score time
against a linear time map (recording time × score length / recording length) within 10 % of
the piece — a rough check, as no alignment of these recordings exists.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import zlib
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np

from benchmarks.common import CACHE, grade_key
from midizero_app.audio.decode import load_audio
from midizero_app.audio.transcribe import (AUDIO_SEARCH, AUDIO_TAU, SAMPLE_RATE, transcribe,
                                           warm_up)
from midizero_app.core.library import Library

FOLDER = CACHE / "real-recordings"
POS_TOLERANCE = 0.10  # of the piece's length


@dataclass
class Answer:
    """One query's outcome: the top result, its grade and the reported score time."""
    title: str
    key: str | None
    confidence: float
    flagged: bool
    seconds: float | None
    right: bool          # in library: Top-1 is the piece; not in library: flagged
    pos_ok: bool | None  # reported time near the linear-map estimate (right Top-1 only)


@dataclass
class RecordingResult:
    """One manifest entry: the whole-file answer and the excerpt answers per length."""
    name: str
    piece: str | None
    licence: str
    duration: float
    whole: Answer
    excerpts: dict[float, list[Answer]] = field(default_factory=dict)
    cpu_s: float = 0.0


def identify(lib: Library, samples: np.ndarray, piece: str | None, start: float,
             length: float, duration: float) -> tuple[Answer, float]:
    """Transcribe ``samples`` and search them as the CLI does; grade against ``piece``.

    Returns the answer and the CPU seconds of the transcription."""
    c = time.process_time()
    notes = transcribe(samples, SAMPLE_RATE)
    cpu = time.process_time() - c
    if len(notes) == 0:
        return Answer("(no notes heard)", None, 0.0, True, None, piece is None, None), cpu
    res = lib.search(notes, top=10, aggregate="vote", **AUDIO_SEARCH)
    if not res["results"]:
        return Answer("(no result)", None, 0.0, True, None, piece is None, None), cpu
    top = res["results"][0]
    key = grade_key(top["path"])
    flagged = bool(res["not_in_library"])
    seconds = top["positions"][0]["seconds"] if top["positions"] else None
    right = flagged if piece is None else key == piece
    pos_ok = None
    if piece is not None and right and seconds is not None:
        score_len = float(lib.frames_of(top["piece_id"]).onset[-1])
        # the reported position is the score time of the query's start
        pos_ok = abs(seconds - start / duration * score_len) <= POS_TOLERANCE * score_len
    return Answer(top["title"], key, float(top["confidence"]), flagged, seconds, right,
                  pos_ok), cpu


def run_recording(lib: Library, folder: Path, rec: dict, lengths: list[float], n: int,
                  seed: int) -> RecordingResult:
    """The whole file and ``n`` seeded excerpts per length of one manifest entry."""
    samples, duration = load_audio(folder / rec["file"], SAMPLE_RATE)
    piece = rec.get("asap_piece")
    whole, cpu = identify(lib, samples, piece, 0.0, duration, duration)
    out = RecordingResult(rec["file"], piece, rec["licence"].split(" (")[0], duration, whole,
                          cpu_s=cpu)
    rng = np.random.default_rng(seed + zlib.crc32(rec["file"].encode()))
    for length in lengths:
        answers = []
        for _ in range(n if duration > length + 1 else 0):
            start = float(rng.uniform(0.0, duration - length))
            a, b = int(start * SAMPLE_RATE), int((start + length) * SAMPLE_RATE)
            ans, cpu = identify(lib, samples[a:b], piece, start, length, duration)
            out.cpu_s += cpu
            answers.append(ans)
        out.excerpts[length] = answers
    return out


def _frac(answers: list[Answer], attr: str) -> str:
    vals = [getattr(a, attr) for a in answers if getattr(a, attr) is not None]
    return f"{sum(vals)}/{len(vals)}" if vals else "–"


def print_table(results: list[RecordingResult], lengths: list[float]) -> None:
    """Per-recording table (Markdown), then the totals. ✓/✗ and *right*: Top-1 is the piece
    (in library) or the answer is flagged "not in your library" (not in library)."""
    head = ["recording", "ASAP piece", "licence", "duration", "whole file: Top-1 (conf.)",
            "flag", "pos"]
    head += [f"{length:g} s: right · flagged · pos" for length in lengths]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in results:
        w = r.whole
        mark = "✓" if w.right else "✗"
        where = f"{w.seconds:.0f} s" if w.seconds is not None else "–"
        cells = [r.name, r.piece or "*not in library*", r.licence, f"{r.duration:.0f} s",
                 f"{mark} {w.title[:38]} ({w.confidence:.2f})", "yes" if w.flagged else "no",
                 f"{where} {'✓' if w.pos_ok else '✗'}" if r.piece else "–"]
        for length in lengths:
            ex = r.excerpts[length]
            cells.append(f"{_frac(ex, 'right')} · {sum(a.flagged for a in ex)} · "
                         f"{_frac(ex, 'pos_ok')}")
        print("| " + " | ".join(cells) + " |", flush=True)
    for label, group in (("in library", [r for r in results if r.piece]),
                         ("not in library", [r for r in results if not r.piece])):
        if not group:
            continue
        line = [f"**{label}: {len(group)} recordings**",
                f"whole file right {sum(r.whole.right for r in group)}/{len(group)}"]
        for length in lengths:
            ex = [a for r in group for a in r.excerpts[length]]
            line.append(f"{length:g} s right {sum(a.right for a in ex)}/{len(ex)}, flagged "
                        f"{sum(a.flagged for a in ex)}/{len(ex)}")
        print("* " + "; ".join(line))
    audio_s = sum(r.duration + sum(len(v) * k for k, v in r.excerpts.items()) for r in results)
    print(f"* transcription CPU {sum(r.cpu_s for r in results):.0f} s for {audio_s:.0f} s of "
          f"audio (RTF {sum(r.cpu_s for r in results) / audio_s:.3f})")


def _short(key: str | None, title: str) -> str:
    """A grading key for reading: ASAP folders as they are, music21 files from 'corpus/'."""
    if key is None:
        return title
    return "music21:" + key.split("corpus/", 1)[1] if "corpus/" in key else key


def print_misses(results: list[RecordingResult], lengths: list[float]) -> None:
    """What the wrong answers were (in-library pieces: wrong Top-1 or flagged; others: the
    unflagged false identifications)."""
    print("\nMisses:")
    for r in results:
        for label, answers in [("whole", [r.whole])] + [(f"{k:g} s", r.excerpts[k])
                                                         for k in lengths]:
            for a in answers:
                if r.piece and a.right and not a.flagged:
                    continue
                if not r.piece and a.right:
                    continue
                what = ("right but flagged" if r.piece and a.right else
                        f"→ {_short(a.key, a.title)} ({a.confidence:.2f}"
                        f"{', flagged' if a.flagged else ''})")
                print(f"  {r.name} [{label}]: {what}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--manifest", default=str(FOLDER / "manifest.json"))
    ap.add_argument("--library", default=str(CACHE / "asap-library"))
    ap.add_argument("--excerpts", type=int, default=10, help="excerpts per length and recording")
    ap.add_argument("--lengths", type=float, nargs="+", default=[5, 10, 20])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    manifest = Path(args.manifest)
    if not manifest.is_file():
        sys.exit(f"{manifest} missing: the recordings and their sources are listed in "
                 "benchmarks/RESULTS.md (audio, real recordings)")
    recs = json.loads(manifest.read_text())["recordings"]
    lib = Library(args.library)
    lib.load_index()
    warm_up()
    st = lib.stats()
    print(f"# Real recordings {date.today()} on {platform.node()} ({platform.machine()}), "
          f"model {st['model_id']}, library {st['ok']} pieces; {len(recs)} recordings, "
          f"{args.excerpts} excerpts per length, seed {args.seed}, τ = {AUDIO_TAU}")
    t = time.perf_counter()
    results = [run_recording(lib, manifest.parent, rec, args.lengths, args.excerpts, args.seed)
               for rec in recs]
    lib.close()
    print_table(results, args.lengths)
    print_misses(results, args.lengths)
    print(f"\n<!-- {time.perf_counter() - t:.0f} s wall -->")


if __name__ == "__main__":
    main()
