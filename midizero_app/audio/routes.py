"""Three routes from a recording to the library: transcription, the audio branch, both.

* ``"transcribe"``: basic-pitch's notes (:mod:`.transcribe`) searched like a played MIDI
  file (``Library.search`` with :data:`~.transcribe.AUDIO_SEARCH`).
* ``"embed"``: the bundled audio branch (:mod:`.branch.runtime`) puts one window per onset
  found in the audio straight into the library index's space; the windows are searched
  with the index's kNN, the offset-consistent vote and the alignment check of
  :mod:`midizero_app.core.search`, and judged by the branch card's own calibration (fitted
  on audio queries: this route has no notes to compare with the score).
* ``"both"``: both routes on the same index, fused per piece (:func:`fuse`).

Every route answers in the shape of DESIGN §4.2 with ``"audio_route"`` added.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..core.errors import MidizeroError
from ..core.frames import Frames
from ..core.scores import Notes

ROUTES = ("transcribe", "embed", "both")
DEFAULT_ROUTE = "transcribe"
"""The route the figures favour (benchmarks/RESULTS.md, *Audio without transcription*)."""

# A recording longer than this is also judged part by part (as the note search does: the
# calibration was fitted on 5-20 s queries): up to MAX_SEGMENTS evenly spaced parts of
# SEGMENT_S seconds, the answer keeping the median confidence they give it.
LONG_QUERY_S, SEGMENT_S, MAX_SEGMENTS, MIN_SEGMENT_WINDOWS = 40.0, 20.0, 8, 10


class RouteError(MidizeroError):
    """An audio route that cannot run (an unknown name, a library indexed by an encoder
    the audio branch was not trained for, the branch missing)."""


def check_route(route: str) -> str:
    """``route`` if it is one of :data:`ROUTES`, else :class:`RouteError`."""
    if route not in ROUTES:
        raise RouteError(f"unknown audio route {route!r}: transcribe, embed or both")
    return route


@dataclass
class AudioQuery:
    """What a recording gives the routes.

    Attributes
    ----------
    notes : transcribed :class:`Notes` (onsets in seconds), None where the route skips
        transcription.
    emb : float32 (N, 128) audio-branch windows, None where the route skips them.
    starts : int64 (N,) onset numbers of those windows (query frames for the vote).
    times : float64 (N,) seconds of those onsets (None when unknown).
    """

    notes: Notes | None = None
    emb: np.ndarray | None = None
    starts: np.ndarray | None = None
    times: np.ndarray | None = None

    def heard_nothing(self) -> bool:
        """True when no route that ran found anything to search (silence)."""
        n_notes = 0 if self.notes is None else len(self.notes)
        n_win = 0 if self.emb is None else len(self.emb)
        return n_notes == 0 and n_win == 0


def read_samples(samples: np.ndarray, sr: int, route: str, progress=None,
                 cancel=None) -> AudioQuery:
    """Mono float samples (n,) at ``sr`` Hz → what ``route`` searches: transcribed notes
    (``"transcribe"``, ``"both"``) and audio-branch windows (``"embed"``, ``"both"``)."""
    check_route(route)
    q = AudioQuery()
    if route in ("transcribe", "both"):
        from .transcribe import transcribe

        q.notes = transcribe(samples, sr, progress, cancel)
    if route in ("embed", "both"):
        from .branch.runtime import shared_branch

        try:
            q.emb, q.starts, q.times = shared_branch().embed_recording(samples, sr)
        except MidizeroError as exc:
            raise RouteError(f"the audio branch cannot run: {exc}") from None
    return q


def _branch_for(lib):
    """The bundled audio branch, checked against the library's encoder."""
    from .branch.runtime import shared_branch

    try:
        branch = shared_branch()
    except MidizeroError as exc:
        raise RouteError(f"the audio branch cannot run ({exc}); use --audio-route "
                         "transcribe") from None
    if branch.teacher_model_id and branch.teacher_model_id != lib.model_id:
        raise RouteError(f"the audio branch was trained for encoder {branch.teacher_model_id}"
                         f", this library is indexed with {lib.model_id}: use the "
                         "transcription route")
    return branch


_NO_FRAMES = Frames(onset=np.zeros(0), offsets=np.zeros(1, np.int64),
                    pitches=np.zeros(0, np.int16), measure=np.zeros(0, np.int32),
                    beat=np.zeros(0, np.float32))


def _embedding_candidates(lib, emb: np.ndarray, starts: np.ndarray, top: int, k: int,
                          aggregate: str = "vote", max_positions: int = 3) -> list:
    """Voted and verified candidates for audio-branch windows (no notes: the alignment
    check compares windows only)."""
    from ..core.search import DEFAULT_BIN, QueryWindows, VoteAccumulator, verify

    if not len(emb):
        return []
    labels, sims = lib.knn(np.ascontiguousarray(emb, np.float32), k)
    acc = VoteAccumulator(*lib.label_maps, DEFAULT_BIN, aggregate)
    acc.add(np.asarray(starts, np.int64), labels, sims)
    cands = acc.rank(top + 2, max_positions)
    return verify(cands, {0: QueryWindows(emb, np.asarray(starts, np.int64), _NO_FRAMES)},
                  lib)


def embedding_calibration(card: dict):
    """The embedding route's :class:`~midizero_app.core.search.Calibration` from the audio
    branch's card (RouteError without one: its answers could not be judged)."""
    from ..core.search import Calibration

    if not card.get("calibration"):
        raise RouteError("the audio branch's card has no calibration for its answers")
    return Calibration.from_card(card)


def embedding_features(lib, emb: np.ndarray, starts: np.ndarray, k: int | None = None,
                       calibration=None) -> tuple[tuple[float, ...], int | None]:
    """The best answer's confidence features (:data:`~midizero_app.core.search.FEATURES`)
    for audio-branch windows ``emb`` (N, 128) at onset numbers ``starts`` (N,), and that
    answer's piece id (None for none). The candidates are ordered by ``calibration``
    (default: by their vote)."""
    from ..core.search import DEFAULT_K, features, score_candidates

    cands = _embedding_candidates(lib, emb, starts, 10, k or DEFAULT_K)
    if calibration is not None:
        score_candidates(cands, len(starts), calibration)
    else:
        _fill_margins(cands)
    if not cands:
        return features(None, len(starts)), None
    return features(cands[0], len(starts)), cands[0].piece


def _fill_margins(cands: list) -> None:
    """``margin`` and ``aligned_margin`` of each candidate against the best other one (the
    features :func:`score_candidates` fills, without reordering)."""
    for c in cands:
        others = [d for d in cands if d is not c]
        rival = max((d.score for d in others), default=0.0)
        c.margin = max(0.0, (c.score - rival) / max(c.score, 1e-9))
        c.aligned_margin = c.aligned - max((d.aligned for d in others), default=0.0)


def search_embedding(lib, emb: np.ndarray, starts: np.ndarray, times: np.ndarray | None = None,
                     top: int = 10, k: int | None = None, aggregate: str = "vote",
                     calibration=None) -> dict:
    """Identify audio-branch windows in ``lib``: ``emb`` float32 (N, 128) unit vectors at
    onset numbers ``starts`` (N,), onset ``times`` (N,) seconds. Returns the §4.2 result
    (``"windows"``: N; positions in score time) with ``"audio_route": "embed"``."""
    from ..core.query import result_entry
    from ..core.search import DEFAULT_K, score_candidates

    t0 = time.perf_counter()
    branch = _branch_for(lib)
    calib = calibration or embedding_calibration(branch.card)
    k = k or DEFAULT_K
    emb = np.asarray(emb, np.float32).reshape(-1, branch.dim)
    starts = np.asarray(starts, np.int64)
    cands = _embedding_candidates(lib, emb, starts, top, k, aggregate)
    not_in_library = score_candidates(cands, len(starts), calib)
    segments = None
    if cands and times is not None and len(times) and times[-1] - times[0] > LONG_QUERY_S:
        segments = _judge_by_segments(lib, emb, starts, np.asarray(times), cands, calib, k)
        not_in_library = cands[0].confidence < 0.5
    out = {"query": "audio", "frames": int(len(starts)), "windows": int(len(starts)),
           "elapsed_ms": round((time.perf_counter() - t0) * 1000, 1),
           "not_in_library": bool(not_in_library), "model_id": lib.model_id,
           "audio_model_id": branch.model_id, "query_kind": "audio", "mode": "texture",
           "tune_notes": None, "verdict": "not_in_library" if not_in_library else "found",
           "results": [result_entry(lib, r, c, len(starts))
                       for r, c in enumerate(cands[:top], 1)],
           "audio_route": "embed"}
    if segments is not None:
        out["segments"] = segments
    return out


def _judge_by_segments(lib, emb, starts, times, cands, calib, k) -> dict:
    """Cap the best candidate's confidence at the median its ``SEGMENT_S`` parts give it
    (0 for a part that ranks another piece first)."""
    from ..core.query import cap_by_segments
    from ..core.search import score_candidates

    best = cands[0]
    span = float(times[-1] - times[0])
    n = min(MAX_SEGMENTS, int(span // SEGMENT_S))
    given = []
    for s in float(times[0]) + np.linspace(0.0, span - SEGMENT_S, n):
        m = (times >= s) & (times < s + SEGMENT_S)
        if m.sum() < MIN_SEGMENT_WINDOWS:
            continue
        seg = _embedding_candidates(lib, emb[m], starts[m], 1, k, max_positions=1)
        score_candidates(seg, int(m.sum()), calib)
        given.append(seg[0].confidence if seg and seg[0].piece == best.piece else 0.0)
    return cap_by_segments(cands, given)


def search_transcribed(lib, notes: Notes, top: int = 10, **kwargs) -> dict:
    """Transcribed notes searched like a played file (:data:`~.transcribe.AUDIO_SEARCH`),
    with ``"audio_route": "transcribe"``."""
    from .transcribe import AUDIO_SEARCH

    res = lib.search(notes, top=top, **{**AUDIO_SEARCH, **kwargs})
    res["audio_route"] = "transcribe"
    return res


FUSIONS = ("agree", "max", "sum")
DEFAULT_FUSION = "agree"


def fuse(trans: dict, embed: dict, rule: str | None = None) -> dict:
    """One answer from the transcription route's result and the embedding route's.

    Rules (chosen on the ASAP dev half, benchmarks/audio_routes.py):

    * ``"agree"``: the transcription's ranking stands; where both routes put the same piece
      first, its confidence becomes 1 − (1 − c_t)(1 − c_e) — two independent readings of
      the recording that agree — so an answer that either route alone was unsure of is
      accepted when the other names the same piece.
    * ``"max"``: every piece keeps its more confident reading; not in the library only
      when both routes say so.
    * ``"sum"``: pieces ranked by the sum of their two confidences (a piece one route does
      not list counts 0 there), confidence the mean of the two.
    """
    rule = rule or DEFAULT_FUSION
    if rule not in FUSIONS:
        raise ValueError(f"unknown fusion rule {rule!r}")
    out = {**trans, "audio_route": "both",
           "windows": trans.get("windows", 0) + embed.get("windows", 0),
           "elapsed_ms": round(trans.get("elapsed_ms", 0) + embed.get("elapsed_ms", 0), 1),
           "routes": {"transcribe": _summary(trans), "embed": _summary(embed)}}
    t_res, e_res = trans["results"], embed["results"]
    top = max(len(t_res), len(e_res))
    if rule == "agree":
        results = [dict(r) for r in t_res]
        if results and e_res and results[0]["piece_id"] == e_res[0]["piece_id"]:
            ct, ce = results[0]["confidence"], e_res[0]["confidence"]
            results[0]["confidence"] = round(1 - (1 - ct) * (1 - ce), 3)
        elif not results:
            results = [dict(r) for r in e_res]
        flagged = not results or results[0]["confidence"] < 0.5
    elif rule == "max":
        by_piece = {r["piece_id"]: dict(r) for r in t_res}
        for r in e_res:
            if r["piece_id"] not in by_piece or \
                    r["confidence"] > by_piece[r["piece_id"]]["confidence"]:
                by_piece[r["piece_id"]] = dict(r)
        results = sorted(by_piece.values(), key=lambda r: -r["confidence"])[:top]
        flagged = not results or results[0]["confidence"] < 0.5
    else:
        ct = {r["piece_id"]: r["confidence"] for r in t_res}
        ce = {r["piece_id"]: r["confidence"] for r in e_res}
        by_piece = {r["piece_id"]: dict(r) for r in e_res}
        by_piece.update({r["piece_id"]: dict(r) for r in t_res})
        for pid, r in by_piece.items():
            r["confidence"] = round((ct.get(pid, 0.0) + ce.get(pid, 0.0)) / 2, 3)
        results = sorted(by_piece.values(), key=lambda r: -r["confidence"])[:top]
        flagged = not results or results[0]["confidence"] < 0.5
    for rank, r in enumerate(results, 1):
        r["rank"] = rank
    if results:  # lower-ranked pieces cannot be more confident than the first
        for r in results[1:]:
            r["confidence"] = min(r["confidence"], results[0]["confidence"])
    out["results"] = results
    out["not_in_library"] = bool(flagged)
    out["verdict"] = "not_in_library" if flagged else "found"
    return out


def _summary(res: dict) -> dict:
    first = res["results"][0] if res["results"] else None
    return {"piece_id": first["piece_id"] if first else None,
            "confidence": first["confidence"] if first else 0.0,
            "not_in_library": res["not_in_library"], "windows": res.get("windows", 0)}


def search_audio(lib, query: AudioQuery, route: str, top: int = 10, calibration=None,
                 **kwargs) -> dict:
    """Identify a recording's :class:`AudioQuery` in ``lib`` by ``route`` (what the query
    holds must fit the route). ``kwargs`` go to the note search (transcription).
    Returns the §4.2 result with ``"audio_route"``; ``"both"`` also carries
    ``"routes"``, each route's first answer."""
    check_route(route)
    if route == "transcribe":
        return search_transcribed(lib, query.notes, top, **kwargs)
    if route == "embed":
        return search_embedding(lib, query.emb, query.starts, query.times, top,
                                calibration=calibration)
    return fuse(search_transcribed(lib, query.notes, top, **kwargs),
                search_embedding(lib, query.emb, query.starts, query.times, top,
                                 calibration=calibration))


class RecentAudio:
    """A live input (the microphone) searched by a route that has no streaming form: the
    last ``recent_s`` seconds are read again every ``step_s`` seconds of new audio, once
    ``min_s`` seconds have been heard.

    Parameters
    ----------
    sr : sample rate of the pushed blocks, Hz.
    route : ``"embed"`` or ``"both"`` (``"transcribe"`` works too, but the streaming
        transcriber of :mod:`.stream` is the better form of it).
    """

    def __init__(self, sr: int, route: str, recent_s: float = 20.0, step_s: float = 2.0,
                 min_s: float = 5.0):
        self.sr, self.route = int(sr), check_route(route)
        self.recent_s, self.step_s, self.min_s = recent_s, step_s, min_s
        self.samples = np.zeros(0, np.float32)
        self._new = 0

    def push(self, block: np.ndarray, final: bool = False) -> AudioQuery | None:
        """Add a block of float32 mono samples (n,); returns what the route searches when
        a search is due (None otherwise, and for silence). ``final``: the input ended, search
        what is there."""
        block = np.asarray(block, np.float32).reshape(-1)
        self.samples = np.concatenate([self.samples, block])[-int(self.recent_s * self.sr):]
        self._new += len(block)
        if len(self.samples) < self.min_s * self.sr or (self._new < self.step_s * self.sr
                                                         and not final):
            return None
        self._new = 0
        q = read_samples(self.samples, self.sr, self.route)
        return None if q.heard_nothing() else q
