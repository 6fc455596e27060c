"""The desktop face of MIDI-Zero (PySide6 + pyqtgraph): ``midizero-app``.

A thin layer over :mod:`midizero_app.core` and :mod:`midizero_app.live`: every long job
runs in a :class:`~midizero_app.gui.workers.Job` on the Qt thread pool with progress and
cancel, so the event loop never waits on parsing, embedding, searching or training.
"""

