"""Score following on ASAP: how closely the shown position keeps up with the player.

    python -m benchmarks.follow_bench --half test --n 200            # accuracy, jumps, lock, cost
    python -m benchmarks.follow_bench --parts accuracy --half dev --n 40 --given
    python -m benchmarks.follow_bench --parts accuracy --half test --n 40 --seconds 60 --audio

Performances are replayed note by note on a simulated clock through the app's own follow
path (:class:`~midizero_app.live.follow.FollowSession`: the live search names the piece
and the place, then the follower tracks it). Ground truth: ASAP's beat annotations — at
every annotated performance beat, the score position shown at that moment is compared
with the annotated score beat, and the error is measured in performance time (the shown
score time mapped through the annotations). Beats where the performance annotations
collapse (consecutive beats under 50 ms apart: a repeat the performer skipped) and
performances whose two annotation files differ in length are left out.

Parts:

* ``accuracy`` — beats after the lock (the first update with the right piece): share
  within 300 ms, median error, share within one beat (the local beat length). With
  ``--given`` the follower is told the piece and starts at its beginning (the setting of
  the peer, ``benchmarks/follow_peer.py``), without identification.
* ``jumps`` — performances spliced at a bar line with a jump back or forward of 4–32 bars:
  share back within 300 ms of the right beat within 3 s of the jump, and the median time.
* ``lock`` — excerpts starting at random bar lines: seconds from the first note to the
  first update showing the right piece and a measure within one of the truth.
* ``cost`` — milliseconds from a note to its update (the follower's work per note).

With ``--audio`` (accuracy only) each performance's first ``--seconds`` are rendered as the
audio benchmarks render them (:mod:`benchmarks.audio_excerpts`: TimGM6mb for the test
half — a SoundFont the transcription model never saw —, FluidR3 for the dev half, sustain
pedal, a seeded room, white noise at 20 dB SNR) from the performance's own time zero (no
pre-roll: audio time is performance time) and fed in 1024-sample blocks through the
microphone path, :class:`~midizero_app.audio.stream.StreamingTranscriber`, into the follow
session on the audio clock. A note reaches the follower when the step that emits it is
done: at the end of the audio that step transcribed plus the step's compute time
(``--step-latency``), so the position read at a beat is the one a user with a
microphone sees then (notes wait ``hop + margin`` s of audio before they are emitted).

The library: ``benchmarks/.cache/asap-library`` (``python -m benchmarks.build_library``),
or ``--library``. Dev half to tune, test half (odd pieces) reported.

``jumps`` also classifies the misses: where the place shown 3 s after the jump holds, chord
by chord, the same pitch sets as the true place since the jump (:func:`same_music`),
nothing played could tell them apart, and the share back within 3 s is printed over the
other jumps as well. ``--detail`` lists each missed jump (with when the music at the two
places parts), each lock slower than 3 s (with the pieces shown before it) and, for
``accuracy``, the beats off by more than 300 ms per performance.
"""
from __future__ import annotations

import argparse
import sys
import time
import zlib
from pathlib import Path

import numpy as np

from benchmarks.common import (CACHE, asap_dir, asap_performances, dev_test_split, grade_key,
                               piece_key)
from midizero_app.core.library import Library
from midizero_app.live.follow import FollowSession
from midizero_app.core.scores import load_notes
from midizero_app.live.replay import simulate


class Performances(dict):
    """Performance notes read on first use, one file at a time: onsets (seconds on the
    file's own clock, as the annotations are) and pitches, sorted."""

    def __missing__(self, perf: Path):
        n = load_notes(perf)
        order = np.argsort(n.onset, kind="stable")
        self[perf] = _Notes(n.onset[order], n.pitch[order])
        return self[perf]


class _Notes:
    def __init__(self, onset, pitch):
        self.onset, self.pitch = onset, pitch

COLLAPSED_S = 0.05


def read_beats(path: Path) -> np.ndarray:
    """Beat times (seconds) of an ASAP annotation file (first column)."""
    rows = [line.split("\t")[0] for line in path.read_text().splitlines() if line.strip()]
    return np.array([float(r) for r in rows])


def annotations(perf: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """(performance beats, score beats) in seconds, or None where they cannot be paired."""
    pa = perf.with_name(perf.stem + "_annotations.txt")
    sa = perf.with_name("midi_score_annotations.txt")
    if not (pa.is_file() and sa.is_file()):
        return None
    pb, sb = read_beats(pa), read_beats(sa)
    if len(pb) != len(sb) or len(pb) < 4:
        return None
    return pb, sb


def downbeats(perf: Path) -> np.ndarray:
    """Indices of the annotated beats that are bar lines (``db`` in the type column)."""
    rows = [line.split("\t") for line in
            perf.with_name(perf.stem + "_annotations.txt").read_text().splitlines() if line.strip()]
    return np.array([i for i, r in enumerate(rows) if len(r) > 2 and r[2].startswith("db")])


def usable_beats(pb: np.ndarray) -> np.ndarray:
    """Mask of beats away from collapsed annotations (skipped repeats)."""
    gap = np.diff(pb)
    bad = np.zeros(len(pb), bool)
    bad[:-1] |= gap < COLLAPSED_S
    bad[1:] |= gap < COLLAPSED_S
    return ~bad


def errors_at_beats(shown: np.ndarray, at: np.ndarray, pb: np.ndarray, sb: np.ndarray
                    ) -> np.ndarray:
    """Error (performance seconds) of the score times ``shown`` at performance times ``at``:
    each shown time mapped to performance time through the annotations (``pb``, ``sb``)."""
    return np.abs(np.interp(shown, sb, pb) - at)


def summary(errors: list[float], beat_len: list[float]) -> dict:
    e, b = np.asarray(errors), np.asarray(beat_len)
    if not len(e):
        return {"beats": 0, "within_300": float("nan"), "median_ms": float("nan"),
                "within_beat": float("nan")}
    return {"beats": len(e), "within_300": float(np.mean(e <= 0.3)),
            "median_ms": float(np.median(e) * 1000), "within_beat": float(np.mean(e <= b))}


class DeferredSearch:
    """The live search of a :class:`FollowSession`, run only when following reads it.

    A follow session acts on a search update only while
    :meth:`FollowSession.reads_search`; otherwise the update is read by nobody (the
    benchmark shows no search panel). The frames closed meanwhile are kept
    and given to the search when an update is next read, in runs that end where the
    search's vote horizon is trimmed, so the ranking is the one a search fed frame by frame
    reaches (to float rounding of batched embeddings). It saves the verify and ranking
    work of every frame while following well: most of a replay's time.
    """

    def __init__(self, search, session: FollowSession):
        self.search, self.session = search, session
        self.pending: list = []

    def __getattr__(self, name):
        return getattr(self.search, name)

    def _read(self) -> bool:
        return self.session.reads_search()

    def _flush(self) -> dict | None:
        update, search = None, self.search
        while self.pending:
            # windows the next frames add before the horizon is trimmed (one per frame
            # once a query has W frames)
            room = 2 * search.max_windows + 1 - len(search._hits)  # noqa: SLF001
            free = max(0, search.win - 1 - search.n_frames)  # frames that add no window
            take = max(1, min(len(self.pending), free + room))
            update = search.add_frames(self.pending[:take])
            del self.pending[:take]
        return update

    def add_frames(self, frames: list) -> dict | None:
        self.pending += frames
        return self._flush() if self._read() else None

    def finish(self, at: float) -> dict | None:
        if self._read():
            self._flush()
        self.pending = []
        return self.search.finish(at)


def time_notes(session, note_ms: list[float]) -> None:
    """Append the follower's own work per note (ms) to ``note_ms`` once it follows."""
    original = session._on_note  # noqa: SLF001 - timing the follower's own work per note

    def timed(t, p):
        t0 = time.perf_counter()
        original(t, p)
        if session.follower is not None:
            note_ms.append((time.perf_counter() - t0) * 1000)

    session.live.on_note = timed


def sample_positions(lib, onsets, pitches, times, piece_id=None, defer: bool = True,
                     session_kw: dict | None = None):
    """Replay, and read the position the app shows at each of ``times`` (seconds).

    ``defer``: run the live search only when following reads it (:class:`DeferredSearch`);
    ``session_kw``: more LiveSession arguments (the audio path's grouping τ)."""
    out = np.full(len(times), np.nan)
    paths: list[str | None] = [None] * len(times)
    note_ms: list[float] = []
    session = FollowSession(lib, piece_id, top=5, name="bench", **(session_kw or {}))
    if defer:
        session.live.search = DeferredSearch(session.live.search, session)
    time_notes(session, note_ms)
    order = np.argsort(times)
    k = 0
    for t, p in zip(onsets.tolist(), pitches.tolist()):
        while k < len(order) and times[order[k]] < t:
            u = session.position(times[order[k]])
            if u["score_seconds"] is not None:
                out[order[k]] = u["score_seconds"]
                paths[order[k]] = u["piece"]
            k += 1
        simulate(session, np.array([t]), np.array([p]), finish=False)
    return out, paths, note_ms


def render_opening(perf: Path, seconds: float, seed: int, sf2) -> np.ndarray:
    """The first ``seconds`` of a performance rendered with ``sf2`` (a
    :class:`~midizero_app.audio.render.Renderer`), sustain pedal held, through a room
    seeded by ``seed`` with noise at 20 dB SNR: float32 (round(seconds · SR),), audio
    time 0 = the performance file's time 0."""
    from benchmarks.audio_excerpts import SR, load_performance
    from midizero_app.audio.render import room

    p = load_performance(perf)
    keep = p.onset < seconds
    y = sf2.render(p.onset[keep], p.offset[keep], p.pitch[keep], p.velocity[keep],
                   start=0.0, end=seconds)
    return room(y, SR, np.random.default_rng(seed))


def stream_notes(audio: np.ndarray, sr: int, step_latency: float | None = None,
                 block: int = 1024) -> tuple[list, list[float]]:
    """Push ``audio`` (float32 (n,) at ``sr`` Hz) through the streaming transcriber in
    ``block``-sample blocks, as a microphone delivers it.

    Returns (steps, step compute ms): ``steps`` is a list of (seen, clock, notes) per step
    that emitted or moved the clock — ``seen`` the audio time (s) from which its notes are
    on screen (the end of the audio pushed so far plus ``step_latency``, None: the step's
    measured compute time), ``clock`` the stream's clock after it, ``notes`` its
    (onset s, pitch) in order."""
    from midizero_app.audio.stream import StreamingTranscriber

    got: list[tuple[float, int]] = []
    stream = StreamingTranscriber(sr, lambda t, p: got.append((t, int(p))))
    steps, step_ms = [], []
    for i in range(0, len(audio), block):
        k = stream.steps
        t0 = time.perf_counter()
        stream.push(audio[i:i + block])
        if stream.steps > k:
            dt = time.perf_counter() - t0
            step_ms.append(dt * 1000)
            end = min(i + block, len(audio)) / sr
            steps.append((end + (dt if step_latency is None else step_latency),
                          stream.clock(), list(got)))
            got.clear()
    return steps, step_ms


def follow_stream(lib, steps: list, times, piece_id=None, extrapolate: bool = False):
    """Feed streamed notes (:func:`stream_notes`) to a follow session on the audio clock
    and read the position shown at each of ``times`` (audio seconds): a beat before a
    step's ``seen`` time shows what the notes of the earlier steps gave. The notes a step
    emits reach the session in order, each at its own onset, then the timers run up to the
    stream's clock (as the session thread does with ``clock=stream.clock``).

    ``extrapolate`` (a diagnostic, not what the app shows): read instead the last update
    carried on at its tempo to the beat's time, past the next chord — a cursor that
    moves through the stream's delay.

    Returns (score seconds shown (len(times),), piece paths, note → update ms)."""
    from midizero_app.audio.stream import StreamingTranscriber
    from midizero_app.audio.transcribe import AUDIO_SEARCH

    # the microphone path's own setting (the app's Identify tab passes the same)
    delay_s = StreamingTranscriber(22050, lambda t, p: None).delay_s
    times = np.asarray(times, np.float64)
    out = np.full(len(times), np.nan)
    paths: list[str | None] = [None] * len(times)
    note_ms: list[float] = []
    last: list[dict] = []
    session = FollowSession(lib, piece_id, top=5, name="bench",
                            on_follow=lambda u: last.__setitem__(slice(None), [u]),
                            lead_s=delay_s, **AUDIO_SEARCH)
    session.live.search = DeferredSearch(session.live.search, session)
    time_notes(session, note_ms)
    order = np.argsort(times)
    k = 0

    def read_until(t_end: float) -> None:
        nonlocal k
        while k < len(order) and times[order[k]] < t_end:
            u = session.position(times[order[k]])
            if extrapolate and last and last[0]["score_seconds"] is not None and \
                    last[0]["tempo"] is not None:
                u = dict(last[0], score_seconds=last[0]["score_seconds"] + max(
                    0.0, times[order[k]] - last[0]["time"]) * last[0]["tempo"])
            if u["score_seconds"] is not None:
                out[order[k]] = u["score_seconds"]
                paths[order[k]] = u["piece"]
            k += 1

    for seen, clock, notes in steps:
        read_until(seen)
        for t, p in notes:
            _fire(session, t)
            session.step_note(t, p)
        _fire(session, clock)
    read_until(float("inf"))
    return out, paths, note_ms


class AudioNotes(dict):
    """Per performance, its opening rendered once and transcribed both ways: {perf:
    (streamed steps, step compute ms, whole-transcription onsets s, pitches)}.

    Parameters
    ----------
    renderer : the :class:`~midizero_app.audio.render.Renderer` (SoundFont) to render with.
    seconds : length of the opening.
    seed : room seeds are ``seed`` + a CRC of the performance's ASAP path.
    step_latency : see :func:`stream_notes`.
    """

    def __init__(self, renderer, seconds: float, seed: int = 0,
                 step_latency: float | None = None):
        super().__init__()
        self.renderer, self.seconds, self.seed = renderer, seconds, seed
        self.step_latency = step_latency

    def __missing__(self, perf: Path):
        from benchmarks.audio_excerpts import SR
        from midizero_app.audio.transcribe import transcribe_events

        y = render_opening(perf, self.seconds,
                           self.seed + zlib.crc32("/".join(perf.parts[-4:]).encode()),
                           self.renderer)
        steps, step_ms = stream_notes(y, SR, self.step_latency)
        ev = transcribe_events(y, SR)
        order = np.argsort(ev.onset, kind="stable")
        self[perf] = (steps, step_ms, ev.onset[order], ev.pitch[order].astype(int))
        print(f"{len(self)} {'/'.join(perf.parts[-4:])}: {len(steps)} steps, "
              f"{len(ev.onset)} notes", file=sys.stderr, flush=True)
        return self[perf]


def _fire(session, until: float) -> None:
    deadline = session.next_deadline()
    while deadline is not None and deadline <= until:
        session.step_tick(deadline)
        deadline = session.next_deadline()


def onset_offset_ms(ref_on, ref_pitch, on, pitch, tol: float = 0.1) -> float:
    """Median (transcribed − performed) onset in ms over notes of one pitch matched within
    ``tol`` s: the transcription's own lag."""
    d = []
    for t, p in zip(on.tolist(), pitch.tolist()):
        cand = ref_on[ref_pitch == p]
        if len(cand):
            j = np.argmin(np.abs(cand - t))
            if abs(cand[j] - t) <= tol:
                d.append(t - cand[j])
    return float(np.median(d) * 1000) if d else float("nan")


def twins(lib) -> set[str]:
    """Library paths of pieces held in more than one version (an ASAP score and its
    ``_no_repeat`` / ``_repeat`` edition): the same music, which no follower can tell apart
    until the versions part — identification takes either."""
    paths = [p["path"] for p in lib.pieces()]
    keys = [grade_key(p) for p in paths]
    return {p for p, k in zip(paths, keys) if keys.count(k) > 1}


def accuracy(lib, perfs, notes, seconds: float, given: bool, peer: str | None = None,
             audio: "AudioNotes | None" = None, whole: bool = False,
             extrapolate: bool = False, details: list | None = None
             ) -> tuple[dict, list[float], dict | None]:
    """Beats after the lock on the first ``seconds`` of each performance; with ``peer`` (a
    pymatchmaker method) the peer on the same notes and beats, given the piece and the start.
    With ``audio`` (:class:`AudioNotes`) the openings are rendered and followed through the
    streaming transcriber (:func:`follow_stream`); with ``whole`` each opening is
    transcribed at once and its notes replayed (the transcription without the streaming
    latency), with ``extrapolate`` the :func:`follow_stream` diagnostic.
    Returns (our summary, our note → update times in ms, the peer's summary or None); our
    summary's ``single`` is the summary over the pieces the library holds in one version."""
    errors, beat_len, all_ms = [], [], []
    single_err, single_len, n_single = [], [], 0
    twin = twins(lib)
    peer_err, peer_len = [], []
    by_path = {p["path"]: p["id"] for p in lib.pieces()}
    n_perf = 0
    for perf in perfs:
        ann = annotations(perf)
        score_path = str(perf.with_name("midi_score.mid"))
        if ann is None or score_path not in by_path:
            continue
        pb, sb = ann
        nt = notes[perf]
        keep = nt.onset < seconds
        onsets, pitches = nt.onset[keep], nt.pitch[keep]
        order = np.argsort(onsets, kind="stable")
        onsets, pitches = onsets[order], pitches[order]
        sel = (pb < seconds) & usable_beats(pb)
        if sel.sum() < 4:
            continue
        pid = by_path[score_path] if given else None
        if audio is None:
            shown, paths, ms = sample_positions(lib, onsets, pitches, pb[sel], pid)
        else:
            steps, st_ms, w_on, w_pit = audio[perf]
            if whole:  # the whole opening transcribed at once, its notes replayed
                from midizero_app.audio.transcribe import AUDIO_SEARCH

                shown, paths, ms = sample_positions(lib, w_on, w_pit, pb[sel], pid,
                                                    session_kw=AUDIO_SEARCH)
            else:
                shown, paths, ms = follow_stream(lib, steps, pb[sel], pid, extrapolate)
        locked = np.array([p == score_path for p in paths])
        if locked.any():
            first = int(np.argmax(locked))
            e = errors_at_beats(shown[first:], pb[sel][first:], pb, sb)
            # after the lock, a beat shown in another piece counts as wrong
            e[~locked[first:]] = np.inf
            errors += e.tolist()
            if details is not None:
                details.append({"perf": "/".join(perf.parts[-4:]), "beats": len(e),
                                "bad": int(np.sum(e > 0.3)),
                                "bad_at": pb[sel][first:][e > 0.3].round(1).tolist()})
            lens = np.diff(pb)
            lens = np.append(lens, lens[-1])[sel][first:]
            beat_len += lens.tolist()
            if score_path not in twin:
                single_err += e.tolist()
                single_len += lens.tolist()
        n_single += score_path not in twin
        if peer:
            from benchmarks.follow_peer import peer_positions

            shown_p = peer_positions(Path(score_path), list(zip(onsets.tolist(),
                                                               pitches.tolist())),
                                     pb[sel], method=peer)
            peer_err += errors_at_beats(shown_p, pb[sel], pb, sb).tolist()
            lens = np.diff(pb)
            peer_len += np.append(lens, lens[-1])[sel].tolist()
        n_perf += 1
        all_ms += ms
    out = summary(errors, beat_len)
    out["performances"] = n_perf
    out["single"] = dict(summary(single_err, single_len), performances=n_single)
    peer_out = summary(peer_err, peer_len) if peer else None
    if peer_out is not None:
        peer_out["performances"] = n_perf
    return out, all_ms, peer_out


def splice(onsets, pitches, pb, db, rng) -> tuple | None:
    """A performance cut at a bar line and continued 4–32 bars back or forward.

    Returns (onsets, pitches, cut time, truth perf times → original perf times) or None."""
    bars = pb[db]
    ok = np.flatnonzero((bars > 15.0) & (bars < onsets[-1] - 25.0))
    if len(ok) == 0:
        return None
    i = int(rng.choice(ok))
    for _ in range(20):
        k = int(rng.integers(4, 33)) * (1 if rng.random() < 0.5 else -1)
        j = db.searchsorted(db[i]) + k
        if 0 <= j < len(db) and abs(bars[i] - pb[db[j]]) > 1.0 and pb[db[j]] + 20 < onsets[-1]:
            break
    else:
        return None
    cut, dest = float(bars[i]), float(pb[db[j]])
    before = onsets < cut
    after = (onsets >= dest) & (onsets < dest + 20.0)
    out_on = np.concatenate([onsets[before], onsets[after] - dest + cut])
    out_p = np.concatenate([pitches[before], pitches[after]])
    return out_on, out_p, cut, (lambda t: np.where(t < cut, t, t - cut + dest))


def same_music(frames, s_from: float, s_true: float, s_shown: float) -> float | None:
    """Where the score chords from ``s_from`` up to ``s_true`` (score seconds) are, pitch
    set by pitch set, the chords that end at ``s_shown`` (within one chord either way) —
    a follower shown there has heard nothing that tells the two places apart —, the score
    seconds (at the true place) of the first chord after ``s_true`` where the two places
    part (inf: never); otherwise None."""
    onset = frames.onset
    jd = int(np.searchsorted(onset, s_from - 1e-6))
    jt = int(np.searchsorted(onset, s_true, "right")) - 1
    jc = int(np.searchsorted(onset, s_shown, "right")) - 1
    if jt < jd or abs(jc - jt) <= 1:
        return None
    chords = frames.chords()
    k = jt - jd
    for shift in (0, -1, 1):
        c = jc + shift
        if c - k >= 0 and c < len(chords) and abs(c - jt) > 1 and \
                all(chords[jd + i] == chords[c - k + i] for i in range(k + 1)):
            off = c - jt
            for i in range(jt + 1, len(chords)):
                if i + off >= len(chords) or chords[i] != chords[i + off]:
                    return float(onset[i])
            return float("inf")
    return None


def jumps(lib, perfs, notes, rng, details: list | None = None) -> dict:
    """Spliced performances (:func:`splice`): the share back on the right beat within 3 s.

    ``details``: if a list, one dict per spliced performance is appended (performance,
    bars jumped, seconds to be back (inf: not within 12 s), and at 3 s after the jump the
    score seconds shown and true, and whether the music since the jump is the same at both
    places (:func:`same_music`))."""
    by_path = {p["path"]: p["id"] for p in lib.pieces()}
    times, ok, tried = [], 0, 0
    for perf in perfs:
        ann = annotations(perf)
        score_path = str(perf.with_name("midi_score.mid"))
        if ann is None or score_path not in by_path:
            continue
        pb, sb = ann
        db = downbeats(perf)
        if len(db) < 40 or not usable_beats(pb).all():
            continue
        nt = notes[perf]
        order = np.argsort(nt.onset, kind="stable")
        spliced = splice(nt.onset[order], nt.pitch[order], pb, db, rng)
        if spliced is None:
            continue
        on, pit, cut, to_original = spliced
        keep = on < cut + 12.0
        on, pit = on[keep], pit[keep]
        # beats after the cut, in spliced time
        beats_after = pb[(pb >= float(to_original(np.array([cut]))[0]))]
        spliced_beats = beats_after - float(to_original(np.array([cut]))[0]) + cut
        spliced_beats = spliced_beats[spliced_beats < cut + 12.0]
        if len(spliced_beats) < 6:
            continue
        probe = np.append(spliced_beats, cut + 3.0)
        shown, _, _ = sample_positions(lib, on, pit, probe, by_path[score_path])
        shown_3s, shown = shown[-1], shown[:-1]
        err = np.abs(np.interp(shown, sb, pb) - to_original(spliced_beats))
        good = err <= 0.3
        # back: the first beat from which three in a row are right
        back = next((spliced_beats[k] - cut for k in range(len(good) - 2)
                     if good[k] and good[k + 1] and good[k + 2]), np.inf)
        tried += 1
        ok += back <= 3.0
        times.append(back)
        if details is not None:
            dest = float(to_original(np.array([cut]))[0])
            s_from, s_true = np.interp([dest, dest + 3.0], pb, sb)
            details.append({
                "perf": "/".join(perf.parts[-4:]), "bars": int(round(
                    (np.searchsorted(pb[db], dest - 1e-6) - np.searchsorted(pb[db], cut - 1e-6)))),
                "back_s": float(back), "shown_3s": float(shown_3s), "true_3s": float(s_true),
                "same_music": False, "parts_s": float("nan")})
            if not np.isnan(shown_3s):
                parts = same_music(lib.frames_of(by_path[score_path]), float(s_from),
                                   float(s_true), float(shown_3s))
                if parts is not None:  # performance seconds after the jump
                    details[-1].update(same_music=True, parts_s=float(
                        np.interp(parts, sb, pb) - dest))
    t = np.asarray(times)
    return {"jumps": tried, "back_within_3s": ok / max(tried, 1),
            "median_s": float(np.median(t)) if len(t) else float("nan")}


def lock(lib, perfs, notes, rng, details: list | None = None) -> dict:
    """Excerpts from random bar lines: seconds to the right piece and measure (±1).

    ``details``: if a list, one dict per excerpt is appended (performance, start, seconds
    to the lock, the pieces shown before it)."""
    times, tried, twin_of, other_version = [], 0, [], 0
    twin = twins(lib)
    for perf in perfs:
        ann = annotations(perf)
        score_path = str(perf.with_name("midi_score.mid"))
        pid = next((p["id"] for p in lib.pieces() if p["path"] == score_path), None)
        if ann is None or pid is None:
            continue
        pb, sb = ann
        db = downbeats(perf)
        if len(db) < 8:
            continue
        start = float(pb[int(rng.choice(db[:len(db) * 3 // 4]))])
        nt = notes[perf]
        sel = (nt.onset >= start) & (nt.onset < start + 20.0)
        order = np.argsort(nt.onset[sel], kind="stable")
        on, pit = nt.onset[sel][order] - start, nt.pitch[sel][order]
        if len(on) < 10:
            continue
        frames = lib.frames_of(pid)
        probe = np.arange(0.25, 20.0, 0.25)
        shown, paths, _ = sample_positions(lib, on, pit, probe)
        truth_s = np.interp(probe + start, pb, sb)
        truth_m = frames.measure[np.clip(np.searchsorted(frames.onset, truth_s, "right") - 1,
                                         0, len(frames) - 1)]
        got = np.clip(np.searchsorted(frames.onset, np.nan_to_num(shown, nan=-1e9), "right") - 1,
                      0, len(frames) - 1)
        right = np.array([p == score_path for p in paths]) & \
            (np.abs(frames.measure[got] - truth_m) <= 1) & ~np.isnan(shown)
        tried += 1
        times.append(float(probe[np.argmax(right)] - (on[0])) if right.any() else np.inf)
        twin_of.append(score_path in twin)
        if details is not None:
            shown_pieces = []
            for q in paths[:int(np.argmax(right)) if right.any() else len(paths)]:
                if q is not None and (not shown_pieces or shown_pieces[-1] != q):
                    shown_pieces.append(q)
            details.append({"perf": "/".join(perf.parts[-4:]), "start": round(start, 1),
                            "lock_s": times[-1],
                            "before": ["/".join(Path(q).parts[-4:-1]) for q in shown_pieces]})
        other_version += not right.any() and any(
            p is not None and p != score_path and grade_key(p) == grade_key(score_path)
            for p in paths)
    t, tw = np.asarray(times), np.asarray(twin_of, bool)

    def stats(x):
        # a never-locked excerpt is infinite: order statistics, not interpolation
        return {"excerpts": len(x), "median_s": float(np.median(x)) if len(x) else float("nan"),
                "p90_s": float(np.sort(x)[int(0.9 * (len(x) - 1))]) if len(x) else float("nan"),
                "never": int(np.sum(~np.isfinite(x)))}

    return dict(stats(t), other_version=other_version, single=stats(t[~tw]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--parts", default="accuracy")
    ap.add_argument("--half", choices=("dev", "test"), default="dev")
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--seconds", type=float, default=90.0)
    ap.add_argument("--given", action="store_true")
    ap.add_argument("--peer", default=None, metavar="METHOD",
                    help="also run pymatchmaker's METHOD (e.g. pthmm) on the same performances")
    ap.add_argument("--audio", action="store_true",
                    help="accuracy from rendered audio through the streaming transcriber")
    ap.add_argument("--whole", action="store_true",
                    help="--audio: transcribe each opening at once and replay its notes (the "
                         "transcription without the streaming latency)")
    ap.add_argument("--extrapolate", action="store_true",
                    help="--audio: also the streamed settings with the last update carried on "
                         "at its tempo through the stream's delay (a diagnostic)")
    ap.add_argument("--step-latency", type=float, default=None, metavar="S",
                    help="--audio: seconds a streaming step's notes take to arrive after its "
                         "audio (default: the step's measured compute time)")
    ap.add_argument("--detail", action="store_true",
                    help="print each missed jump, each slow lock and each performance's "
                         "accuracy")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--library", default=str(CACHE / "asap-library"))
    args = ap.parse_args(argv)
    asap = asap_dir()
    if asap is None:
        raise SystemExit("ASAP data not found (../shared/data/asap or $MIDIZERO_ASAP)")
    dev, test = dev_test_split(asap)
    half = test if args.half == "test" else dev
    perfs = [p for p in asap_performances(asap) if piece_key(p.parent) in half]
    rng = np.random.default_rng(args.seed)
    perfs = [perfs[i] for i in sorted(rng.choice(len(perfs), min(args.n, len(perfs)),
                                                 replace=False))]
    notes = Performances()
    lib = Library(args.library, create=False)
    t0 = time.perf_counter()
    audio = None
    settings = [(args.given, False, False)]
    if args.audio:
        if args.peer or args.parts != "accuracy":
            raise SystemExit("--audio measures --parts accuracy only, without --peer")
        from benchmarks.audio_excerpts import SR
        from midizero_app.audio.render import FLUID_R3, Renderer, timgm6mb
        from midizero_app.audio.transcribe import warm_up

        audio = AudioNotes(Renderer(timgm6mb() if args.half == "test" else FLUID_R3, SR),
                           args.seconds, args.seed, args.step_latency)
        warm_up()
        # each opening is rendered and transcribed once, for every setting
        settings = [(args.given, False, False), (not args.given, False, False)] + \
            ([(args.given, False, True), (not args.given, False, True)]
             if args.extrapolate else []) + \
            ([(args.given, True, False), (not args.given, True, False)] if args.whole else [])
    if "accuracy" in args.parts:
        print("| setting | performances | beats | within 300 ms | median error | within one beat "
              "| note → update median / p99 |")
        print("|---|---|---|---|---|---|---|")
        for given, whole, extra in settings:
            acc_details: list[dict] = []
            res, ms, peer = accuracy(lib, perfs, notes, args.seconds, given, args.peer,
                                     audio, whole, extra, acc_details)
            if args.detail:
                for d in sorted(acc_details, key=lambda d: -d["bad"]):
                    if d["bad"]:
                        print(f"  {d['perf']}: {d['bad']} of {d['beats']} beats off, at "
                              f"{d['bad_at'][:40]}")
            ms = np.asarray(ms) if ms else np.array([np.nan])
            source = ("" if audio is None else ", audio transcribed whole" if whole else
                      ", audio streamed, carried on at the tempo (diagnostic)" if extra else
                      ", audio streamed")
            print(f"| {'piece given' if given else 'identified'}{source} ({args.half}, first "
                  f"{args.seconds:.0f} s) | {res['performances']} | {res['beats']} | "
                  f"{res['within_300']:.3f} | {res['median_ms']:.0f} ms | "
                  f"{res['within_beat']:.3f} | {np.median(ms):.2f} / "
                  f"{np.percentile(ms, 99):.2f} ms |")
            one = res["single"]
            print(f"| … pieces held in one version only | {one['performances']} | "
                  f"{one['beats']} | {one['within_300']:.3f} | {one['median_ms']:.0f} ms | "
                  f"{one['within_beat']:.3f} | |", flush=True)
            if peer is not None:
                print(f"| pymatchmaker {args.peer}, piece and start given | "
                      f"{peer['performances']} | {peer['beats']} | {peer['within_300']:.3f} | "
                      f"{peer['median_ms']:.0f} ms | {peer['within_beat']:.3f} | |")
        if audio is not None:
            st = np.concatenate([np.asarray(v[1]) for v in audio.values()] + [[np.nan]])
            heard = sum(sum(len(n) for _, _, n in v[0]) for v in audio.values())
            whole_n = sum(len(v[2]) for v in audio.values())
            played = sum(int(np.sum(notes[p].onset < args.seconds)) for p in audio)
            lag = [onset_offset_ms(notes[p].onset, notes[p].pitch, v[2], v[3])
                   for p, v in audio.items()]
            print(f"\naudio: {'TimGM6mb' if args.half == 'test' else 'FluidR3'}, pedal, room, "
                  f"20 dB SNR; {len(audio)} openings; streaming steps "
                  f"{np.nanmedian(st):.0f} ms median, {np.nanpercentile(st, 95):.0f} ms p95 "
                  f"compute (notes seen after "
                  f"{'the measured compute' if args.step_latency is None else args.step_latency}"
                  f"); notes: {played} played, {heard} streamed, {whole_n} transcribed whole; "
                  f"transcribed − played onset {np.nanmedian(lag):.0f} ms (median over "
                  f"openings)")
    if "jumps" in args.parts:
        details: list[dict] = []
        res = jumps(lib, perfs, notes, np.random.default_rng(args.seed + 1), details)
        print(f"\njumps ({args.half}): {res['jumps']} spliced performances, back on the right "
              f"beat within 3 s: {res['back_within_3s']:.3f}, median {res['median_s']:.2f} s")
        back = np.array([d["back_s"] for d in details])
        same = np.array([d["same_music"] for d in details], bool)
        missed = back > 3.0
        decidable = ~(missed & same)
        print(f"  missed {int(missed.sum())}: the same music at the place shown 3 s after the "
              f"jump {int((missed & same).sum())}, back within 3–6 s "
              f"{int((missed & (back <= 6.0)).sum())}, within 6–12 s "
              f"{int((missed & (back > 6.0) & np.isfinite(back)).sum())}, not within 12 s "
              f"{int((missed & ~np.isfinite(back)).sum())}; back within 3 s of the jumps "
              f"that the music played by then decides: "
              f"{np.mean(back[decidable] <= 3.0) if decidable.any() else float('nan'):.3f} "
              f"of {int(decidable.sum())}")
        if args.detail:
            for d in details:
                if d["back_s"] > 3.0:
                    print(f"  miss {d['perf']}: {d['bars']:+d} bars, back "
                          f"{d['back_s']:.2f} s, 3 s after: shown {d['shown_3s']:.2f} s, "
                          f"true {d['true_3s']:.2f} s, same music {d['same_music']}"
                          f" (parting {d['parts_s']:.2f} s after the jump)")
    if "lock" in args.parts:
        lock_details: list[dict] = []
        res = lock(lib, perfs, notes, np.random.default_rng(args.seed + 2), lock_details)
        if args.detail:
            for d in sorted(lock_details, key=lambda d: -d["lock_s"]):
                if d["lock_s"] > 3.0:
                    print(f"  slow lock {d['perf']} from {d['start']} s: {d['lock_s']:.2f} s;"
                          f" shown before: {d['before']}")
        one = res["single"]
        print(f"\nlock ({args.half}): {res['excerpts']} excerpts from random bar lines, first "
              f"note to the right measure: median {res['median_s']:.2f} s, p90 "
              f"{res['p90_s']:.2f} s, never {res['never']} ({res['other_version']} of them "
              f"following another version of the piece); pieces held in one version only: "
              f"{one['excerpts']} excerpts, median {one['median_s']:.2f} s, p90 "
              f"{one['p90_s']:.2f} s, never {one['never']}")
    print(f"\n{time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
