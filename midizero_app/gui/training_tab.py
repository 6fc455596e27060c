"""Training tab: choose a data mode, set the main parameters, train with a live loss plot,
then make the new model the library's model."""
from __future__ import annotations

import os
from pathlib import Path

import pyqtgraph as pg
from PySide6.QtWidgets import (QButtonGroup, QCheckBox, QDoubleSpinBox, QFileDialog,
                               QFormLayout, QGroupBox, QHBoxLayout, QLabel, QLineEdit,
                               QProgressBar, QPushButton, QRadioButton, QSpinBox, QVBoxLayout,
                               QWidget)

from .workers import Job

MODES = {
    "C": "Completely random: each frame has 1..note_max pitches drawn uniformly.",
    "S": "Statistical: frames follow unigram/bigram statistics taken from real MIDI (a file).",
    "P": "Probability-based: note count and pitch drawn from normal distributions (default).",
    "R": "Real: windows cut from real MIDI preprocessed to a frames JSON file.",
}


class TrainingTab(QWidget):
    """Mode, parameters, Start/Cancel with a live loss plot, evaluation, "Use this model"."""

    def __init__(self, window, parent=None):
        super().__init__(parent)
        from ..core.training.config import TrainConfig

        self.main = window
        self.defaults = TrainConfig()
        self.job: Job | None = None
        self.model_path: Path | None = None
        self.losses: list[tuple[int, float]] = []
        self.metrics: dict | None = None
        lay = QHBoxLayout(self)
        left = QVBoxLayout()
        left.addWidget(self._data_box())
        left.addWidget(self._parameters_box())
        left.addLayout(self._buttons())
        left.addWidget(self._evaluate_box())
        left.addStretch(1)
        lay.addLayout(left, 2)
        lay.addLayout(self._loss_pane(), 3)
        self.start_btn.clicked.connect(self.start)
        self.cancel_btn.clicked.connect(self.cancel)
        self.use_btn.clicked.connect(self.use_model)
        self.eval_btn.clicked.connect(self.evaluate)
        self._mode_changed()

    def _data_box(self) -> QGroupBox:
        """The data mode (C/S/P/R) and its file."""
        box = QGroupBox("Training data")
        bl = QVBoxLayout(box)
        self.mode_group = QButtonGroup(self)
        self.mode_buttons = {}
        for m, text in MODES.items():
            rb = QRadioButton(f"{m} — {text}")
            rb.setChecked(m == self.defaults.data_source)
            self.mode_group.addButton(rb)
            self.mode_buttons[m] = rb
            bl.addWidget(rb)
            rb.toggled.connect(self._mode_changed)
        self.data_path = QLineEdit()
        self.data_path.setPlaceholderText("statistics file (S) or frames JSON (R)")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        self.make_btn = QPushButton("From MIDI folder…")
        self.make_btn.setToolTip("S: extract frame statistics; R: preprocess to a frames JSON")
        self.make_btn.clicked.connect(self._ask_prepare)
        row = QHBoxLayout()
        row.addWidget(self.data_path, 1)
        row.addWidget(browse)
        row.addWidget(self.make_btn)
        bl.addLayout(row)
        return box

    def _parameters_box(self) -> QGroupBox:
        """Steps, batch, learning rate, the generator's parameters, seed, output folder."""
        params = QGroupBox("Parameters")
        form = QFormLayout(params)
        d = self.defaults
        self.steps = QSpinBox()
        self.steps.setRange(1, 10_000_000)
        self.steps.setValue(200)
        self.steps.setToolTip(f"optimiser steps (the published run: {d.total_steps:,})")
        self.batch = QSpinBox()
        self.batch.setRange(2, 4096)
        self.batch.setValue(d.batch_size)
        self.lr = QDoubleSpinBox()
        self.lr.setDecimals(6)
        self.lr.setRange(1e-6, 1.0)
        self.lr.setSingleStep(1e-5)
        self.lr.setValue(d.lr)
        self.note_max = QSpinBox()
        self.note_max.setRange(1, 88)
        self.note_max.setValue(d.note_max)
        self.p_mean = QDoubleSpinBox()
        self.p_mean.setRange(21, 108)
        self.p_mean.setValue(d.p_mean)
        self.p_std = QDoubleSpinBox()
        self.p_std.setRange(0.1, 100)
        self.p_std.setValue(d.p_std)
        self.n_mean = QDoubleSpinBox()
        self.n_mean.setRange(0, 88)
        self.n_mean.setValue(d.n_mean)
        self.n_std = QDoubleSpinBox()
        self.n_std.setRange(0.1, 50)
        self.n_std.setValue(d.n_std)
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.transcription = QCheckBox("for recordings and the microphone")
        self.transcription.setToolTip("Add audio transcription errors to the training pairs "
                                      "(missed and octave-off notes, doubled onsets, spurious "
                                      "short notes): better on audio, see models/README.md")
        self.out_dir = QLineEdit(str(Path(self.main.library_dir).parent / "models" /
                                     "my-model"))
        for label, w in (("Steps", self.steps), ("Batch size", self.batch),
                         ("Learning rate", self.lr), ("Notes per frame (max)", self.note_max),
                         ("Pitch mean (P)", self.p_mean), ("Pitch std (P)", self.p_std),
                         ("Note count mean (P)", self.n_mean), ("Note count std (P)", self.n_std),
                         ("Seed", self.seed), ("Transcription errors", self.transcription),
                         ("Output folder", self.out_dir)):
            form.addRow(label, w)
        return params

    def _buttons(self) -> QHBoxLayout:
        btns = QHBoxLayout()
        self.start_btn = QPushButton("Start training")
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setEnabled(False)
        self.use_btn = QPushButton("Use this model")
        self.use_btn.setEnabled(False)
        self.use_btn.setToolTip("Make the trained model the app's model and re-embed the library")
        for b in (self.start_btn, self.cancel_btn, self.use_btn):
            btns.addWidget(b)
        return btns

    def _evaluate_box(self) -> QGroupBox:
        ev = QGroupBox("Evaluate (R@1, R@10, MRR, nDCG)")
        ef = QFormLayout(ev)
        self.eval_db = self._path_row(ef, "Database folder", folder=True)
        self.eval_queries = self._path_row(ef, "Query folder", folder=True)
        self.eval_gt = self._path_row(ef, "Ground truth CSV", folder=False)
        self.eval_btn = QPushButton("Evaluate")
        self.eval_btn.setToolTip("Index the database with the trained model (or the app's model "
                                 "if none was trained) in a temporary library and search every "
                                 "query of the ground truth (columns query,gt)")
        self.eval_result = QLabel("")
        self.eval_result.setWordWrap(True)
        ef.addRow(self.eval_btn, self.eval_result)
        return ev

    def _loss_pane(self) -> QVBoxLayout:
        """The loss curve, the progress bar and a line of information."""
        right = QVBoxLayout()
        self.plot = pg.PlotWidget(title="Training loss")
        self.plot.setBackground("w")
        self.plot.setAcceptDrops(False)
        self.plot.viewport().setAcceptDrops(False)
        self.plot.setLabel("bottom", "step")
        self.plot.setLabel("left", "loss")
        self.plot.getAxis("left").enableAutoSIPrefix(False)
        self.plot.showGrid(x=True, y=True, alpha=0.2)
        self.curve = self.plot.plot([], [], pen=pg.mkPen("#1f5aa6", width=2))
        right.addWidget(self.plot, 1)
        self.progress = QProgressBar()
        right.addWidget(self.progress)
        self.info = QLabel("Choose a mode and press Start. A real model needs hours of CPU; "
                           "a few hundred steps show the loss falling.")
        self.info.setWordWrap(True)
        right.addWidget(self.info)
        return right

    def _path_row(self, form, label: str, folder: bool) -> QLineEdit:
        edit = QLineEdit()
        btn = QPushButton("…")
        btn.setFixedWidth(32)

        def pick():
            if folder:
                p = QFileDialog.getExistingDirectory(self, label, str(Path.home()))
            else:
                p, _ = QFileDialog.getOpenFileName(self, label, str(Path.home()),
                                                   "CSV (*.csv);;All files (*)")
            if p:
                edit.setText(p)

        btn.clicked.connect(pick)
        row = QHBoxLayout()
        row.addWidget(edit, 1)
        row.addWidget(btn)
        form.addRow(label, row)
        return edit

    def evaluate(self) -> Job | None:
        db, q, gt = (e.text().strip() for e in (self.eval_db, self.eval_queries, self.eval_gt))
        if not (db and q and gt):
            self.eval_result.setText("Choose the database folder, query folder and CSV first.")
            return None
        ckpt = self.model_path
        if ckpt is None and self.main.library is not None:
            ckpt = self.main.library.stats().get("model_path")
        self.eval_result.setText("Evaluating…")
        self.eval_btn.setEnabled(False)

        def run(progress, _cancel):
            from ..core.isolated import run_isolated

            # torch (the checkpoint) loads in a process of its own, not in the app
            return run_isolated("midizero_app.core.training.evaluate:evaluate", db, q, gt,
                                ckpt, progress=lambda p: progress((p[0], p[1])))

        job = Job(run, "evaluation")
        job.signals.progress.connect(lambda p: self.eval_result.setText(
            f"Evaluating… {p[0]}/{p[1]}"))
        job.signals.done.connect(self._evaluated)
        job.signals.failed.connect(lambda m: self.eval_result.setText(f"Cannot evaluate: {m}"))
        job.signals.ended.connect(lambda: self.eval_btn.setEnabled(True))
        self.eval_job = job
        return job.start()

    def _evaluated(self, m: dict) -> None:
        self.metrics = m
        self.eval_result.setText(
            f"R@1 {m['recall@1']:.3f} · R@10 {m.get('recall@10', 0):.3f} · "
            f"MRR {m.get('mrr@10', 0):.3f} · nDCG {m.get('ndcg@10', 0):.3f} "
            f"({m['queries']} queries" + (f", {len(m['errors'])} unreadable)" if m.get("errors")
                                          else ")"))

    def mode(self) -> str:
        return next(m for m, b in self.mode_buttons.items() if b.isChecked())

    def _mode_changed(self, *_):
        needs = self.mode() in ("S", "R")
        self.data_path.setEnabled(needs)
        if hasattr(self, "make_btn"):
            self.make_btn.setEnabled(needs)

    def _ask_prepare(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Folder of MIDI or score files",
                                             str(Path.home()))
        if d:
            self.prepare_data(d)

    def prepare_data(self, folder: str) -> Job | None:
        """Mode S: frame statistics of ``folder``; mode R: its frames JSON (in a worker)."""
        mode = self.mode()
        if mode not in ("S", "R"):
            return None
        out = Path(self.out_dir.text().strip() or ".")
        save = out / ("frame_stats.json" if mode == "S" else "frames.json")
        self.info.setText(f"Reading {folder}…")
        self.make_btn.setEnabled(False)

        def run(_progress, _cancel):
            from ..core.scores import SCORE_SUFFIXES
            from ..core.training import datagen

            save.parent.mkdir(parents=True, exist_ok=True)
            if mode == "S":
                datagen.extract_frame_distributions(folder, save_path=save)
            else:
                files = sorted(p for p in Path(folder).rglob("*")
                               if p.suffix.lower() in SCORE_SUFFIXES)
                if not files:
                    raise ValueError(f"no score or MIDI files in {folder}")
                datagen.preprocess_and_save_midi_data(files, save)
            return save

        job = Job(run, "training data")
        job.signals.done.connect(lambda p: (self.data_path.setText(str(p)), self.info.setText(
            f"Training data ready: {p}")))
        job.signals.failed.connect(lambda m: self.info.setText(f"Cannot read the folder: {m}"))
        job.signals.ended.connect(self._mode_changed)
        self.prep_job = job
        return job.start()

    def _browse(self) -> None:
        f, _ = QFileDialog.getOpenFileName(self, "Training data file", str(Path.home()),
                                           "JSON or NumPy (*.json *.npz);;All files (*)")
        if f:
            self.data_path.setText(f)

    def config(self):
        from ..core.training.config import TrainConfig

        mode, path = self.mode(), self.data_path.text().strip() or None
        batch = self.batch.value()
        return TrainConfig(
            data_source=mode, frame_dist_file=path if mode == "S" else None,
            train_data_path=path if mode == "R" else None, note_max=self.note_max.value(),
            p_mean=self.p_mean.value(), p_std=self.p_std.value(), n_mean=self.n_mean.value(),
            n_std=self.n_std.value(), batch_size=batch, lr=self.lr.value(),
            epochs=1, samples_per_epoch=self.steps.value() * batch, seed=self.seed.value(),
            transcription_augment=self.transcription.isChecked(), device="cpu",
            out_dir=self.out_dir.text().strip())

    def start(self) -> Job | None:
        if self.job is not None and self.job.running:
            return None
        cfg = self.config()
        if cfg.data_source in ("S", "R") and not (cfg.frame_dist_file or cfg.train_data_path):
            self.info.setText(f"Mode {cfg.data_source} needs a data file: use Browse….")
            return None
        self.losses = []
        self.curve.setData([], [])
        self.progress.setRange(0, cfg.total_steps)
        self.progress.setValue(0)
        self.info.setText("Starting (loading torch)…")
        self.use_btn.setEnabled(False)

        def run(progress, cancel):
            from ..core.isolated import run_isolated

            threads = max(1, (os.cpu_count() or 2) // 2)
            # In a process of its own: torch never loads into the app, whose event loop
            # would otherwise stall for whole seconds (benchmarks/stall_bench.py).
            return run_isolated("midizero_app.core.training.train:train", cfg,
                                progress=progress, cancel=cancel, threads=threads)

        self.job = job = Job(run, "training")
        job.signals.progress.connect(self._progress)
        job.signals.done.connect(self._done)
        job.signals.failed.connect(lambda m: self.info.setText(f"Training stopped: {m}"))
        job.signals.ended.connect(self._ended)
        self.start_btn.setEnabled(False)
        self.cancel_btn.setEnabled(True)
        return job.start()

    def cancel(self) -> None:
        if self.job is not None and self.job.running:
            self.job.cancel.set()
            self.info.setText("Cancelling after this step (the run can be resumed)…")

    def _progress(self, p: dict) -> None:
        step, total = int(p.get("step", 0)), int(p.get("total", 0))
        if p.get("loss") is not None:
            self.losses.append((step, float(p["loss"])))
            self.curve.setData([s for s, _ in self.losses], [v for _, v in self.losses])
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(step)
        self.info.setText(f"step {step}/{total} · loss {p.get('loss', float('nan')):.4f} · "
                          f"lr {p.get('lr', 0):.2e} · {p.get('samples_per_s', 0):.0f} samples/s")

    def _done(self, path) -> None:
        self.model_path = Path(path)
        self.progress.setValue(self.progress.maximum())
        self.info.setText(f"Done: {self.model_path}. 'Use this model' re-embeds the library.")
        self.use_btn.setEnabled(True)

    def _ended(self) -> None:
        self.start_btn.setEnabled(True)
        self.cancel_btn.setEnabled(False)

    def use_model(self) -> Job | None:
        if self.model_path is None:
            return None
        return self.main.use_model(self.model_path)
