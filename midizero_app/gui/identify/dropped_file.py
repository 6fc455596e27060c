"""A query file dropped on the Identify tab (a score, a MIDI file or a recording): read in a
limited worker process, searched, and shown as a piano roll with its ranked results."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject

from ..workers import Job


class FileQuery(QObject):
    """Searches dropped files on the tab's library; the result lands in the tab's
    ``file_result`` and ``query_roll`` and on its matrix, results and status."""

    def __init__(self, tab):
        super().__init__(tab)
        self.tab = tab

    def search(self, path: str) -> Job | None:
        tab = self.tab
        lib = tab.main.library
        if lib is None:
            return None
        tab.status.setText(f"Searching {Path(path).name}…")
        any_key = tab.any_key_box.isChecked()
        route = getattr(tab.main, "audio_route", None)

        def run(_progress, cancel):
            from ...audio.decode import is_audio
            from ...audio.queries import read_queries, search_options, search_recording
            from ...audio.transcribe import AUDIO_TAU
            from ...core.frames import DEFAULT_TAU, to_frames
            from ...core.windows import frame_matrix

            if route and is_audio(path):  # a recording, by the route chosen in the settings
                result, notes = search_recording(lib, path, route, cancel, any_key=any_key)
                roll = frame_matrix(to_frames(notes, tau=AUDIO_TAU)[0]) \
                    if notes is not None and len(notes) else np.zeros((0, 88), np.float32)
                return result, roll
            # a score parsed, a recording transcribed, each in a limited worker
            r = read_queries([path], cancel=cancel)[path]
            if r.notes is None:
                raise ValueError(r.error)
            options = search_options(path)
            result = lib.search(r.notes, top=10, any_key=any_key, **options)
            tau = options.get("tau", DEFAULT_TAU)
            return result, frame_matrix(to_frames(r.notes, tau=tau)[0])

        job = Job(run, "search")
        job.signals.done.connect(lambda r: self._show(path, *r))
        job.signals.failed.connect(
            lambda m: tab.status.setText(f"Cannot search {Path(path).name}: {m}"))
        return job.start()

    def _show(self, path: str, result: dict, roll: np.ndarray) -> None:
        tab = self.tab
        tab.file_result = result
        tab.query_roll = roll
        tab.matrix.show_roll(roll)
        tab.results.show_results(result.get("results", []))
        text = f"{Path(path).name}: {result.get('frames', 0)} frames"
        if result.get("verdict") == "unsure":
            text += (f" — not sure: {result['tune_notes']} notes of a tune say too little"
                     " (not in the library, or more of the tune would tell)")
        elif result.get("not_in_library"):
            text += " — probably not in the library"
        elif result.get("results"):
            text += f" — best: {result['results'][0].get('title')}"
        tab.status.setText(text)
