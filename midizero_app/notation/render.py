"""A score as engraved pages, its measures, and the way from the app's positions to them.

:class:`ScoreRendering` is what a score view shows: ``pages`` SVG pages (rendered when
first asked for, then kept), the measures in score order with their page and their span
in quarter notes and seconds, the notes sounding at a moment, and each measure's box on
its page for a cursor. Positions from the app's search and follower map onto it:
``score_seconds`` (onsets as the app's readers compute them: quarter notes at the file's
first tempo mark; for MIDI, the file's own tempo map) through
:meth:`ScoreRendering.at_seconds`, a measure number and a beat through
:meth:`ScoreRendering.measure_for`.

Coordinates: a page's SVG has ``width`` and ``height`` in px (page size × scale / 100)
and ``viewBox="0 0 (10 × page width) (10 × page height)"`` (verovio's units; its nested
``<svg class="definition-scale">`` is flattened into a ``<g>`` so that QtSvg draws it).
Boxes are given in viewBox units (:class:`Box`) and as fractions of the page.
"""
from __future__ import annotations

import os
import re
import threading
import xml.etree.ElementTree as ET
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import cache
from .engrave import DEFAULT_PAGE, DEFAULT_SCALE, Engraver, NotationError, engrave_options
from .worker import OPEN_TIMEOUT_S, EngraverProcess

EPS_Q = 1e-3  # quarter notes: positions this close to a measure's start belong to it
SVG_CACHE_PAGES = 8

_SVG_NS = "{http://www.w3.org/2000/svg}"
_TRANSLATE = re.compile(r"translate\(\s*(-?[\d.]+)[\s,]+(-?[\d.]+)\s*\)")
_STAFF_LINE = re.compile(r"^\s*M\s*(-?[\d.]+)[\s,]+(-?[\d.]+)\s*L\s*(-?[\d.]+)[\s,]+(-?[\d.]+)\s*$")


@dataclass(frozen=True)
class Measure:
    """One measure of the engraved score.

    Attributes
    ----------
    index : 0-based place in score order (repeats not unfolded).
    id : verovio's element id: the SVG's ``<g id=... class="measure">``.
    label : the number printed in the score (MusicXML ``number``, MEI ``n``): text, e.g.
        ``"0"`` for a pickup, ``"12a"``.
    page : 1-based page it is engraved on.
    start_q, end_q : its span in quarter notes from the start of the score.
    start_s, end_s : the same span in score seconds (:meth:`ScoreRendering.seconds_at_quarters`:
        at :attr:`ScoreRendering.qpm`, or through a MIDI file's tempo map).
    """

    index: int
    id: str
    label: str
    page: int
    start_q: float
    end_q: float
    start_s: float
    end_s: float

    @property
    def number(self) -> int:
        """The measure's place in the file from 1: the measure number the app's MusicXML
        and MEI readers give (``Frames.measure``; partitura counts measures, a pickup is 1)."""
        return self.index + 1


@dataclass(frozen=True)
class Box:
    """A rectangle on a page: ``x, y, width, height`` in the page's SVG viewBox units
    (the ``definition-scale`` viewBox: 10 × verovio's page units), and ``fx, fy, fw, fh``,
    the same as fractions of the page's width and height (0..1)."""

    x: float
    y: float
    width: float
    height: float
    fx: float
    fy: float
    fw: float
    fh: float


def measure_boxes(svg: str) -> dict[str, Box]:
    """Every measure's box on one verovio SVG page, by measure id: from the measure's staff
    lines (left to right end, top line of the top staff to bottom line of the bottom one)."""
    root = ET.fromstring(svg)
    inner = next((e for e in root.iter()
                  if "definition-scale" in e.get("class", "").split()), None)
    if inner is None:
        return {}
    # the page's viewBox: on the inner <svg> as verovio writes it, on the root once flattened
    view_box = inner.get("viewBox") or root.get("viewBox") or "0 0 0 0"
    vb = [float(v) for v in view_box.replace(",", " ").split()]
    page_w, page_h = (vb[2], vb[3]) if len(vb) == 4 else (0.0, 0.0)
    tx = ty = 0.0
    for g in inner.iter(_SVG_NS + "g"):
        if "page-margin" in g.get("class", "").split():
            m = _TRANSLATE.search(g.get("transform", ""))
            if m:
                tx, ty = float(m.group(1)), float(m.group(2))
            break
    boxes: dict[str, Box] = {}
    for g in inner.iter(_SVG_NS + "g"):
        if "measure" not in g.get("class", "").split() or not g.get("id"):
            continue
        xs, ys = [], []
        for staff in g.iter(_SVG_NS + "g"):
            if "staff" not in staff.get("class", "").split():
                continue
            for path in staff.findall(_SVG_NS + "path"):
                m = _STAFF_LINE.match(path.get("d", ""))
                if m and m.group(2) == m.group(4):
                    xs += [float(m.group(1)), float(m.group(3))]
                    ys.append(float(m.group(2)))
        if not xs:
            continue
        x0, x1, y0, y1 = min(xs) + tx, max(xs) + tx, min(ys) + ty, max(ys) + ty
        w, h = x1 - x0, y1 - y0
        boxes[g.get("id")] = Box(x0, y0, w, h, x0 / page_w if page_w else 0.0,
                                 y0 / page_h if page_h else 0.0, w / page_w if page_w else 0.0,
                                 h / page_h if page_h else 0.0)
    return boxes


def _same_pages(a: dict, b: dict) -> bool:
    """Whether two layouts put the same measures on the same pages."""
    return a["pages"] == b["pages"] and [m[:3] for m in a["measures"]] == \
        [m[:3] for m in b["measures"]]


_shared: EngraverProcess | None = None
_shared_lock = threading.Lock()


def shared_worker() -> EngraverProcess:
    """The process-wide :class:`EngraverProcess` (created on first call, not started:
    call ``shared_worker().start()`` early to have it ready)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = EngraverProcess()
        return _shared


class ScoreRendering:
    """An engraved score: pages, measures and notes (see the module's docstring).

    Build one with :meth:`open`. Attributes: ``path`` (str), ``pages`` (int, ≥ 1),
    ``from_midi`` (bool: the notation was made from a MIDI file), ``qpm`` (quarter notes a
    minute: the tempo the app's readers time the file at; a MIDI file's first),
    ``page_size`` ((width, height) in verovio units), ``scale`` (percent), ``measures``
    (list of :class:`Measure`, score order, never empty).
    """

    def __init__(self, layout: dict, page_source: Callable[[int], str], path: str = "",
                 on_close: Callable[[], None] | None = None):
        self.path = path
        self.pages = int(layout["pages"])
        self.from_midi = bool(layout["from_midi"])
        self.qpm = float(layout["qpm"])
        tempo_map = layout.get("tempo_map")
        self._tempo = np.asarray(tempo_map, np.float64).reshape(-1, 3) if tempo_map else None
        self.page_size = tuple(layout["page_size"])
        self.scale = layout["scale"]
        self.measures = [Measure(i, str(mid), str(label), int(page), float(s), float(e),
                                 self.seconds_at_quarters(s), self.seconds_at_quarters(e))
                         for i, (mid, label, page, s, e) in enumerate(layout["measures"])]
        if not self.measures:
            raise NotationError("the score has no measures to show")
        self._by_id = {m.id: m for m in self.measures}
        self._starts = np.asarray([m.start_q for m in self.measures])
        notes = layout["notes"]
        self._note_ids = list(notes["ids"])
        self._note_on = np.asarray(notes["on"], np.float64)
        self._note_off = np.asarray(notes["off"], np.float64)
        self._page_source = page_source
        self._on_close = on_close
        self._svg: OrderedDict[int, str] = OrderedDict()
        self._boxes: dict[int, dict[str, Box]] = {}
        self._lock = threading.Lock()

    # -- building -----------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike, *, page_width: int = DEFAULT_PAGE[0],
             page_height: int = DEFAULT_PAGE[1], scale: int = DEFAULT_SCALE,
             isolated: bool = True, worker: EngraverProcess | None = None,
             timeout_s: float = OPEN_TIMEOUT_S,
             cache_dir: str | os.PathLike | None = None) -> "ScoreRendering":
        """Engrave a MusicXML (``.musicxml .xml .mxl``), MEI, Humdrum (``.krn``), ABC or
        MIDI (``.mid .midi``: notation made from it, ``from_midi``) file.

        ``page_width``, ``page_height``: the page in verovio units (A4: 2100 × 2970);
        ``scale``: percent (the SVG's outer size in px is page size × scale / 100).
        ``isolated`` (default): load and render in a worker process (``worker``, else
        :func:`shared_worker`) with ``timeout_s`` seconds to load and 10 s a page — for
        user files in the app's process. ``isolated=False`` runs verovio here.
        ``cache_dir``: a folder of engraved scores (:mod:`.cache`); a score found there
        opens with its first page at once and loads in the worker only when another page
        is asked for.

        Raises NotationError (one line): unreadable, corrupt or empty file, no measures,
        more than :data:`~.engrave.MAX_PAGES` pages, or past the time limit.
        """
        options = engrave_options(page_width, page_height, scale)
        shown = os.fspath(path)
        key = cache.cache_key(path, options) if cache_dir is not None else None
        hit = cache.read(cache_dir, key) if key else None
        if not isolated:
            return cls._open_here(path, options, shown, hit, (cache_dir, key) if key else None)
        proc = worker or shared_worker()
        state: dict = {"key": None}
        if hit:
            layout, first, mei_path = hit

            def load() -> None:
                k, lay = proc.open(mei_path, options, timeout_s)
                if not _same_pages(lay, layout):  # laid out otherwise: use the file itself
                    proc.drop(k)
                    k, _ = proc.open(path, options, timeout_s)
                state["key"] = k
        else:
            first = None
            state["key"], layout = proc.open(path, options, timeout_s,
                                             (cache_dir, key) if key else None)

            def load() -> None:
                state["key"], _ = proc.open(path, options, timeout_s)

        def page(n: int) -> str:
            if n == 1 and first is not None:
                return first
            if state["key"] is None:
                load()
            svg = proc.page(state["key"], n)
            if svg is None:  # the worker dropped it, or was restarted: load it again
                load()
                svg = proc.page(state["key"], n)
                if svg is None:
                    raise NotationError(f"page {n} could not be rendered")
            return svg

        def close() -> None:
            if state["key"] is not None:
                proc.drop(state["key"])

        return cls(layout, page, shown, on_close=close)

    @classmethod
    def _open_here(cls, path, options: dict, shown: str, hit, cache_to) -> "ScoreRendering":
        if hit:
            layout, first, mei_path = hit
            held: dict = {}

            def page(n: int) -> str:
                if n == 1:
                    return first
                if "eng" not in held:
                    eng = Engraver(mei_path, options)
                    held["eng"] = eng if _same_pages(eng.layout(), layout) else \
                        Engraver(path, options)
                return held["eng"].page_svg(n)

            return cls(layout, page, shown)
        eng = Engraver(path, options)
        pending = [cache_to] if cache_to else []

        def page(n: int) -> str:
            svg = eng.page_svg(n)
            if n == 1 and pending:
                folder, key = pending.pop()
                cache.write(folder, key, eng.layout(), svg, eng.mei())
            return svg

        return cls(eng.layout(), page, shown)

    def close(self) -> None:
        """Let the worker forget the score (pages already rendered stay available)."""
        if self._on_close is not None:
            self._on_close()
            self._on_close = None

    def __enter__(self) -> "ScoreRendering":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- pages --------------------------------------------------------------------------
    def svg(self, page: int) -> str:
        """Page ``page`` (1-based) as SVG text; the last :data:`SVG_CACHE_PAGES` pages are
        kept. Raises NotationError for a page out of range or one that fails to render."""
        page = int(page)
        if not 1 <= page <= self.pages:
            raise NotationError(f"no page {page} (the score has {self.pages})")
        with self._lock:
            svg = self._svg.get(page)
            if svg is not None:
                self._svg.move_to_end(page)
                return svg
        svg = self._page_source(page)
        with self._lock:
            self._svg[page] = svg
            while len(self._svg) > SVG_CACHE_PAGES:
                self._svg.popitem(last=False)
        return svg

    def forget_pages(self) -> None:
        """Drop the pages kept in memory (they are rendered again when asked for)."""
        with self._lock:
            self._svg.clear()
            self._boxes.clear()

    def measure_box(self, measure: Measure | str) -> Box | None:
        """The box of ``measure`` (a Measure or its id) on its page (rendering that page if
        needed): staff lines' extent, in viewBox units and page fractions; None where the
        page shows no staff lines for it."""
        m = self._by_id[measure] if isinstance(measure, str) else measure
        with self._lock:
            boxes = self._boxes.get(m.page)
        if boxes is None:
            boxes = measure_boxes(self.svg(m.page))
            with self._lock:
                self._boxes[m.page] = boxes
        return boxes.get(m.id)

    def page_of(self, measure: Measure | str | int) -> int:
        """The 1-based page of a measure (a Measure, its id, or its :attr:`Measure.number`)."""
        if isinstance(measure, Measure):
            return measure.page
        if isinstance(measure, str):
            return self._by_id[measure].page
        return self.by_number(measure).page

    def measures_on(self, page: int) -> list[Measure]:
        """The measures engraved on page ``page``, in score order."""
        return [m for m in self.measures if m.page == page]

    # -- positions ----------------------------------------------------------------------
    def measure_at(self, quarters: float) -> Measure:
        """The measure sounding at ``quarters`` (quarter notes from the score's start;
        before the start: the first measure, past the end: the last)."""
        i = int(np.searchsorted(self._starts, float(quarters) + EPS_Q, side="right")) - 1
        return self.measures[min(max(i, 0), len(self.measures) - 1)]

    def quarters_at_seconds(self, score_seconds: float) -> float:
        """Score seconds (the app's readers' onsets) → quarter notes from the start: at
        :attr:`qpm` throughout, or for notation made from MIDI, through the file's own
        tempo changes."""
        s = float(score_seconds)
        if self._tempo is None:
            return s * self.qpm / 60.0
        i = max(int(np.searchsorted(self._tempo[:, 0], s, side="right")) - 1, 0)
        t0, q0, qpm = self._tempo[i]
        return float(q0 + (s - t0) * qpm / 60.0)

    def seconds_at_quarters(self, quarters: float) -> float:
        """Quarter notes from the start → score seconds (the inverse of
        :meth:`quarters_at_seconds`)."""
        q = float(quarters)
        if self._tempo is None:
            return q * 60.0 / self.qpm
        i = max(int(np.searchsorted(self._tempo[:, 1], q, side="right")) - 1, 0)
        t0, q0, qpm = self._tempo[i]
        return float(t0 + (q - q0) * 60.0 / qpm)

    def at_seconds(self, score_seconds: float) -> tuple[Measure, int]:
        """The measure at ``score_seconds`` (time in the score file as the app's search and
        follower give it) and its page."""
        m = self.measure_at(self.quarters_at_seconds(score_seconds))
        return m, m.page

    def by_number(self, number: int | str) -> Measure:
        """A measure by :attr:`Measure.number` (int, the app's readers' numbering) or by its
        printed label (str; the first measure with that label). KeyError if none."""
        if isinstance(number, str):
            for m in self.measures:
                if m.label == number:
                    return m
            raise KeyError(number)
        n = int(number)
        if not 1 <= n <= len(self.measures):
            raise KeyError(number)
        return self.measures[n - 1]

    def quarters_for(self, number: int | str, beat_quarters: float = 0.0) -> float:
        """Quarter notes from the score's start of a place given as a measure (as in
        :meth:`by_number`) and ``beat_quarters`` (quarter notes from that measure's start,
        clamped to the measure)."""
        m = self.by_number(number)
        return min(max(m.start_q + float(beat_quarters), m.start_q), max(m.end_q, m.start_q))

    def measure_for(self, number: int | str, beat_quarters: float = 0.0) -> tuple[Measure, int]:
        """The measure named by ``number`` (as in :meth:`by_number`) and its page; a number
        the score does not have gives the nearest measure (first or last)."""
        try:
            m = self.by_number(number)
        except KeyError:
            if isinstance(number, str):
                raise
            m = self.measures[0] if int(number) < 1 else self.measures[-1]
        return m, m.page

    def beat_in_measure(self, quarters: float) -> tuple[Measure, float]:
        """The measure at ``quarters`` and the place in it in quarter notes from its start."""
        m = self.measure_at(quarters)
        return m, max(float(quarters) - m.start_q, 0.0)

    def notes_at(self, quarters: float) -> list[str]:
        """Ids of the notes sounding at ``quarters`` (started at or before it, not ended),
        and those starting there; in order of onset."""
        q = float(quarters)
        mask = (self._note_on <= q + EPS_Q) & ((self._note_off > q + EPS_Q)
                                               | (np.abs(self._note_on - q) <= EPS_Q))
        return [self._note_ids[i] for i in np.nonzero(mask)[0]]

    def notes_between(self, q0: float, q1: float) -> list[str]:
        """Ids of the notes starting in [``q0``, ``q1``) quarter notes, in order of onset
        (the notes just played between two updates)."""
        lo = int(np.searchsorted(self._note_on, float(q0) - EPS_Q, side="left"))
        hi = int(np.searchsorted(self._note_on, float(q1) - EPS_Q, side="left"))
        return self._note_ids[lo:hi]

    @property
    def duration_q(self) -> float:
        """The score's length in quarter notes (the last measure's end)."""
        return self.measures[-1].end_q
