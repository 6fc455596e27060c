"""The lock on recorded live-path events: follow-session variants screened in seconds.

    python -m benchmarks.follow_replay record --half dev --n 150 --seed 1 \\
        --out benchmarks/.cache/lock-dev.json                 # once: about 4 min
    python -m benchmarks.follow_replay replay benchmarks/.cache/lock-dev.json [--detail]

``record`` draws the excerpts ``follow_bench --parts lock`` draws (the same performances,
bar lines and seeds) and runs the live path over the first ``--seconds`` of each: the
search answers every frame, and the notes and answers are kept in the order the session
thread sees them. ``replay`` feeds each excerpt's events to a fresh
:class:`~midizero_app.live.follow.FollowSession` (the code as it is now) through the
session's own callbacks, reads the position shown every 0.25 s as the bench does, and
scores the lock the same way. The search's answers do not depend on following, so a change
to the follow session or the follower is measured without running the search again (13 s
against 3 min for 146 dev excerpts); on the dev draw the figures equal ``follow_bench``'s.
A lock later than the recorded seconds counts as never. The event file is JSON (NumPy
values written as numbers and lists; the excerpt's arrays read back as arrays).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from benchmarks.common import CACHE, asap_dir, asap_performances, dev_test_split, piece_key
from benchmarks.follow_bench import Performances, annotations, downbeats, twins
from midizero_app.core.atomic import write_text
from midizero_app.core.library import Library
from midizero_app.live.follow import FollowSession
from midizero_app.live.replay import simulate
from midizero_app.live.session import LiveSession

PROBE_S = 0.25      # the bench reads the shown position this often
EXCERPT_S = 20.0    # the bench's excerpt length


def excerpts(lib, half: str, n: int, seed: int):
    """The lock excerpts of ``follow_bench --parts lock --half HALF --n N --seed SEED``:
    yields dicts (performance, score path, piece id, start s, onsets from the excerpt's
    start (s), pitches, performance and score beats (s))."""
    asap = asap_dir()
    if asap is None:
        raise SystemExit("ASAP data not found (../shared/data/asap or $MIDIZERO_ASAP)")
    dev, test = dev_test_split(asap)
    keys = test if half == "test" else dev
    perfs = [p for p in asap_performances(asap) if piece_key(p.parent) in keys]
    rng = np.random.default_rng(seed)
    perfs = [perfs[i] for i in sorted(rng.choice(len(perfs), min(n, len(perfs)),
                                                 replace=False))]
    rng = np.random.default_rng(seed + 2)  # as follow_bench's lock part
    notes = Performances()
    ids = {p["path"]: p["id"] for p in lib.pieces()}
    for perf in perfs:
        ann = annotations(perf)
        score_path = str(perf.with_name("midi_score.mid"))
        if ann is None or score_path not in ids:
            continue
        db = downbeats(perf)
        if len(db) < 8:
            continue
        pb, sb = ann
        start = float(pb[int(rng.choice(db[:len(db) * 3 // 4]))])
        nt = notes[perf]
        sel = (nt.onset >= start) & (nt.onset < start + EXCERPT_S)
        order = np.argsort(nt.onset[sel], kind="stable")
        on, pit = nt.onset[sel][order] - start, nt.pitch[sel][order]
        if len(on) < 10:
            continue
        yield {"perf": "/".join(perf.parts[-4:]), "score_path": score_path,
               "pid": ids[score_path], "start": start, "on": on, "pit": pit,
               "pb": pb, "sb": sb}


def record(lib, half: str, n: int, seed: int, seconds: float) -> list[dict]:
    """Each excerpt with ``events``: ("mark", t) before each note's timers fire, ("note",
    t, pitch) as the session hands it to following, ("update", dict) for each search
    answer; notes up to ``seconds``."""
    out = []
    for ex in excerpts(lib, half, n, seed):
        events: list[tuple] = []
        live = LiveSession(lib, top=5, name="bench",
                           on_update=lambda u, ev=events: ev.append(("update", u)),
                           on_note=lambda t, p, ev=events: ev.append(("note", t, p)))
        for t, p in zip(ex["on"].tolist(), ex["pit"].tolist()):
            if t > seconds:
                break
            events.append(("mark", t))
            simulate(live, np.array([t]), np.array([p]), finish=False)
        ex["events"] = events
        out.append(ex)
        print(f"{len(out):4d} {ex['perf']}", flush=True)
    return out


def replay(lib, recs: list[dict]) -> list[tuple[str, float, float, list[str]]]:
    """(performance, start s, seconds to the right piece and measure (±1) or inf, pieces
    shown before) per excerpt, with the current follow session."""
    rows = []
    for r in recs:
        session = FollowSession(lib, top=5, name="bench")
        live = session.live
        probe = np.arange(PROBE_S, EXCERPT_S, PROBE_S)
        shown = np.full(len(probe), np.nan)
        paths: list[str | None] = [None] * len(probe)
        k = 0
        for ev in r["events"]:
            if ev[0] == "mark":  # what is on screen before this note's timers fire
                while k < len(probe) and probe[k] < ev[1]:
                    u = session.position(probe[k])
                    if u["score_seconds"] is not None:
                        shown[k], paths[k] = u["score_seconds"], u["piece"]
                    k += 1
            elif ev[0] == "note":
                live.on_note(ev[1], ev[2])
            else:
                live.on_update(ev[1])
        frames = lib.frames_of(r["pid"])
        last = len(frames) - 1
        truth_s = np.interp(probe + r["start"], r["pb"], r["sb"])
        truth_m = frames.measure[np.clip(np.searchsorted(frames.onset, truth_s, "right") - 1,
                                         0, last)]
        got = np.clip(np.searchsorted(frames.onset, np.nan_to_num(shown, nan=-1e9),
                                      "right") - 1, 0, last)
        right = np.array([p == r["score_path"] for p in paths]) & \
            (np.abs(frames.measure[got] - truth_m) <= 1) & ~np.isnan(shown)
        lock_s = float(probe[np.argmax(right)] - r["on"][0]) if right.any() else np.inf
        before: list[str] = []
        for q in paths[:int(np.argmax(right)) if right.any() else len(paths)]:
            if q is not None and (not before or before[-1] != q):
                before.append(q)
        rows.append((r["perf"], r["start"], lock_s,
                     ["/".join(Path(q).parts[-4:-1]) for q in before]))
    return rows


ARRAYS = ("on", "pit", "pb", "sb")


def _plain(x):
    """NumPy values as JSON's own (``json.dumps(default=...)``)."""
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(f"{type(x).__name__} is not JSON")


def save_events(path: str, recs: list[dict]) -> None:
    write_text(path, json.dumps(recs, default=_plain))


def load_events(path: str) -> list[dict]:
    """The recorded excerpts of ``path`` (JSON written by :func:`save_events`)."""
    recs = json.loads(Path(path).read_text())
    for r in recs:
        for key in ARRAYS:
            r[key] = np.asarray(r[key])
    return recs


def stats(t: np.ndarray) -> str:
    """Median, p90 (order statistic: a never-locked excerpt is infinite) and counts."""
    if not len(t):
        return "no excerpts"
    return (f"{len(t)} excerpts, median {np.median(t):.2f} s, p90 "
            f"{np.sort(t)[int(0.9 * (len(t) - 1))]:.2f} s, slower than 3 s "
            f"{int(np.sum(t > 3))}, than 5 s {int(np.sum(t > 5))}, never "
            f"{int(np.sum(~np.isfinite(t)))}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    rec = sub.add_parser("record")
    rec.add_argument("--half", choices=("dev", "test"), default="dev")
    rec.add_argument("--n", type=int, default=150)
    rec.add_argument("--seed", type=int, default=1)
    rec.add_argument("--seconds", type=float, default=12.0)
    rec.add_argument("--out", required=True)
    rep = sub.add_parser("replay")
    rep.add_argument("events")
    rep.add_argument("--detail", action="store_true",
                     help="each lock slower than 3 s, with the pieces shown before it")
    for p in (rec, rep):
        p.add_argument("--library", default=str(CACHE / "asap-only"))
    args = ap.parse_args(argv)
    lib = Library(args.library, create=False)
    t0 = time.perf_counter()
    if args.cmd == "record":
        recs = record(lib, args.half, args.n, args.seed, args.seconds)
        save_events(args.out, recs)
        print(f"{len(recs)} excerpts to {args.out}, {time.perf_counter() - t0:.0f} s")
        return 0
    recs = load_events(args.events)
    rows = replay(lib, recs)
    if args.detail:
        for perf, start, lock_s, before in sorted(rows, key=lambda r: -r[2]):
            if lock_s > 3.0:
                print(f"  slow lock {perf} from {start:.1f} s: {lock_s:.2f} s; shown before: "
                      f"{before}")
    t = np.array([r[2] for r in rows])
    twin = twins(lib)
    single = np.array([r["score_path"] not in twin for r in recs], bool)
    print(f"lock (replayed): {stats(t)}\n  pieces held in one version only: {stats(t[single])}")
    print(f"{time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
