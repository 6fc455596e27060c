"""Training windows in the four MIDI-Zero data modes (DESIGN §1.4).

A window is a list of ``win_length`` frames, each a sorted list of MIDI pitches.

* ``C`` completely random: k ~ U{1..note_max} distinct pitches per frame, uniform over the range.
* ``S`` statistical: frames from a unigram / bigram table of real frames
  (:func:`extract_frame_distributions`); an unseen frame falls back to the unigram.
* ``P`` probability-based: k ~ Normal(n_mean, n_std) truncated to 1..note_max, pitches ~
  Normal(p_mean, p_std) over the range.
* ``R`` real: windows (hop 5) of real frames from :func:`preprocess_and_save_midi_data`.

Saved files are JSON or ``.npz`` — never pickle.
"""
from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Iterable

import numpy as np

from ..atomic import atomic_write, write_text

Window = list[list[int]]
MODES = ("C", "S", "P", "R")
R_HOP = 5
PITCH_LO, PITCH_HI = 21, 108


class WindowSource:
    """Draws windows of one mode with a seeded generator (``draw(rng) -> Window``)."""

    def __init__(self, mode: str, win_length: int = 10, note_max: int = 12,
                 pitch_range: tuple[int, int] = (21, 108), p_mean: float = 64.0,
                 p_std: float = 24.0, n_mean: float = 6.0, n_std: float = 2.5,
                 frame_dist_file: str | Path | None = None,
                 train_data_path: str | Path | None = None):
        mode = mode.upper()
        if mode not in MODES:
            raise ValueError(f"unknown data mode {mode!r}; choose one of {', '.join(MODES)}")
        self.mode, self.win_length, self.note_max = mode, int(win_length), int(note_max)
        self.lo, self.hi = int(pitch_range[0]), int(pitch_range[1])
        # Windows are 88-column piano matrices: other pitches would wrap to wrong columns.
        if not PITCH_LO <= self.lo <= self.hi <= PITCH_HI:
            raise ValueError(f"pitch_range must lie within {PITCH_LO}..{PITCH_HI}")
        if not 1 <= self.note_max <= self.hi - self.lo + 1 or self.win_length < 1:
            raise ValueError("need win_length >= 1 and 1 <= note_max <= the pitch range's size")
        self.p_mean, self.p_std, self.n_mean, self.n_std = p_mean, p_std, n_mean, n_std
        if mode == "S":
            if not frame_dist_file:
                raise ValueError("mode S needs frame_dist_file (from extract_frame_distributions)")
            self._load_stats(frame_dist_file)
        if mode == "R":
            if not train_data_path:
                raise ValueError("mode R needs train_data_path (from preprocess_and_save_midi_data)")
            self._load_real(train_data_path)

    # --- mode implementations ---------------------------------------------------------
    def draw(self, rng: np.random.Generator) -> Window:
        return {"C": self._draw_c, "S": self._draw_s, "P": self._draw_p,
                "R": self._draw_r}[self.mode](rng)

    def _draw_c(self, rng: np.random.Generator) -> Window:
        span = np.arange(self.lo, self.hi + 1)
        ks = rng.integers(1, self.note_max + 1, self.win_length)
        return [sorted(rng.choice(span, k, replace=False).tolist()) for k in ks]

    def note_counts(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """n note counts ~ Normal(n_mean, n_std) rounded and truncated to 1..note_max."""
        out = np.empty(0, np.int64)
        while len(out) < n:
            k = np.rint(rng.normal(self.n_mean, self.n_std, 2 * n + 16)).astype(np.int64)
            out = np.concatenate([out, k[(k >= 1) & (k <= self.note_max)]])
        return out[:n]

    def _draw_p(self, rng: np.random.Generator) -> Window:
        window = []
        for k in self.note_counts(rng, self.win_length):
            chosen: set[int] = set()
            while len(chosen) < k:
                p = np.rint(rng.normal(self.p_mean, self.p_std, 2 * k)).astype(np.int64)
                for v in p[(p >= self.lo) & (p <= self.hi)]:
                    if len(chosen) < k:
                        chosen.add(int(v))
            window.append(sorted(chosen))
        return window

    def _load_stats(self, path: str | Path) -> None:
        stats = load_frame_distributions(path)
        try:
            self._uni_frames, self._uni_p = _table(stats["unigram"])
            self._bigram = {_frame(prev): _table(nexts) for prev, nexts in stats["bigram"]}
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path}: not a frame-statistics file ({exc})") from None

    def _draw_s(self, rng: np.random.Generator) -> Window:
        frame = self._uni_frames[rng.choice(len(self._uni_frames), p=self._uni_p)]
        window = [list(frame)]
        while len(window) < self.win_length:
            nxt = self._bigram.get(frame)
            if nxt is None:
                frame = self._uni_frames[rng.choice(len(self._uni_frames), p=self._uni_p)]
            else:
                frame = nxt[0][rng.choice(len(nxt[0]), p=nxt[1])]
            window.append(list(frame))
        return window

    def _load_real(self, path: str | Path) -> None:
        data = load_frames_json(path)
        self._real: list[Window] = []
        for frames in data.values():
            frames = [sorted({int(p) for p in f if self.lo <= p <= self.hi}) for f in frames]
            frames = [f for f in frames if f]
            for s in range(0, max(len(frames) - self.win_length, 0) + 1, R_HOP):
                w = frames[s:s + self.win_length]
                if len(w) == self.win_length:
                    self._real.append(w)
        if not self._real:
            raise ValueError(f"{path}: no windows of {self.win_length} frames in the data")

    def _draw_r(self, rng: np.random.Generator) -> Window:
        return [list(f) for f in self._real[rng.integers(len(self._real))]]


def _frame(f) -> tuple[int, ...]:
    """A stored frame → sorted pitch tuple; ValueError unless non-empty ints in 21..108."""
    if not isinstance(f, list) or not f or not all(
            isinstance(p, int) and not isinstance(p, bool) and PITCH_LO <= p <= PITCH_HI
            for p in f):
        raise ValueError(f"bad frame {str(f)[:40]}: expected a list of pitches "
                         f"{PITCH_LO}..{PITCH_HI}")
    return tuple(sorted(set(f)))


def _table(entries) -> tuple[list[tuple[int, ...]], np.ndarray]:
    """[[frame, p], ...] → (frames, probabilities normalised to sum 1)."""
    frames = [_frame(f) for f, _ in entries]
    p = np.asarray([w for _, w in entries], np.float64)
    if not len(p) or not np.all(np.isfinite(p)) or np.any(p < 0) or p.sum() <= 0:
        raise ValueError("probabilities must be finite, >= 0 and not all 0")
    return frames, p / p.sum()


def windows_to_array(windows: Iterable[Window], win_length: int = 10) -> np.ndarray:
    """Windows → uint8 (N, win_length, 88) binary matrices (rows past a window's end stay 0)."""
    windows = list(windows)
    out = np.zeros((len(windows), win_length, 88), np.uint8)
    for i, w in enumerate(windows):
        for j, frame in enumerate(w[:win_length]):
            out[i, j, np.asarray(frame, np.int64) - 21] = 1
    return out


def generate_training_data(mode: str, win_length: int = 10, note_max: int = 12,
                           pitch_range: tuple[int, int] = (21, 108), num_samples: int = 10000,
                           pitch_only: bool = True, save_path: str | Path | None = None,
                           seed: int = 0, **mode_params) -> np.ndarray:
    """Generate ``num_samples`` windows of one mode.

    Returns uint8 (num_samples, win_length, 88); with ``save_path`` (``.npz``) also saves
    them as ``windows``. ``mode_params``: p_mean, p_std, n_mean, n_std (P),
    frame_dist_file (S), train_data_path (R). ``pitch_only`` must be True (velocity and
    duration are not modelled).
    """
    if not pitch_only:
        raise ValueError("only pitch_only=True is supported")
    src = WindowSource(mode, win_length, note_max, pitch_range, **mode_params)
    rng = np.random.default_rng(seed)
    arr = windows_to_array((src.draw(rng) for _ in range(num_samples)), win_length)
    if save_path:
        target = Path(save_path)  # np.savez's own rule: ".npz" is added when missing
        if target.suffix != ".npz":
            target = target.with_name(target.name + ".npz")
        with atomic_write(target) as tmp, open(tmp, "wb") as f:
            np.savez_compressed(f, windows=arr, mode=mode)
    return arr


# --- real-data files ------------------------------------------------------------------

def _frames_of_files(midi_files: Iterable[str | Path], source_type: str,
                     time_resolution: float) -> dict[str, list[list[int]]]:
    from ..parsing import parse_files
    from ..frames import to_frames

    kind = {"performance": "performance", "score": "score"}.get(source_type)
    if kind is None:
        raise ValueError("source_type must be 'performance' or 'score'")
    files = [str(f) for f in midi_files]
    parsed = {path: notes for path, notes, _ in parse_files(files) if notes is not None}
    out = {}
    for path in files:  # input order (workers finish in any order): reproducible files
        if path in parsed:
            frames, _ = to_frames(parsed.pop(path), kind, time_resolution)
            out[Path(path).name if Path(path).name not in out else path] = \
                [list(c) for c in frames.chords()]
    return out


def preprocess_and_save_midi_data(midi_files: Iterable[str | Path], save_path: str | Path,
                                  pitch_only: bool = True, source_type: str = "performance",
                                  time_resolution: float = 0.05) -> dict[str, list[list[int]]]:
    """Real MIDI (or any score file) → frames JSON for mode R: ``{"file": [[pitch, ...], ...]}``."""
    if not pitch_only:
        raise ValueError("only pitch_only=True is supported")
    data = _frames_of_files(midi_files, source_type, time_resolution)
    write_text(save_path, json.dumps(data))
    return data


def load_frames_json(path: str | Path) -> dict[str, list[list[int]]]:
    """Read a frames JSON file with a clear error for anything malformed."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a frames JSON file ({exc})") from None
    if not isinstance(data, dict) or not all(
            isinstance(v, list) and all(isinstance(f, list) and all(
                isinstance(p, int) and not isinstance(p, bool) for p in f) for f in v)
            for v in data.values()):
        raise ValueError(f"{path}: expected {{\"file\": [[pitch, ...], ...]}}")
    return data


def extract_frame_distributions(midi_dir: str | Path, save_path: str | Path | None = None,
                                source_type: str = "performance", time_resolution: float = 0.05,
                                files: list[str | Path] | None = None) -> dict:
    """Frame unigram and frame-to-frame bigram probabilities of the score files in a folder.

    Returns (and saves as JSON) ``{"unigram": [[[pitches], p], ...],
    "bigram": [[[prev], [[[next], p], ...]], ...]}`` with probabilities summing to 1.
    """
    from ..scores import SCORE_SUFFIXES

    if files is None:
        files = sorted(p for p in Path(midi_dir).rglob("*") if p.suffix.lower() in SCORE_SUFFIXES)
    data = _frames_of_files(files, source_type, time_resolution)
    return frame_distributions(data.values(), save_path)


def frame_distributions(sequences: Iterable[list[list[int]]], save_path=None) -> dict:
    """Unigram / bigram tables from frame sequences (see extract_frame_distributions)."""
    uni: Counter = Counter()
    bi: dict = defaultdict(Counter)
    for seq in sequences:
        seq = [tuple(sorted(set(f))) for f in seq if f]
        uni.update(seq)
        for a, b in zip(seq, seq[1:]):
            bi[a][b] += 1
    total = sum(uni.values())
    stats = {"unigram": [[list(f), c / total] for f, c in uni.most_common()],
             "bigram": [[list(a), [[list(b), c / sum(nx.values())] for b, c in nx.most_common()]]
                        for a, nx in bi.items()]}
    if save_path:
        write_text(save_path, json.dumps(stats))
    return stats


def load_frame_distributions(path: str | Path) -> dict:
    """Read mode-S statistics from JSON (or ``.npz`` holding a ``json`` string) — no pickle."""
    path = Path(path)
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                stats = json.loads(str(z["json"]))
        else:
            stats = json.loads(path.read_text())
        ok = (isinstance(stats, dict) and isinstance(stats.get("unigram"), list)
              and isinstance(stats.get("bigram"), list) and stats["unigram"])
    except Exception as exc:  # noqa: BLE001 - any malformed file gets the same clear message
        raise ValueError(f"{path}: not a frame-statistics file ({exc})") from None
    if not ok:
        raise ValueError(f"{path}: not a frame-statistics file (needs a non-empty 'unigram' "
                         "list and a 'bigram' list)")
    return stats

