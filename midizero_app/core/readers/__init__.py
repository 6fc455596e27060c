"""Score readers, one module per format (the layout of partitura's ``io/``).

Each module has ``SUFFIXES`` and ``read(path) -> Notes``; :data:`READERS` maps a lowercase
suffix to its module. :func:`midizero_app.core.scores.load_notes` is the one entry point:
it checks the file, picks the reader, and fills in what every format shares (times from
zero, titles from file names).
"""
from __future__ import annotations

from types import ModuleType

from . import abc, humdrum, mei, midi, musicxml

READERS: dict[str, ModuleType] = {s: m for m in (midi, musicxml, mei, humdrum, abc)
                                  for s in m.SUFFIXES}
