"""Draw → music (DESIGN §1.6): a drawing on the piano roll becomes a piece of piano music.

Importable without Qt. The pieces:

* :mod:`.image` — image files → darkness (:func:`load_image`, :class:`DrawError`)
* :mod:`.drawing` — the drawn roll (:class:`Drawing`, :func:`image_to_drawing`)
* :mod:`.theory` — keys, chords, progressions
* :mod:`.rule` — drawn notes snapped to a chord progression
* :mod:`.stitch` — the drawing stitched from real library windows
* :mod:`.naive` — every drawn cell a note (the baseline)
* :mod:`.result` — :class:`Generated` (notes, sources, MIDI export)
* :mod:`.metrics` — blurred IoU, Fréchet distance, in-key share
"""
from __future__ import annotations

from .drawing import Drawing, image_to_drawing
from .image import DrawError, load_image
from .result import Generated
from .theory import Key, parse_key

METHODS = ("rule", "library", "naive")


def generate(drawing: Drawing, method: str = "rule", key: Key | str = "C",
             tempo: float = 96.0, library=None, **options) -> Generated:
    """Make music from a drawing.

    Parameters
    ----------
    drawing : the drawn roll (:class:`Drawing`).
    method : ``"rule"`` (chords of a progression), ``"library"`` (real windows of
        ``library``) or ``"naive"`` (every drawn cell a note).
    key : key name or :class:`Key`.
    tempo : quarter notes per minute (20..400).
    library : a :class:`~midizero_app.core.library.Library`; needed by ``"library"``.
    **options : passed to the method (``progression``, ``chords_per_bar`` for ``rule``).
    """
    key = parse_key(key)
    if not 20 <= float(tempo) <= 400:
        raise DrawError(f"tempo {tempo} is outside 20..400 beats per minute")
    if method == "rule":
        from .rule import rule

        return rule(drawing, key, tempo, **options)
    if method == "library":
        if library is None:
            raise DrawError("the library method needs a library")
        from .stitch import stitch

        return stitch(drawing, library, key, tempo, **options)
    if method == "naive":
        from .naive import naive

        return naive(drawing, key, tempo)
    raise DrawError(f"unknown method {method!r}: use one of {', '.join(METHODS)}")


__all__ = ["Drawing", "DrawError", "Generated", "Key", "METHODS", "generate",
           "image_to_drawing", "load_image", "parse_key"]
