"""Scores as engraved notation (verovio SVG pages) and the way from the app's positions
(score seconds, measure and beat) to measures, pages, notes and boxes on a page.

No Qt here: a view shows :meth:`ScoreRendering.svg` pages with QtSvg and draws its cursor
from :meth:`ScoreRendering.measure_box`. User files are engraved in a worker process with a
time limit (:mod:`.worker`); every failure is a one-line :class:`NotationError`.
"""
from .engrave import (MAX_PAGES, MIDI_SUFFIXES, NOTATION_SUFFIXES, NotationError,
                      engrave_options)
from .render import Box, Measure, ScoreRendering, measure_boxes, shared_worker
from .worker import EngraverProcess

__all__ = ["MAX_PAGES", "MIDI_SUFFIXES", "NOTATION_SUFFIXES", "Box", "EngraverProcess",
           "Measure", "NotationError", "ScoreRendering", "engrave_options", "measure_boxes",
           "shared_worker"]
