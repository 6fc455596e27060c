"""The installed Qt binding must not lose references to None (PySide6 6.12.0 on CPython
< 3.12 does, one per void C++ call, and the app aborts after a few thousand paints)."""
from __future__ import annotations

import os
import sys

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="None is immortal from Python 3.12")
def test_void_qt_calls_keep_none_alive(qtbot):
    from PySide6.QtCore import QRect
    from PySide6.QtGui import QColor, QImage, QPainter

    image = QImage(64, 64, QImage.Format_ARGB32)
    painter = QPainter(image)
    color = QColor(10, 20, 30)
    before = sys.getrefcount(None)
    for _ in range(1000):
        color.setAlphaF(0.5)
        painter.drawRect(QRect(1, 2, 3, 4))
    after = sys.getrefcount(None)
    painter.end()
    assert abs(after - before) < 50, (
        f"None lost {before - after} references in 2,000 void Qt calls: "
        "a PySide6 with the none_dealloc bug (6.12.0) is installed")
