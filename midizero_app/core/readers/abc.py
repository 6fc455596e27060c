"""ABC files (``.abc``) → :class:`~.common.Notes`, through music21 (partitura has no ABC
reader). A file of several tunes becomes one piece with the tunes one after another."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .common import DEFAULT_QPM, Notes, ScoreError, clean_text, short_reason, voice_numbers

SUFFIXES = (".abc",)


def read(path: str | Path) -> Notes:
    """Read an ABC file (one tune or a book of tunes).

    Returns
    -------
    Notes : onsets in seconds at 120 quarter notes a minute, ``grid`` in 1/10080 quarter
        notes, measures and voices (one per ``V:`` voice); tunes follow each other with a
        4-quarter gap.

    Raises
    ------
    ScoreError : the file does not parse.
    """
    import music21

    try:
        parsed = music21.converter.parse(str(path), format="abc")
    except Exception as exc:  # noqa: BLE001 - music21 raises many types on bad files
        raise ScoreError(f"could not parse ABC file ({short_reason(exc)})") from None
    scores = list(parsed.scores) if isinstance(parsed, music21.stream.Opus) else [parsed]
    onsets, pitches, grids, measures, voices = [], [], [], [], []
    offset_q = 0.0
    title = composer = ""
    for sc in scores:
        md = sc.metadata
        if md is not None:
            title = title or clean_text(md.title)
            composer = composer or clean_text(md.composer)
        # ABC voices (V:) are parts; a file of tunes keeps one line per voice number
        for pi, part in enumerate(list(sc.parts) or [sc]):
            for n in part.recurse().notes:
                q = float(n.getOffsetInHierarchy(sc)) + offset_q
                mnum = n.measureNumber if n.measureNumber is not None else -1
                for p in n.pitches:
                    onsets.append(q * 60.0 / DEFAULT_QPM)
                    pitches.append(p.midi)
                    grids.append(round(q * 10080))
                    measures.append(mnum)
                    voices.append(pi)
        offset_q += float(sc.highestTime) + 4.0
    if len(scores) > 1 and title:
        title = f"{title} (+{len(scores) - 1} more tunes)"
    return Notes(np.asarray(onsets), np.asarray(pitches, np.int16), np.asarray(grids, np.int64),
                 np.asarray(measures, np.int32), None, title=title, composer=composer,
                 format="abc", quantised=True,
                 voice=voice_numbers(np.asarray(voices, np.int64).reshape(-1, 1)))
