"""The desktop face of MIDI-Zero (PySide6 + pyqtgraph): ``midizero-app``.

A thin layer over :mod:`midizero_app.core` and :mod:`midizero_app.live`: every long job
runs in a :class:`~midizero_app.gui.workers.Job` on the Qt thread pool with progress and
cancel, so the event loop never waits on parsing, embedding, searching or training.
"""


def _keep_none_alive() -> None:
    """Work around a PySide6 6.12 bug on CPython < 3.12: a call to a C++ method that returns
    void (QPainter.drawRect, QColor.setAlphaF, ...) hands back ``None`` without a new
    reference, so each one takes a reference from ``None``; a few thousand paints later the
    interpreter aborts ("Fatal Python error: none_dealloc"; measured: −181 per repaint of
    the on-screen piano, −160 per repaint of the Draw canvas, from about 16,000 at start).
    From Python 3.12 ``None`` is immortal; here it gets a reference count no session can
    use up. Remove when PySide6 is fixed or the app requires Python ≥ 3.12.
    """
    import sys

    if sys.implementation.name != "cpython" or sys.version_info >= (3, 12):
        return
    import ctypes

    ctypes.c_ssize_t.from_address(id(None)).value += 1 << 40


_keep_none_alive()
