"""A score file → engraved pages and a layout table, through verovio.

:class:`Engraver` holds one verovio toolkit with one score loaded. Loading lays the whole
score out (the page count and every measure's page are known at once); each page's SVG is
rendered only when asked for. :meth:`Engraver.layout` is plain data (JSON-ready), so the
same table comes back whether the engraving ran here or in a worker process
(:mod:`.worker`).

Verovio reads MusicXML (plain and ``.mxl``), MEI, Humdrum and ABC. It has no MIDI import:
a MIDI file is first turned into MusicXML by partitura (quantised to its grid), and the
layout says ``from_midi``.
"""
from __future__ import annotations

import os
import re
import zipfile
from pathlib import Path

from ..core.errors import MidizeroError
from ..core.paths import display_path, not_readable_reason
from ..core.readers.common import DEFAULT_QPM, readable_path, short_reason

NOTATION_SUFFIXES = (".musicxml", ".xml", ".mxl", ".mei", ".krn", ".abc")
MIDI_SUFFIXES = (".mid", ".midi")
MAX_PAGES = 500  # a longer score is refused: no user reads a 500-page score on screen
MAX_BYTES = 64 * 1024 * 1024  # score files (and .mxl contents) larger than this are refused

# verovio units: 10 per "MEI unit"; the default page is A4 (2100 × 2970).
DEFAULT_PAGE = (2100, 2970)
DEFAULT_SCALE = 40  # percent: the SVG's outer size in px is page size × scale / 100

_SOUND_TEMPO = re.compile(r"<sound\b[^>]*\btempo\s*=\s*[\"']\s*([0-9.]+)")
_PAGE_OR_MEASURE = re.compile(r"<(page|measure)\b([^>]*)>")
_ATTR = re.compile(r'([\w.:-]+)="([^"]*)"')
_TEXT_SIZE_0 = re.compile(r'(<text\b[^>]*?)\s+font-size="0px"')
_NESTED_TSPAN = re.compile(r"<tspan([^>]*)>\s*<tspan([^>]*)>([^<]*)</tspan>\s*</tspan>")
_INNER_SVG = re.compile(r'<svg\s+class="definition-scale"([^>]*?)\s*viewBox="([^"]*)"([^>]*)>')


class NotationError(MidizeroError):
    """A score cannot be shown as notation; the message (one line) says why."""


def engrave_options(page_width: int = DEFAULT_PAGE[0], page_height: int = DEFAULT_PAGE[1],
                    scale: int = DEFAULT_SCALE) -> dict:
    """Verovio options for reading on screen.

    ``page_width``, ``page_height``: the page in verovio units (10 per MEI unit; A4 is
    2100 × 2970); ``scale``: percent, the SVG's outer width in px is
    ``page_width * scale / 100``. No header or footer; verovio chooses the system and
    page breaks (``breaks: auto``); repeats are not expanded (measures keep score order).
    """
    return {"pageWidth": int(page_width), "pageHeight": int(page_height), "scale": int(scale),
            "header": "none", "footer": "none", "breaks": "auto", "adjustPageHeight": False,
            "expandNever": True, "xmlIdChecksum": True}


def midi_to_musicxml(path: str | os.PathLike) -> tuple[str, list[list[float]], dict]:
    """A MIDI file as MusicXML text (partitura: times moved to a grid of a 24th of a quarter
    note), its measures' spans ``[start, end]`` in quarter notes (the file's ticks over
    ticks per beat, measures from its time signatures), and each note's ``[start, end]`` in
    quarter notes by the note id the MusicXML gives it."""
    import warnings

    import mido
    import partitura

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with readable_path(path) as name:
                midi = mido.MidiFile(name, clip=True)
                score = partitura.load_score_midi(midi, quantization_unit=_grid(midi))
            xml = partitura.save_musicxml(score)
            spans, times = [], {}
            for i, part in enumerate(score.parts):
                to_q = part.quarter_map
                if i == 0:
                    spans = [[float(to_q(m.start.t)), float(to_q(m.end.t))]
                             for m in sorted(part.measures, key=lambda m: m.start.t)
                             if m.end is not None]
                for note in part.notes_tied:
                    if note.id is not None:
                        times[str(note.id)] = [float(to_q(note.start.t)),
                                               float(to_q(note.end_tied.t))]
    except Exception as exc:  # noqa: BLE001 - partitura raises many types on bad files
        raise NotationError(f"could not make notation from this MIDI file "
                            f"({short_reason(exc)})") from None
    if isinstance(xml, bytes):
        xml = xml.decode("utf-8")
    if not xml:
        raise NotationError("could not make notation from this MIDI file (no notes)")
    return xml, spans, times


def _grid(midi) -> int:
    """Ticks of the grid notes are moved to for notation: a 24th of a quarter note (it holds
    32nd notes and triplets) where the file's resolution divides so, else the finest
    whole-tick division of the quarter note up to that."""
    tpb = midi.ticks_per_beat
    for per_quarter in (24, 12, 8, 6, 4, 3, 2, 1):
        if tpb % per_quarter == 0:
            return tpb // per_quarter
    return 1


def midi_tempo_map(path: str | os.PathLike) -> list[list[float]]:
    """A MIDI file's timing: ``[seconds, quarters, qpm]`` from time 0 and at each tempo
    change (quarters are ticks / ticks per beat; 120 quarter notes a minute until the first
    tempo event), as the app's MIDI reader times notes."""
    import mido

    try:
        midi = mido.MidiFile(os.fspath(path), clip=True)
    except Exception as exc:  # noqa: BLE001 - mido raises many types on bad files
        raise NotationError(f"could not read this MIDI file ({short_reason(exc)})") from None
    tpb = midi.ticks_per_beat
    if tpb <= 0:
        raise NotationError(f"corrupt MIDI file (ticks per beat {tpb})")
    changes = []
    for track in midi.tracks:
        tick = 0
        for msg in track:
            tick += msg.time
            if msg.type == "set_tempo" and msg.tempo > 0:
                changes.append((tick, msg.tempo))
    changes.sort(key=lambda c: c[0])
    out = [[0.0, 0.0, 120.0]]
    seconds, at, tempo = 0.0, 0, 500_000
    for tick, new in changes:
        seconds += (tick - at) * tempo / tpb / 1e6
        at, tempo = tick, new
        row = [seconds, at / tpb, 60e6 / tempo]
        if row[1] == out[-1][1]:
            out[-1] = row
        else:
            out.append(row)
    return out


def musicxml_qpm(text: str) -> float:
    """The tempo the app's MusicXML reader uses: the first ``<sound tempo>`` (quarter notes
    a minute), else 120."""
    m = _SOUND_TEMPO.search(text)
    if m:
        try:
            qpm = float(m.group(1))
            if qpm > 0:
                return qpm
        except ValueError:
            pass
    return DEFAULT_QPM


def _mxl_root(path: str) -> bytes:
    """The score document inside a compressed MusicXML file (``.mxl``)."""
    try:
        with zipfile.ZipFile(path) as z:
            names = [i for i in z.infolist() if not i.is_dir()]
            root = None
            if "META-INF/container.xml" in z.namelist():
                m = re.search(rb'full-path\s*=\s*"([^"]+)"', z.read("META-INF/container.xml"))
                if m:
                    root = m.group(1).decode("utf-8", "replace")
            info = next((i for i in names if i.filename == root), None) or next(
                (i for i in names if not i.filename.startswith("META-INF")
                 and i.filename.lower().endswith((".xml", ".musicxml"))), None)
            if info is None:
                raise NotationError("compressed MusicXML file holds no score")
            if info.file_size > MAX_BYTES:
                raise NotationError("compressed MusicXML score is too large to engrave")
            return z.read(info)
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, ValueError) as exc:
        raise NotationError(f"corrupt compressed MusicXML file ({short_reason(exc)})") \
            from None


def _text(data: bytes) -> str:
    """A score file's bytes as text: UTF-16 where it starts with that byte-order mark, else
    UTF-8 (undecodable bytes replaced); binary data is refused."""
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        try:
            text = data.decode("utf-16")
            if "<?xml" in text[:200]:  # the declaration says UTF-16; verovio reads text
                text = re.sub(r'(<\?xml[^>]*encoding=")[^"]*', r"\1UTF-8", text, count=1)
            return text
        except UnicodeDecodeError:
            raise NotationError("not a score: broken UTF-16 text") from None
    if b"\0" in data[:4096]:
        raise NotationError("not a score: binary data")
    return data.decode("utf-8", "replace")


class Engraver:
    """One score loaded into one verovio toolkit.

    Parameters
    ----------
    path : a MusicXML, MEI, Humdrum, ABC or MIDI file.
    options : verovio options (:func:`engrave_options`).

    Raises
    ------
    NotationError (one line) when verovio cannot read the file, it has no measures, or it
    would need more than :data:`MAX_PAGES` pages.
    """

    def __init__(self, path: str | os.PathLike, options: dict | None = None):
        import verovio

        verovio.enableLog(verovio.LOG_OFF)
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in NOTATION_SUFFIXES + MIDI_SUFFIXES:
            kind = repr(display_path(suffix)) if suffix else "files without a suffix"
            raise NotationError(f"no notation for {kind} files")
        problem = not_readable_reason(path)
        if problem:
            raise NotationError(problem + (": nothing to engrave" if problem == "empty file"
                                           else ""))
        if path.stat().st_size > MAX_BYTES:
            raise NotationError("file too large to engrave")
        self.from_midi = suffix in MIDI_SUFFIXES
        self.options = {**engrave_options(), **(options or {})}
        self.tk = verovio.toolkit()
        self.tk.setOptions(self.options)
        qpm = None
        tempo_map = None
        spans = note_times = None
        try:
            if self.from_midi:
                tempo_map = midi_tempo_map(path)
                qpm = tempo_map[0][2]
                xml, spans, note_times = midi_to_musicxml(path)
                ok = self.tk.loadData(xml)
            elif suffix == ".mxl":
                text = _text(_mxl_root(os.fspath(path)))
                qpm = musicxml_qpm(text)
                ok = self.tk.loadData(text)
            else:
                text = _text(path.read_bytes())
                if suffix in (".musicxml", ".xml"):
                    qpm = musicxml_qpm(text)
                elif suffix in (".mei", ".abc"):
                    qpm = DEFAULT_QPM  # the app's MEI and ABC readers read no tempo
                ok = self.tk.loadData(text)
        except OSError as exc:
            raise NotationError(f"not a readable file ({exc.strerror or type(exc).__name__})") \
                from None
        if not ok:
            raise NotationError(f"verovio cannot read this {suffix[1:] or 'score'} file "
                                f"(corrupt, or not a score)")
        self.pages = int(self.tk.getPageCount())
        if self.pages <= 0:
            raise NotationError("the score has no pages to show (no music in it)")
        if self.pages > MAX_PAGES:
            raise NotationError(f"the score needs {self.pages} pages: too long to show "
                                f"(the limit is {MAX_PAGES})")
        self._layout = self._read_layout(qpm, spans, note_times)
        self._layout["tempo_map"] = tempo_map

    def _read_layout(self, qpm: float | None, spans: list | None = None,
                     note_times: dict | None = None) -> dict:
        timemap = self.tk.renderToTimemap({"includeMeasures": True, "includeRests": False})
        # page-based MEI lists pages and their measures in score order, with ids and labels
        mei = self.tk.getMEI({"scoreBased": False})
        measures: list[list] = []
        page = 0
        for tag, attrs in _PAGE_OR_MEASURE.findall(mei):
            if tag == "page":
                page += 1
                continue
            a = dict(_ATTR.findall(attrs))
            mid = a.get("xml:id")
            if mid:
                measures.append([mid, a.get("n", str(len(measures) + 1)), max(page, 1)])
        if not measures:
            raise NotationError("the score has no measures to show")
        start: dict[str, float] = {}
        note_on: dict[str, float] = {}
        note_off: dict[str, float] = {}
        first_tempo = None
        end_q = 0.0
        for e in timemap:
            q = float(e.get("qstamp", 0.0))
            end_q = max(end_q, q)
            if first_tempo is None and "tempo" in e:
                first_tempo = float(e["tempo"])
            if "measureOn" in e:
                start.setdefault(e["measureOn"], q)
            for nid in e.get("on", ()):
                note_on.setdefault(nid, q)
            for nid in e.get("off", ()):
                note_off.setdefault(nid, q)
        # measure starts in score order; a measure the timemap skips starts where the next
        # one does (it takes no time)
        starts = [start.get(m[0]) for m in measures]
        nxt = end_q
        for i in range(len(starts) - 1, -1, -1):
            if starts[i] is None:
                starts[i] = nxt
            nxt = starts[i]
        ends = starts[1:] + [max(end_q, starts[-1])]
        if spans and len(spans) == len(measures):
            # notation made from MIDI: the measures are the file's own (its time signatures
            # over its ticks); verovio's timing of converted tuplets may drift from them
            starts, ends = [sp[0] for sp in spans], [sp[1] for sp in spans]
        for nid, (on, off) in (note_times or {}).items():
            if nid in note_on:  # the same for the notes: the file's own times
                note_on[nid], note_off[nid] = on, off
        for m, s, e in zip(measures, starts, ends):
            m += [s, max(e, s)]
        ids = sorted(note_on, key=lambda n: (note_on[n], n))
        return {
            "pages": self.pages,
            "from_midi": self.from_midi,
            "qpm": float(qpm or first_tempo or DEFAULT_QPM),
            "page_size": [self.options["pageWidth"], self.options["pageHeight"]],
            "scale": self.options["scale"],
            # [id, label, page, start quarters, end quarters]
            "measures": measures,
            "notes": {"ids": ids, "on": [note_on[n] for n in ids],
                      "off": [note_off.get(n, note_on[n]) for n in ids]},
        }

    def layout(self) -> dict:
        """The layout table (plain data: str, int, float, lists; JSON-ready).

        Keys: ``pages`` (int), ``from_midi`` (bool), ``qpm`` (quarter notes a minute: the
        tempo the app's readers give the file), ``tempo_map`` (MIDI only, else None:
        ``[seconds, quarters, qpm]`` at each tempo change, the file's own timing),
        ``page_size`` ([width, height] in verovio units), ``scale`` (percent),
        ``measures`` (one ``[id, label, page, start_q, end_q]`` per measure in score
        order: verovio element id, the printed number, 1-based page, start and end in
        quarter notes from the score's start), ``notes`` (``ids``, ``on``,
        ``off``: note element ids and their start and end in quarter notes, by start).
        """
        return self._layout

    def mei(self) -> str:
        """The loaded score as MEI text (verovio's own: it keeps the element ids)."""
        return self.tk.getMEI()

    def page_svg(self, page: int) -> str:
        """Page ``page`` (1-based) as SVG text."""
        if not 1 <= page <= self.pages:
            raise NotationError(f"no page {page} (the score has {self.pages})")
        svg = self.tk.renderToSVG(int(page))
        if not svg:
            raise NotationError(f"verovio could not render page {page}")
        return flatten_svg(svg)


def flatten_svg(svg: str) -> str:
    """Verovio's page with its inner ``<svg class="definition-scale" viewBox=...>`` made a
    ``<g>`` and that viewBox moved to the outer ``<svg>`` (which keeps its width and height
    in px): the same drawing, in a form SVG Tiny renderers such as QtSvg draw (they skip
    nested ``<svg>`` elements). Coordinates in the page are then viewBox units. A
    ``<tspan>`` holding one other ``<tspan>`` becomes one (their attributes merged), which
    QtSvg also needs to show texts such as tempo marks, and a ``<text>`` loses its
    ``font-size="0px"`` (its ``<tspan>`` elements carry the sizes)."""
    svg = _TEXT_SIZE_0.sub(r"\1", _NESTED_TSPAN.sub(_merge_tspans, svg))
    m = _INNER_SVG.search(svg)
    root = svg.find("<svg")
    if m is None or root < 0 or root >= m.start():
        return svg
    close = svg.rfind("</svg>", 0, svg.rfind("</svg>"))
    if close < m.end():
        return svg
    return (svg[:root + 4] + f' viewBox="{m.group(2)}"' + svg[root + 4:m.start()]
            + f'<g class="definition-scale"{m.group(1)}{m.group(3)}>' + svg[m.end():close]
            + "</g>" + svg[close + 6:])


def _merge_tspans(m: re.Match) -> str:
    attrs = dict(_ATTR.findall(m.group(1)))
    attrs.update(_ATTR.findall(m.group(2)))
    merged = "".join(f' {k}="{v}"' for k, v in attrs.items())
    return f"<tspan{merged}>{m.group(3)}</tspan>"
