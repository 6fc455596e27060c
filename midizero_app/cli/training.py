"""``midizero gen-data | train | eval``: training commands (DESIGN §1.4, §4.3).

The published MIDI-Zero spellings (``--data_source``, ``--train_data_path``, ``--db_path``,
...) are accepted as aliases of the dashed options.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from .common import UserError


def _opt(p: argparse.ArgumentParser, name: str, **kw) -> None:
    """``--foo-bar`` with the published ``--foo_bar`` alias."""
    flags = [f"--{name}"] + ([f"--{name.replace('-', '_')}"] if "-" in name else [])
    p.add_argument(*flags, **kw)


def _mode_options(p: argparse.ArgumentParser) -> None:
    from ..core.training.config import TrainConfig

    d = TrainConfig()
    _opt(p, "data-source", choices=("C", "S", "P", "R"), default=d.data_source, type=str.upper,
         help="C random, S statistical, P probability-based, R real (default P)")
    _opt(p, "train-data-path", help="mode R: frames JSON (from preprocess)")
    _opt(p, "frame-dist-file", help="mode S: frame statistics JSON")
    _opt(p, "win-length", type=int, default=d.win_length)
    _opt(p, "note-max", type=int, default=d.note_max)
    _opt(p, "pitch-range", type=int, nargs=2, default=list(d.pitch_range), metavar=("LO", "HI"))
    for name in ("p-mean", "p-std", "n-mean", "n-std"):
        _opt(p, name, type=float, default=getattr(d, name.replace("-", "_")))
    _opt(p, "seed", type=int, default=d.seed)


def _fail(exc: Exception) -> UserError:
    """Bad parameters or data files: one clear line, no traceback."""
    return UserError(str(exc))


def cmd_gen_data(args) -> int:
    from ..core.training.datagen import generate_training_data

    try:
        arr = generate_training_data(args.data_source, args.win_length, args.note_max,
                                     tuple(args.pitch_range), args.num_samples,
                                     save_path=args.out, seed=args.seed, **_mode_params(args))
    except ValueError as exc:  # bad parameters or data files: one clear line, no traceback
        raise _fail(exc) from None
    notes = arr.sum(axis=2)
    print(json.dumps({"windows": int(len(arr)), "out": args.out,
                      "mean_notes_per_frame": round(float(notes[notes > 0].mean()), 3)}))
    return 0


def _mode_params(args) -> dict:
    params = {}
    if args.data_source == "P":
        params = {"p_mean": args.p_mean, "p_std": args.p_std, "n_mean": args.n_mean,
                  "n_std": args.n_std}
    elif args.data_source == "S":
        params = {"frame_dist_file": args.frame_dist_file}
    elif args.data_source == "R":
        params = {"train_data_path": args.train_data_path}
    return params


def cmd_train(args) -> int:
    from ..core.training.train import TrainConfig, TrainingCancelled, train

    arch = {"widths": args.widths, "blocks": args.blocks, "dim": 128, "win_length": args.win_length}
    cfg = TrainConfig(
        data_source=args.data_source, train_data_path=args.train_data_path,
        frame_dist_file=args.frame_dist_file, win_length=args.win_length, note_max=args.note_max,
        pitch_range=tuple(args.pitch_range), p_mean=args.p_mean, p_std=args.p_std,
        n_mean=args.n_mean, n_std=args.n_std, arch=arch, batch_size=args.batch_size, lr=args.lr,
        lr_min=args.lr_min, epochs=args.epochs, samples_per_epoch=args.samples_per_epoch,
        loss=args.loss, alpha=args.alpha, temperature=args.temperature,
        piano_augment=not args.published_augment,
        transcription_augment=args.transcription_augment, melody_pairs=args.melody_pairs,
        seed=args.seed, device=args.device,
        out_dir=args.out)
    from tqdm import tqdm

    bars: list = []  # made on the first report: nothing drawn before the data is checked

    def progress(info: dict) -> None:
        if not bars:
            bars.append(tqdm(total=cfg.total_steps, initial=info["step"], desc="training",
                             unit="step", file=sys.stderr))
        bar = bars[0]
        bar.n = info["step"]
        bar.set_postfix(loss=f"{info['loss']:.4f}", lr=f"{info['lr']:.2e}",
                        sps=f"{info['samples_per_s']:.0f}")

    cancel = threading.Event()

    def on_sigint(*_) -> None:  # finish the current step and save last.pt; a 2nd ^C kills
        cancel.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    main_thread = threading.current_thread() is threading.main_thread()
    old = signal.signal(signal.SIGINT, on_sigint) if main_thread else None
    try:
        path = train(cfg, progress, cancel)
    except TrainingCancelled as exc:
        print(f"\ninterrupted: {exc}; run the same command again to resume", file=sys.stderr)
        return 130
    except ValueError as exc:
        raise _fail(exc) from None
    finally:
        if main_thread:
            signal.signal(signal.SIGINT, old)
        for bar in bars:
            bar.close()
    print(path)
    return 0


def cmd_eval(args) -> int:
    from ..core.training.evaluate import evaluate

    try:
        res = evaluate(args.db_path, args.query_path, args.gt_file_path, args.checkpoint_path,
                       k=args.k, aggregate=args.aggregate)
    except ValueError as exc:
        raise _fail(exc) from None
    if args.json:
        print(json.dumps(res))
    else:
        for q, err in res["errors"].items():
            print(f"query {q} not read: {err}", file=sys.stderr)
        for key, val in res.items():
            if key not in ("ranks", "errors"):
                print(f"{key:>10s}  {val:.4f}" if isinstance(val, float) else f"{key:>10s}  {val}")
    return 0


def add_training_commands(sub) -> None:
    from ..core.training.config import TrainConfig

    d = TrainConfig()
    p = sub.add_parser("gen-data", help="generate training windows (.npz) in mode C/S/P/R")
    _mode_options(p)
    _opt(p, "num-samples", type=int, default=10000)
    p.add_argument("--out", "--save_path", dest="out", help=".npz file to write")
    p.set_defaults(func=cmd_gen_data)

    p = sub.add_parser("train", help="train an encoder (resumes an interrupted run)")
    _mode_options(p)
    _opt(p, "batch-size", type=int, default=d.batch_size)
    _opt(p, "lr", type=float, default=d.lr)
    _opt(p, "lr-min", type=float, default=d.lr_min)
    _opt(p, "epochs", type=int, default=d.epochs)
    _opt(p, "samples-per-epoch", type=int, default=d.samples_per_epoch)
    _opt(p, "loss", choices=("combine", "infonce", "sim"), default=d.loss)
    _opt(p, "alpha", type=float, default=d.alpha)
    _opt(p, "temperature", type=float, default=d.temperature)
    _opt(p, "widths", type=int, nargs=4, default=d.arch["widths"])
    _opt(p, "blocks", type=int, nargs=4, default=d.arch["blocks"])
    _opt(p, "published-augment", action="store_true",
         help="only the published augmentations (no piano chord splits/merges/octaves)")
    _opt(p, "transcription-augment", action="store_true",
         help="add audio transcription errors to the positives (missed and octave-off "
              "notes, doubled onsets, spurious short notes)")
    _opt(p, "melody-pairs", type=float, default=d.melody_pairs, metavar="SHARE",
         help="share of each batch that are melody pairs: a generated tune and the same tune "
              "with slips (wrong, octave-off, left-out or added notes), key-normalised")
    _opt(p, "device", default="auto", help="auto (CUDA when present), cpu, cuda")
    p.add_argument("--out", "--save_dir", dest="out", default=d.out_dir,
                   help="run folder (checkpoints, model.safetensors + model.json + model.onnx)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="Recall@1/@10, MRR@10, nDCG@10 on a db/query/GT set")
    _opt(p, "db-path", required=True, help="folder of library files")
    _opt(p, "query-path", required=True, help="folder of query files")
    _opt(p, "gt-file-path", required=True, help="CSV with columns query,gt (file names)")
    _opt(p, "checkpoint-path", help="model .pt (default: the bundled model)")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--aggregate", choices=("vote", "sum"), default="vote")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_eval)
