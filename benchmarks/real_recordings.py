"""Real recordings: identify openly licensed piano recordings of ASAP pieces, by each audio
route.

    nice -n 5 python -m benchmarks.real_recordings [--routes transcribe embed both]
        [--manifest FILE] [--excerpts 10] [--lengths 5 10 20] [--seed 0]
        [--library benchmarks/.cache/asap-library]
    python -m benchmarks.real_recordings --fetch RITZ_GIT OBLIVION_GIT

The recordings and their manifest (``manifest.json``: file, source repository, path and
commit, licence, performer, work, ``asap_piece`` = the ASAP folder of the piece or null when
the piece is not in the library) live in ``benchmarks/.cache/real-recordings/``, outside git.

``--fetch`` makes them again from two public GitHub repositories, given a clone (or bare
git directory) of each: 22 files, all Kimiko Ishizaka at the piano.

* ``Javen-W/Ritz`` @ f495442, ``assets/music/Classicals.de - Bach - The Well-Tempered
  Clavier, Book 1 - NN - … (Kimiko Ishizaka).mp3``: 15 MP3s (44.1 kHz) of the *Open
  Well-Tempered Clavier*, **CC PDM 1.0** (the repository's ``Classicals.de - Licensing
  Information - CC PDM 1.0 - KI.rtf``).
* ``Vale717171/archive-of-oblivion`` @ 1d2afaf, ``assets/audio/*.ogg``: 7 Ogg Vorbis files,
  **CC0 1.0** (``assets/audio/ATTRIBUTION.md`` cites each Wikimedia Commons file page):
  second encodings of P/F BWV 846 and 848, preludes BWV 847 and 855, and the Goldberg
  Aria da capo (*Open Goldberg Variations*).

8 ASAP pieces (12 files with the second encodings) and 10 recordings of pieces not in the
library; the licence files are copied to ``licences/`` beside them.

Each recording is read as ``midizero search FILE --audio-route R`` reads it — decoded to
22,050 Hz, then basic-pitch transcription (τ = ``AUDIO_TAU``) and/or the bundled audio
branch's windows — and searched by every route asked for
(:func:`midizero_app.audio.routes.search_audio`), as a whole file and as seeded random
excerpts of each length (each excerpt read on its own; the same excerpts for every route).
Pieces in the library are graded by Top-1 (folder without its version suffix); pieces not
in it by whether the answer is flagged "not in your library". *pos*: the reported score
time against a linear time map (recording time × score length / recording length) within
10 % of the piece — a rough check, as no alignment of these recordings exists.
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np

from benchmarks.common import CACHE, grade_key
from midizero_app.audio.decode import load_audio
from midizero_app.audio.routes import ROUTES, AudioQuery, read_samples, search_audio
from midizero_app.audio.transcribe import AUDIO_TAU, SAMPLE_RATE, warm_up
from midizero_app.core.atomic import write_bytes, write_text
from midizero_app.core.errors import MidizeroError
from midizero_app.core.library import Library

FOLDER = CACHE / "real-recordings"
POS_TOLERANCE = 0.10  # of the piece's length
ROUTE_NAMES = {"transcribe": "transcription", "embed": "embedding (audio branch)",
               "both": "both fused"}

PERFORMER = "Kimiko Ishizaka"
RITZ = ("Javen-W/Ritz", "f495442e7b2d63d08ccd82318c87ed94fe74dfab",
        "CC PDM 1.0 (Classicals.de - Licensing Information - CC PDM 1.0 - KI.rtf)",
        "assets/music/Classicals.de - Licensing Information - CC PDM 1.0 - KI.rtf")
OBLIVION = ("Vale717171/archive-of-oblivion", "1d2afafb82aab5972b99b7a6117fe93bd674fc87",
            "CC0 1.0 (assets/audio/ATTRIBUTION.md: the Wikimedia Commons file pages)",
            "assets/audio/ATTRIBUTION.md")
_WTC1 = "The Well-Tempered Clavier, Book 1"
# (NN, Prelude|Fugue, number, key, BWV, in ASAP) of the Ritz files
_RITZ_TRACKS = [
    ("01", "Prelude", 1, "C major", 846, True), ("02", "Fugue", 1, "C major", 846, True),
    ("04", "Fugue", 2, "C minor", 847, False),
    ("05", "Prelude", 3, "C-sharp major", 848, True),
    ("06", "Fugue", 3, "C-sharp major", 848, True),
    ("08", "Fugue", 4, "C-sharp minor", 849, False),
    ("09", "Prelude", 5, "D major", 850, False), ("11", "Prelude", 6, "D minor", 851, False),
    ("12", "Fugue", 6, "D minor", 851, False), ("14", "Fugue", 7, "E-flat major", 852, False),
    ("17", "Prelude", 9, "E major", 854, True), ("18", "Fugue", 9, "E major", 854, True),
    ("20", "Fugue", 10, "E minor", 855, False), ("22", "Fugue", 11, "F major", 856, True),
    ("23", "Prelude", 12, "F minor", 857, True),
]
# (file in assets/audio, work, ASAP folder or None) of the archive-of-oblivion files
_OBLIVION_FILES = [
    ("bach_bwv846_soglia.ogg", f"{_WTC1}, Prelude No. 1 in C major, BWV 846",
     "Bach/Prelude/bwv_846"),
    ("bach_contrapunctus_observatory.ogg", f"{_WTC1}, Fugue No. 1 in C major, BWV 846",
     "Bach/Fugue/bwv_846"),
    ("observatory_calibration_variation.ogg",
     f"{_WTC1}, Prelude No. 3 in C-sharp major, BWV 848", "Bach/Prelude/bwv_848"),
    ("observatory_dome_variation.ogg", f"{_WTC1}, Fugue No. 3 in C-sharp major, BWV 848",
     "Bach/Fugue/bwv_848"),
    ("bach_bwv1008_laboratorio.ogg", f"{_WTC1}, Prelude No. 2 in C minor, BWV 847", None),
    ("lab_bain_marie_variation.ogg", f"{_WTC1}, Prelude No. 10 in E minor, BWV 855", None),
    ("bach_aria_goldberg.ogg", "Goldberg Variations, BWV 988, Aria da Capo e Fine", None),
]


def sources() -> list[dict]:
    """The 22 manifest entries: file, repository, commit, path, licence, performer, work,
    asap_piece."""
    out = []
    for nn, kind, num, key, bwv, in_asap in _RITZ_TRACKS:
        work = f"{_WTC1}, {kind} No. {num} in {key}, BWV {bwv}"
        out.append({"file": f"ritz_wtc1_{nn}_{kind.lower()}{num}_bwv{bwv}.mp3",
                    "repository": RITZ[0], "commit": RITZ[1],
                    "path": f"assets/music/Classicals.de - Bach - {_WTC1} - {nn} - "
                            f"{kind} No. {num} in {key}, BWV {bwv} ({PERFORMER}).mp3",
                    "licence": RITZ[2], "performer": PERFORMER, "work": work,
                    "asap_piece": f"Bach/{kind}/bwv_{bwv}" if in_asap else None})
    for name, work, piece in _OBLIVION_FILES:
        out.append({"file": f"oblivion_{Path(name).stem}.ogg", "repository": OBLIVION[0],
                    "commit": OBLIVION[1], "path": f"assets/audio/{name}",
                    "licence": OBLIVION[2], "performer": PERFORMER, "work": work,
                    "asap_piece": piece})
    return out


def _git_blob(git_dir: str, commit: str, path: str) -> bytes:
    done = subprocess.run(["git", "-C", git_dir, "show", f"{commit}:{path}"],
                          capture_output=True, check=False)
    if done.returncode:
        sys.exit(f"{git_dir}: cannot read {commit[:7]}:{path}: "
                 f"{done.stderr.decode(errors='replace').strip()}")
    return done.stdout


def fetch(git_dirs: list[str], folder: Path) -> None:
    """Copy the recordings and licence files out of clones of the two repositories
    (matched by the repository name at the end of each directory's remote or path) into
    ``folder`` and write its ``manifest.json``."""
    by_repo = {}
    for d in git_dirs:
        url = subprocess.run(["git", "-C", d, "config", "--get", "remote.origin.url"],
                             capture_output=True, text=True).stdout.strip()
        for repo in (RITZ[0], OBLIVION[0]):
            name = repo.split("/")[1]
            if name in url or name in str(Path(d).resolve()):
                by_repo[repo] = d
    missing = [r for r in (RITZ[0], OBLIVION[0]) if r not in by_repo]
    if missing:
        sys.exit(f"--fetch needs a clone of {', '.join(missing)}")
    recs = sources()
    (folder / "licences").mkdir(parents=True, exist_ok=True)
    for rec in recs:
        write_bytes(folder / rec["file"], _git_blob(by_repo[rec["repository"]], rec["commit"],
                                                    rec["path"]))
        print(f"{rec['file']} ← {rec['repository']}:{rec['path']}", flush=True)
    for repo, commit, _, path in (RITZ, OBLIVION):
        write_bytes(folder / "licences" / f"{repo.replace('/', '+')}--{Path(path).name}",
                    _git_blob(by_repo[repo], commit, path))
    write_text(folder / "manifest.json", json.dumps({"recordings": recs}, indent=1,
                                                     ensure_ascii=False) + "\n")
    print(f"{len(recs)} recordings and manifest.json in {folder}")


@dataclass
class Answer:
    """One query's outcome by one route: the top result, its grade and the score time."""
    title: str
    key: str | None
    confidence: float
    flagged: bool
    seconds: float | None
    right: bool          # in library: Top-1 is the piece; not in library: flagged
    pos_ok: bool | None  # reported time near the linear-map estimate (right Top-1 only)


@dataclass
class RecordingResult:
    """One manifest entry by one route: the whole-file answer and the excerpt answers per
    length; ``cpu_s`` the CPU seconds of reading the audio for that route."""
    name: str
    piece: str | None
    licence: str
    duration: float
    whole: Answer
    excerpts: dict[float, list[Answer]] = field(default_factory=dict)
    cpu_s: float = 0.0


def read(samples: np.ndarray, routes: list[str]) -> tuple[AudioQuery, dict[str, float]]:
    """Mono samples (n,) at ``SAMPLE_RATE`` → the query every route in ``routes`` needs,
    and the CPU seconds of each reading (``"transcribe"``, ``"embed"``)."""
    need = {r for route in routes for r in (("transcribe", "embed") if route == "both"
                                            else (route,))}
    q, cpu = AudioQuery(), {}
    for kind in ("transcribe", "embed"):
        if kind in need:
            c = time.process_time()
            part = read_samples(samples, SAMPLE_RATE, kind)
            cpu[kind] = time.process_time() - c
            if kind == "transcribe":
                q.notes = part.notes
            else:
                q.emb, q.starts, q.times = part.emb, part.starts, part.times
    return q, cpu


def grade(lib: Library, q: AudioQuery, route: str, piece: str | None, start: float,
          duration: float) -> Answer:
    """Search ``q`` by ``route`` as the CLI does and grade the answer against ``piece``."""
    heard = {"transcribe": q.notes is not None and len(q.notes) > 0,
             "embed": q.emb is not None and len(q.emb) > 0}
    heard["both"] = heard["transcribe"] and heard["embed"]
    if not heard[route] and not (route == "both" and (heard["transcribe"] or heard["embed"])):
        return Answer("(nothing heard)", None, 0.0, True, None, piece is None, None)
    sub = route if heard[route] else ("transcribe" if heard["transcribe"] else "embed")
    try:
        res = search_audio(lib, q, sub, top=10)
    except MidizeroError as exc:
        return Answer(f"(error: {exc})", None, 0.0, True, None, piece is None, None)
    if not res["results"]:
        return Answer("(no result)", None, 0.0, True, None, piece is None, None)
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
                  pos_ok)


def _cost(cpu: dict[str, float], route: str) -> float:
    return sum(cpu.get(k, 0.0) for k in (("transcribe", "embed") if route == "both"
                                         else (route,)))


def run_recording(lib: Library, folder: Path, rec: dict, routes: list[str],
                  lengths: list[float], n: int, seed: int) -> dict[str, RecordingResult]:
    """The whole file and ``n`` seeded excerpts per length of one manifest entry, each
    read once and searched by every route."""
    samples, duration = load_audio(folder / rec["file"], SAMPLE_RATE)
    piece = rec.get("asap_piece")
    licence = rec["licence"].split(" (")[0]
    q, cpu = read(samples, routes)
    out = {route: RecordingResult(rec["file"], piece, licence, duration,
                                  grade(lib, q, route, piece, 0.0, duration),
                                  cpu_s=_cost(cpu, route)) for route in routes}
    rng = np.random.default_rng(seed + zlib.crc32(rec["file"].encode()))
    for length in lengths:
        for route in routes:
            out[route].excerpts[length] = []
        for _ in range(n if duration > length + 1 else 0):
            start = float(rng.uniform(0.0, duration - length))
            a, b = int(start * SAMPLE_RATE), int((start + length) * SAMPLE_RATE)
            q, cpu = read(samples[a:b], routes)
            for route in routes:
                out[route].excerpts[length].append(grade(lib, q, route, piece, start,
                                                         duration))
                out[route].cpu_s += _cost(cpu, route)
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
    cpu = sum(r.cpu_s for r in results)
    print(f"* reading the audio: CPU {cpu:.0f} s for {audio_s:.0f} s of audio "
          f"(RTF {cpu / audio_s:.3f})")


def print_summary(by_route: dict[str, list[RecordingResult]], lengths: list[float]) -> None:
    """One row block per route: in library right (of them flagged), not in library flagged;
    whole files and each excerpt length."""
    head = ["route", "", "whole files"] + [f"{length:g} s excerpts" for length in lengths]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for route, results in by_route.items():
        inl = [r for r in results if r.piece]
        out = [r for r in results if not r.piece]
        groups = [[r.whole for r in inl]] + [[a for r in inl for a in r.excerpts[k]]
                                             for k in lengths]
        cells = [f"{sum(a.right for a in g)} / {len(g)} "
                 f"({sum(a.right and a.flagged for a in g)})" for g in groups]
        print(f"| {ROUTE_NAMES[route]} | in the library: right (of them flagged) | "
              + " | ".join(cells) + " |")
        groups = [[r.whole for r in out]] + [[a for r in out for a in r.excerpts[k]]
                                             for k in lengths]
        cells = [f"{sum(a.flagged for a in g)} / {len(g)}" for g in groups]
        print("| | not in the library: flagged | " + " | ".join(cells) + " |", flush=True)


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
    ap.add_argument("--routes", nargs="+", choices=ROUTES, default=list(ROUTES))
    ap.add_argument("--excerpts", type=int, default=10, help="excerpts per length and recording")
    ap.add_argument("--lengths", type=float, nargs="+", default=[5, 10, 20])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fetch", nargs=2, metavar="GIT_DIR",
                    help="clones of Javen-W/Ritz and Vale717171/archive-of-oblivion: copy "
                         "the recordings into the manifest's folder and stop")
    args = ap.parse_args()
    manifest = Path(args.manifest)
    if args.fetch:
        fetch(args.fetch, manifest.parent)
        return
    if not manifest.is_file():
        sys.exit(f"{manifest} missing: make it with --fetch RITZ_GIT OBLIVION_GIT (clones of "
                 f"{RITZ[0]} and {OBLIVION[0]}; see this script's docstring)")
    recs = json.loads(manifest.read_text())["recordings"]
    lib = Library(args.library)
    lib.load_index()
    warm_up()
    st = lib.stats()
    print(f"# Real recordings {date.today()} on {platform.node()} ({platform.machine()}), "
          f"model {st['model_id']}, library {args.library} ({st['ok']} pieces); "
          f"{len(recs)} recordings, {args.excerpts} excerpts per length, seed {args.seed}, "
          f"τ = {AUDIO_TAU}, routes {' '.join(args.routes)}", flush=True)
    t = time.perf_counter()
    by_route: dict[str, list[RecordingResult]] = {route: [] for route in args.routes}
    for i, rec in enumerate(recs, 1):
        for route, res in run_recording(lib, manifest.parent, rec, args.routes, args.lengths,
                                        args.excerpts, args.seed).items():
            by_route[route].append(res)
        print(f"<!-- {i}/{len(recs)} {rec['file']} {time.perf_counter() - t:.0f} s -->",
              flush=True)
    lib.close()
    for route, results in by_route.items():
        print(f"\n## Route: {ROUTE_NAMES[route]}\n")
        print_table(results, args.lengths)
        print_misses(results, args.lengths)
    print("\n## Summary\n")
    print_summary(by_route, args.lengths)
    print(f"\n<!-- {time.perf_counter() - t:.0f} s wall -->")


if __name__ == "__main__":
    main()
