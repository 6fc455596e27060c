"""The ``library`` method: the drawing stitched from real windows of the user's library.

1. The drawing is cut into segments of W frames (the index's window length; a frame is
   :data:`STEPS_PER_FRAME` steps on average), the same pitch matrices the index holds.
2. Each segment is embedded with the library's encoder and its K nearest library windows
   are fetched from the index.
3. Every candidate is tried at every transposition within ±:data:`MAX_SHIFT` semitones
   and re-ranked by how much of the drawing it covers (blurred IoU, with the window's own
   rhythm laid over the segment, cut to the stencil and rung on as it will sound; a cheap
   overlap pass first keeps the best :data:`TOP_PAIRS`) and by how much of what sounds
   lies in the chosen key.
4. A Viterbi pass picks one candidate per segment so that voice leading across the joins
   is smooth (top and bass lines move little), and a window that continues the previous
   one in its own piece is preferred.
5. The drawing is a stencil: a library note sounds only on a drawn row, within
   :data:`STENCIL_STEPS` steps of its ink (and :data:`STENCIL_SEMITONES` semitones), so
   frames over empty paper are silent and every sounding frame is a subset of a real
   frame; velocities follow the ink.
6. Every note rings on while its row is still drawn (a pedalled legato, :func:`ring_notes`):
   onsets and pitches stay the library's, lengths fill the strokes.

Where a step has strokes above one another (a circle's arcs, a heart's sides), the upper
and the lower strokes are stitched separately and laid together (:func:`split_layers`),
the lower one's onsets moved onto the upper one's where they are close (:func:`sync_layers`),
as two hands play together.
The result's ``sources`` name each stitched window's piece, first frame and transposition.
"""
from __future__ import annotations

import time

import numpy as np

from ..core.frames import N_PITCHES, PITCH_LO
from ..core.windows import frame_matrix
from .drawing import Drawing, ring
from .image import DrawError
from .metrics import IOU_SIGMA
from .result import Generated
from .theory import Key, parse_key

# Steps (16ths) per frame on average (a window's rhythm is kept). Shorter segments, each
# transposed on its own, follow the contour better but sweep faster than real music does.
# Benchmark drawings, 2 keys, with the stencil below (σ = 1 IoU / Fréchet floor→ceiling
# share): 1.5 → 0.517 / 0.081, 1.2 → 0.547 / 0.087, 1 → 0.561 / 0.120 (benchmarks/RESULTS.md).
STEPS_PER_FRAME = 1.2
K_CANDIDATES = 100    # nearest library windows per segment
MAX_SHIFT = 12        # transpositions tried, semitones either way
KEY_WEIGHT = 0.15     # score = IoU + KEY_WEIGHT · in-key share + SIM_WEIGHT · encoder similarity
SIM_WEIGHT = 0.1
MIN_KEY_SHARE = 0.8   # transpositions less in key than this (the window, and what of it
                      # sounds) are not used (if any other is)
JOIN_WEIGHT = 0.01    # per semitone of top + bass movement across a join
CONTINUE_BONUS = 0.1  # for a window that goes on where the previous one ended
N_CONTINUE = 4        # the best candidates of a segment offer their next window to the next
# A library note off the drawn rows is left out: ±1 semitone let neighbour notes through,
# so a thin stroke became trills and seconds around it (share 0.117 against 0.087 on
# drawn rows only); ±2 steps in time keep notes that start a little before or after ink.
STENCIL_SEMITONES = 0
STENCIL_STEPS = 2
MAX_LAYERS = 2         # upper and lower strokes are stitched separately
LAYER_GAP = 4          # empty semitones that separate two strokes at one step
TOP_PAIRS = 160        # (candidate, shift) pairs scored in full per segment
BEAM = 24             # candidates per segment kept for the Viterbi pass
SYNC_STEPS = 2        # lower-layer onsets this near an upper-layer one are played with it
_PAD = MAX_SHIFT + 8


def _frame_steps(onsets: np.ndarray, n_frames: int, seg_steps: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Lay a window's real rhythm over a segment.

    ``onsets`` : seconds of the window's frames plus the one after (≥ n_frames + 1 values, or
    fewer at a piece's end). Returns start and end steps (int64 (n_frames,)) inside
    0..seg_steps, strictly increasing starts; each frame lasts until the next one starts.
    """
    on = np.asarray(onsets, np.float64)
    if len(on) < n_frames + 1:  # piece end: continue with the mean gap
        gap = np.diff(on).mean() if len(on) > 1 else 1.0
        on = np.r_[on, on[-1] + gap * np.arange(1, n_frames + 2 - len(on))]
    on = on[:n_frames + 1] - on[0]
    total = on[-1]
    if not np.isfinite(total) or total <= 0 or np.any(np.diff(on) <= 0):
        rel = np.arange(n_frames + 1) / n_frames
    else:
        rel = on / total
    pos = np.round(rel * seg_steps).astype(np.int64)
    ramp = np.arange(n_frames + 1)
    pos = np.maximum.accumulate(pos - ramp) + ramp  # at least one step each
    over = pos[-1] - seg_steps
    if over > 0:
        pos = np.round(np.arange(n_frames + 1) * seg_steps / n_frames).astype(np.int64)
    return pos[:-1], pos[1:]


def _stencil(mask: np.ndarray) -> np.ndarray:
    """float32 (T, 88): 1 within :data:`STENCIL_STEPS` steps and :data:`STENCIL_SEMITONES`
    semitones of something drawn — where a library note may sound."""
    from scipy.ndimage import binary_dilation

    st = np.ones((2 * STENCIL_STEPS + 1, 2 * STENCIL_SEMITONES + 1), bool)
    return binary_dilation(mask, st).astype(np.float32)


def _blur(x: np.ndarray) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    sig = (0,) * (x.ndim - 2) + (IOU_SIGMA, IOU_SIGMA)
    return gaussian_filter(x.astype(np.float32), sig, mode="constant", truncate=3.0)


class _Candidate:
    __slots__ = ("pid", "frame", "matrix", "starts", "ends", "sim")

    def __init__(self, pid, frame, matrix, starts, ends, sim):
        self.pid, self.frame, self.matrix = pid, frame, matrix
        self.starts, self.ends, self.sim = starts, ends, sim


def stitch(drawing: Drawing, library, key: Key | str = "C", tempo: float = 96.0,
           k: int = K_CANDIDATES, exclude: set[int] | None = None,
           layers: list[np.ndarray] | None = None) -> Generated:
    """Make music from a drawing out of real windows of ``library``.

    Parameters
    ----------
    drawing : the drawn roll.
    library : a :class:`~midizero_app.core.library.Library` with pieces in it.
    key : the key the result should be in (windows are transposed towards it).
    tempo : quarter notes per minute.
    k : nearest library windows fetched per segment.
    exclude : piece ids the method may not use.
    layers : bool (T, 88) masks stitched one by one and laid together (default
        :func:`split_layers`: the upper and the lower strokes).

    Returns
    -------
    Generated : its ``sources`` list the library windows used; ``info`` holds timings.
    """
    t0 = time.perf_counter()
    key = parse_key(key)
    if drawing.is_empty():
        raise DrawError("nothing is drawn")
    if not library.stats()["ok"]:
        raise DrawError("the library is empty: add scores first to draw with its music")
    emb = library.embedder
    seg_steps = round(emb.win_length * STEPS_PER_FRAME)
    T = drawing.n_steps
    n_seg = -(-T // seg_steps)
    ink = np.zeros((n_seg * seg_steps, N_PITCHES), np.float32)
    ink[:T] = drawing.ink
    notes: list = []
    sources: list = []
    origin: list = []
    layer_of: list = []
    layers = split_layers(ink > 0) if layers is None else layers
    for li, given in enumerate(layers[:MAX_LAYERS]):
        layer = np.zeros(ink.shape, bool)
        layer[:min(T, len(given))] = np.asarray(given, bool)[:T]
        if not layer.any():
            continue
        n, src, org = _stitch_layer(layer, ink, T, library, key, k, exclude,
                                    drawing.steps_per_bar)
        origin += [(i + len(sources), f) for i, f in org]
        notes += n
        layer_of += [li] * len(n)
        sources += src
    if not notes:
        raise DrawError("no library window fits the drawing")
    notes_a, origin_a = np.asarray(notes, np.int64), np.asarray(origin, np.int64)
    sync_layers(notes_a, np.asarray(layer_of))
    notes_a[:, 1] = np.minimum(notes_a[:, 1], T)
    _, first = np.unique(notes_a[:, [0, 2]], axis=0, return_index=True)  # one note per cell
    notes_a, origin_a = notes_a[np.sort(first)], origin_a[np.sort(first)]
    notes_a = ring_notes(notes_a, drawing.mask)
    for pos, src in enumerate(sources):
        src["order"] = pos
    return Generated(notes_a, T, tempo, key, "library", drawing.steps_per_beat,
                     drawing.beats_per_bar, sources=sources, origin=origin_a,
                     info={"layers": len(layers), "total_ms": (time.perf_counter() - t0) * 1e3})


def sync_layers(notes: np.ndarray, layer: np.ndarray, reach: int = SYNC_STEPS) -> None:
    """Move lower-layer chords onto the nearest upper-layer onset within ``reach`` steps
    (in place, keeping the notes' lengths), one chord per onset and none that would sound
    a second (1–2 semitones) against an upper note struck there. The two strokes come from
    two windows with rhythms of their own; laid together unsynchronised, their chords
    alternate between the strokes as no two hands do. ``notes`` int64 (N, 4), ``layer``
    (N,): 0 for the upper stroke."""
    up = notes[layer == 0]
    upper = np.unique(up[:, 0])
    low = np.flatnonzero(layer > 0)
    if not len(upper) or not len(low):
        return
    lower = np.unique(notes[low, 0])
    moves: dict[int, int] = {}  # upper onset -> the lower chord's onset moved there
    for start in lower:
        j = int(np.searchsorted(upper, start))
        near = int(min(upper[max(j - 1, 0):j + 1], key=lambda t: (abs(t - start), t)))
        if near == start or abs(near - start) > reach or near in lower:
            continue  # in time already, too far, or onto another lower chord
        chord = notes[low[notes[low, 0] == start], 2]
        struck = up[up[:, 0] == near, 2]
        if np.any(np.abs(chord[:, None] - struck[None, :]) <= 2):
            continue  # a cluster, not a chord
        if near not in moves or abs(start - near) < abs(moves[near] - near):
            moves[near] = int(start)
    for near, start in moves.items():
        i = low[notes[low, 0] == start]
        length = notes[i, 1] - notes[i, 0]
        notes[i, 0], notes[i, 1] = near, near + np.maximum(length, 1)


def ring_notes(notes: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Let each note ring on while its row is still drawn, up to the next onset of its
    pitch: a pedalled legato, so the roll fills the stroke's extent (onsets and pitches,
    what the library gave, are unchanged). ``notes`` int64 (N, 4), ``mask`` bool (T, 88)."""
    T = len(mask)
    stop = np.full((T + 1, mask.shape[1]), T, np.int64)  # first undrawn step from t on
    for t in range(T - 1, -1, -1):
        stop[t] = np.where(mask[t], stop[t + 1], t)
    out = notes.copy()
    order = np.lexsort((out[:, 0], out[:, 2]))  # by pitch, then start
    for i, j in zip(order, np.r_[order[1:], -1]):
        end, col = out[i, 1], out[i, 2] - PITCH_LO
        if end - 1 < T and mask[end - 1, col]:
            until = stop[end - 1, col]
            if j >= 0 and out[j, 2] == out[i, 2]:
                until = min(until, out[j, 0])
            out[i, 1] = max(end, until)
    return out


def _sounding_key_share(rolls: np.ndarray, key_pc: np.ndarray) -> np.ndarray:
    """Share of the note starts in rolls (P, steps, 88) that are in the key: what of a
    moved window survives the stencil may be less in key than the whole window."""
    starts = (rolls > 0) & np.pad(rolls[:, :-1] == 0, ((0, 0), (1, 0), (0, 0)),
                                  constant_values=True)
    per_row = starts.sum(1).astype(np.float64)                        # (P, 88)
    in_key = key_pc[(np.arange(N_PITCHES) + PITCH_LO) % 12]
    return per_row[:, in_key].sum(1) / np.maximum(per_row.sum(1), 1)


def split_layers(mask: np.ndarray, gap: int = LAYER_GAP) -> list[np.ndarray]:
    """Split a drawn roll (bool (T, 88)) into an upper and a lower layer.

    At each step, the drawn rows form clusters separated by more than ``gap`` empty rows;
    the topmost cluster goes to the upper layer, the others to the lower one (a circle's
    top and bottom arcs, a heart's two sides). Each layer is stitched on its own.
    """
    upper = np.zeros_like(mask)
    lower = np.zeros_like(mask)
    for t in np.flatnonzero(mask.any(1)):
        rows = np.flatnonzero(mask[t])
        cut = np.flatnonzero(np.diff(rows) > gap + 1)
        if len(cut):
            top = rows[cut[-1] + 1:]
            upper[t, top] = True
            lower[t, rows[:cut[-1] + 1]] = True
        else:
            upper[t, rows] = True
    return [upper, lower]


def _stitch_layer(mask: np.ndarray, ink: np.ndarray, T: int, library, key: Key, k: int,
                  exclude: set[int] | None, steps_per_bar: int
                  ) -> tuple[list[tuple], list[dict], list[tuple[int, int]]]:
    """Stitch one layer.

    Parameters
    ----------
    mask : bool (S · segment steps, 88), the layer's drawn cells (padded to segments).
    ink : float32, same shape: the whole drawing's darkness (for velocities).
    T : steps of the piece (notes past it are dropped).

    Returns
    -------
    notes : (start step, end step, pitch, velocity) tuples.
    sources : one dict per stitched window.
    origin : (index into ``sources``, library frame) per note.
    """
    emb = library.embedder
    W = emb.win_length
    seg_steps = round(W * STEPS_PER_FRAME)
    n_seg = len(mask) // seg_steps
    # query windows: a frame holds every drawn pitch of its steps
    edges = np.round(np.arange(W) * seg_steps / W).astype(np.int64)  # frame starts
    qf = np.stack([np.maximum.reduceat(seg, edges, axis=0)
                   for seg in mask.reshape(n_seg, seg_steps, N_PITCHES)]).astype(np.uint8)
    live = qf.reshape(n_seg, -1).any(1)
    q_emb = emb.embed(qf[live])
    labels, sims = library.knn(q_emb, k)
    label_piece, label_frame = library.label_maps
    drawn_steps = mask.any(1)  # a frame over empty paper stays silent
    near = np.convolve(drawn_steps.astype(np.int64), np.ones(3, np.int64), "same") > 0
    d_blur = _blur(mask.reshape(n_seg, seg_steps, N_PITCHES))
    stencil = _stencil(mask).reshape(n_seg, seg_steps, N_PITCHES)
    key_pc = key.pitch_class_mask
    shifts = np.arange(-MAX_SHIFT, MAX_SHIFT + 1)

    beams: list[list[tuple[float, _Candidate, int]]] = [[] for _ in range(n_seg)]
    live_ix = np.flatnonzero(live)
    frames_cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for qi, s in enumerate(live_ix):
        hits = [(int(label_piece[lab]), int(label_frame[lab]), float(sim))
                for lab, sim in zip(labels[qi], sims[qi]) if 0 <= lab < len(label_piece)]
        if s > 0 and beams[s - 1]:  # going on in the pieces the previous segment used
            hits += [(c.pid, c.frame + W, c.sim) for _, c, _ in beams[s - 1][:N_CONTINUE]]
        cands = _candidates(hits, library, exclude, frames_cache, W, seg_steps)
        if cands:
            beams[s] = _segment_beam(cands, s, W, seg_steps, near, d_blur, stencil, mask,
                                     key_pc, shifts)
    chosen = _viterbi(beams)
    return _stitched_notes(chosen, library, ink, T, seg_steps, near, stencil, steps_per_bar)


def _candidates(hits: list[tuple[int, int, float]], library, exclude: set[int] | None,
                frames_cache: dict, W: int, seg_steps: int) -> list[_Candidate]:
    """The library windows ``hits`` names — (piece id, first frame, similarity) — as
    candidates for one segment (each once; excluded pieces and windows past a piece's end
    left out). ``frames_cache`` keeps each piece's (frame matrix, onsets) between calls."""
    cands: list[_Candidate] = []
    seen = set()
    for pid, j, sim in hits:
        if pid < 0 or (exclude and pid in exclude) or (pid, j) in seen:
            continue
        if pid not in frames_cache:
            fr = library.frames_of(pid)
            frames_cache[pid] = (frame_matrix(fr), fr.onset)
        roll, onset = frames_cache[pid]
        if j >= len(roll):
            continue
        seen.add((pid, j))
        m = np.zeros((W, N_PITCHES), np.uint8)
        part = roll[j:j + W]
        m[:len(part)] = part
        st, en = _frame_steps(onset[j:j + W + 1], W, seg_steps)
        cands.append(_Candidate(pid, j, m, st, en, sim))
    return cands


def _segment_beam(cands: list[_Candidate], s: int, W: int, seg_steps: int, near: np.ndarray,
                  d_blur: np.ndarray, stencil: np.ndarray, mask: np.ndarray,
                  key_pc: np.ndarray, shifts: np.ndarray) -> list[tuple[float, _Candidate, int]]:
    """Segment ``s``'s best (score, candidate, shift) triples, at most :data:`BEAM`: each
    candidate moved by each allowed shift, cut to the stencil, blurred and compared with
    the blurred drawing (IoU), plus its in-key share and its similarity."""
    seg_near = near[s * seg_steps:(s + 1) * seg_steps]
    raw = np.zeros((len(cands), seg_steps, N_PITCHES + 2 * _PAD), np.float32)
    pcs_hist = np.zeros((len(cands), 12))
    lo_hi = np.zeros((len(cands), 2), np.int64)
    near_cs = np.r_[0, np.cumsum(seg_near)]
    for ci, c in enumerate(cands):
        # a frame sounds where it has notes and something is drawn near its steps
        keep = c.matrix.any(1) & (near_cs[c.ends] > near_cs[c.starts])
        of_step = np.repeat(np.arange(W), c.ends - c.starts)
        raw[ci, c.starts[0]:c.ends[-1], _PAD:_PAD + N_PITCHES] = \
            c.matrix[of_step] * keep[of_step, None]
        used = c.matrix.any(0)
        cols = np.flatnonzero(used)
        lo_hi[ci] = (cols[0], cols[-1]) if len(cols) else (0, 0)
        pcs_hist[ci] = np.bincount((np.arange(N_PITCHES) + PITCH_LO) % 12,
                                   weights=c.matrix.sum(0), minlength=12)
    # in-key share and range of each candidate at each shift
    roll_pc = np.stack([np.roll(key_pc, -int(t)) for t in shifts])  # (S, 12)
    share = (pcs_hist @ roll_pc.T.astype(np.float64)) \
        / np.maximum(pcs_hist.sum(1, keepdims=True), 1)
    in_range = (lo_hi[:, :1] + shifts[None] >= 0) & (lo_hi[:, 1:] + shifts[None] < N_PITCHES)
    ok = in_range & (share >= MIN_KEY_SHARE)
    if not ok.any():
        ok = in_range
    if not ok.any():
        return []
    # a cheap first pass: how much of each moved candidate lies on the blurred drawing
    # (one matrix product over all shifts), so only the best pairs are blurred and scored
    dseg = d_blur[s]
    d_moved = np.stack([np.roll(np.pad(dseg, ((0, 0), (_PAD, _PAD))), -int(t), axis=1)
                        for t in shifts])                    # (S, steps, 88 + 2 pad)
    hits = raw.reshape(len(cands), -1) @ d_moved.reshape(len(shifts), -1).T   # (C, S)
    sizes = raw.reshape(len(cands), -1).sum(1)[:, None]
    dice = np.where(ok, 2 * hits / (sizes + dseg.sum() + 1e-9), -np.inf)
    top = np.argsort(-dice, axis=None)[:TOP_PAIRS]
    top = top[np.isfinite(dice.ravel()[top])]
    ci, si = np.unravel_index(top, dice.shape)
    # every allowed (candidate, shift): moved, cut to the stencil, blurred, compared
    idx = (_PAD - shifts[si])[:, None] + np.arange(N_PITCHES)[None, :]          # (P, 88)
    moved = np.take_along_axis(
        raw[ci], np.broadcast_to(idx[:, None, :], (len(ci), seg_steps, N_PITCHES)), 2)
    moved *= stencil[s][None]
    ring(moved, mask[s * seg_steps:(s + 1) * seg_steps])  # ranked as it will sound
    blurred = _blur(moved)
    iou = np.minimum(blurred, dseg[None]).sum((1, 2)) / np.maximum(
        np.maximum(blurred, dseg[None]).sum((1, 2)), 1e-9)
    sim = np.array([c.sim for c in cands])
    kin = _sounding_key_share(moved, key_pc)
    score = iou + KEY_WEIGHT * kin + SIM_WEIGHT * sim[ci] - (kin < MIN_KEY_SHARE)
    return [(float(score[f]), cands[ci[f]], int(shifts[si[f]]))
            for f in np.argsort(-score)[:BEAM]]


def _stitched_notes(chosen: list, library, ink: np.ndarray, T: int, seg_steps: int,
                    near: np.ndarray, stencil: np.ndarray, steps_per_bar: int
                    ) -> tuple[list[tuple], list[dict], list[tuple[int, int]]]:
    """The notes of the chosen window of each segment (see :func:`_stitch_layer`)."""
    notes, sources, origin = [], [], []
    ink_blur = _blur(ink[None])[0]
    stencil2d = stencil.reshape(-1, N_PITCHES)
    pieces: dict[int, dict] = {}
    for s, pick in enumerate(chosen):
        if pick is None:
            continue
        c, shift = pick
        base = s * seg_steps
        kept, total = _window_notes(c, shift, base, T, near, stencil2d, ink_blur)
        if not total:  # nothing drawn near any of its frames
            continue
        if c.pid not in pieces:
            pieces[c.pid] = library.piece(c.pid)
        info = pieces[c.pid]
        for start, end, p, vel, frame in kept:
            notes.append((start, end, p, vel))
            origin.append((len(sources), frame))
        sources.append({"piece_id": c.pid, "title": info["title"],
                        "composer": info["composer"], "path": info["path"],
                        "frame": c.frame, "transpose": shift,
                        "bar": int(base // steps_per_bar) + 1})
    return notes, sources, origin


def _window_notes(c: _Candidate, shift: int, base: int, T: int, near: np.ndarray,
                  stencil: np.ndarray, ink_blur: np.ndarray) -> tuple[list[tuple], int]:
    """The notes of window ``c`` moved by ``shift`` and laid at step ``base`` that the
    stencil keeps, as (start, end, pitch, velocity, library frame), and how many notes the
    window's sounding frames had before the stencil."""
    kept, total = [], 0
    for f in range(len(c.matrix)):
        a, b = base + c.starts[f], base + c.ends[f]
        if a >= T or not c.matrix[f].any() or not near[a:b].any():
            continue
        for col in np.flatnonzero(c.matrix[f]):
            p = int(col) + PITCH_LO + shift
            total += 1
            if not 0 <= p - PITCH_LO < N_PITCHES or not stencil[a:b, p - PITCH_LO].any():
                continue
            local = float(ink_blur[a:min(b, T), p - PITCH_LO].max()) / 0.4
            vel = int(np.clip(round(40 + 60 * min(local, 1.0)), 1, 127))
            kept.append((a, min(b, T), p, vel, c.frame + f))
    return kept, total


def _edge_lines(c: _Candidate, shift: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """(bass, top) of the window's first and of its last sounding frame, transposed."""
    rows = np.flatnonzero(c.matrix.any(1))
    if not len(rows):
        return (0, 0), (0, 0)
    first = np.flatnonzero(c.matrix[rows[0]])
    last = np.flatnonzero(c.matrix[rows[-1]])
    return ((int(first.min()) + shift, int(first.max()) + shift),
            (int(last.min()) + shift, int(last.max()) + shift))


def _viterbi(beams: list[list[tuple[float, _Candidate, int]]]) -> list:
    """One (candidate, shift) per segment maximising scores minus join costs; segments
    with no candidates (nothing drawn) split the piece into independent runs."""
    picks: list = [None] * len(beams)
    i = 0
    while i < len(beams):
        if not beams[i]:
            i += 1
            continue
        j = i
        while j < len(beams) and beams[j]:
            j += 1
        picks[i:j] = _viterbi_run(beams[i:j])
        i = j
    return picks


def _viterbi_run(run: list[list[tuple[float, _Candidate, int]]]) -> list:
    scores = np.array([b[0] for b in run[0]])
    backs = []
    for prev, cur in zip(run, run[1:]):
        ends = np.array([_edge_lines(c, sh)[1] for _, c, sh in prev])    # (P, 2)
        starts = np.array([_edge_lines(c, sh)[0] for _, c, sh in cur])   # (N, 2)
        move = np.abs(ends[:, None, :] - starts[None, :, :]).sum(2)      # (P, N)
        cont = np.array([[pc.pid == c.pid and c.frame == pc.frame + len(pc.matrix) and ps == sh
                          for _, c, sh in cur] for _, pc, ps in prev])
        trans = scores[:, None] - JOIN_WEIGHT * move + CONTINUE_BONUS * cont
        bp = np.argmax(trans, 0)
        scores = np.array([b[0] for b in cur]) + trans[bp, np.arange(len(cur))]
        backs.append(bp)
    i = int(np.argmax(scores))
    out: list = [None] * len(run)
    for s in range(len(run) - 1, -1, -1):
        out[s] = (run[s][i][1], run[s][i][2])
        if s:
            i = int(backs[s - 1][i])
    return out
