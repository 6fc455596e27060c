"""Shared fixtures: real MIDI/MusicXML files written with pretty_midi and music21."""
from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import numpy as np
import pretty_midi
import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("MIDIZERO_PROGRESS", "0")


def start_jack_dummy(name: str, period: int, rate: int = 48000) -> subprocess.Popen | None:
    """A non-real-time JACK dummy server called ``name``, once ``jack_wait`` sees it, else
    None. Its 5 s client timeout keeps a loaded 2-core machine from dropping clients."""
    server = subprocess.Popen(["jackd", "--no-realtime", "-t", "5000", "-n", name, "-d",
                               "dummy", "-r", str(rate), "-p", str(period)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    up = subprocess.run(["jack_wait", "-w", "-t", "30", "-s", name], capture_output=True)
    if up.returncode != 0 or server.poll() is not None:
        stop_server(server)
        return None
    return server


def stop_server(proc: subprocess.Popen) -> None:
    """Stop a server process: SIGINT (JACK shuts down cleanly), killed after 10 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def write_midi(path: Path, notes: list[tuple[float, int, float]], program: int = 0,
               drums: bool = False, resolution: int = 480, tempo: float = 120.0) -> Path:
    """Write (onset s, pitch, duration s) notes as a one-track MIDI file."""
    pm = pretty_midi.PrettyMIDI(resolution=resolution, initial_tempo=tempo)
    inst = pretty_midi.Instrument(program=program, is_drum=drums)
    for on, pitch, dur in notes:
        inst.notes.append(pretty_midi.Note(velocity=80, pitch=int(pitch), start=float(on),
                                           end=float(on) + float(dur)))
    pm.instruments.append(inst)
    pm.write(str(path))
    return path


def random_piece(seed: int, n_frames: int = 160, step: float = 0.25) -> list[tuple[float, int, float]]:
    """A seeded random-walk melody over changing chords: music-like, distinct per seed."""
    rng = np.random.default_rng(seed)
    notes, mel = [], 60 + int(rng.integers(-5, 6))
    for i in range(n_frames):
        t = i * step
        mel = int(np.clip(mel + rng.choice([-4, -2, -1, 1, 2, 3, 5]), 50, 84))
        notes.append((t, mel, step))
        if i % 2 == 0:
            root = 36 + int(rng.integers(0, 12))
            shapes = ([0, 7], [0, 4, 7], [0, 3, 7], [0, 12])
            for iv in shapes[int(rng.integers(len(shapes)))]:
                notes.append((t, root + int(iv), 2 * step))
    return notes


@pytest.fixture(scope="session")
def bundled_model() -> Path:
    from midizero_app.core.encoder import default_model_path

    path = default_model_path()
    if not path.is_file():
        pytest.skip(f"bundled model {path} missing")
    return path


@pytest.fixture(scope="session")
def asap() -> Path:
    p = Path(os.environ.get("MIDIZERO_ASAP", ROOT.parent / "shared" / "data" / "asap"))
    if not (p / "metadata.csv").is_file():
        pytest.skip("ASAP benchmark data not present (../shared/data/asap or $MIDIZERO_ASAP)")
    return p


@pytest.fixture(scope="session")
def mini_scores(tmp_path_factory) -> Path:
    """A folder of 12 distinct MIDI pieces plus 3 real music21-corpus scores (MusicXML)."""
    import music21

    d = tmp_path_factory.mktemp("scores")
    for s in range(12):
        write_midi(d / f"piece_{s:02d}.mid", random_piece(s))
    for name in ("bach/bwv66.6", "bach/bwv7.7", "schumann_robert/opus41no1/movement2"):
        src = Path(str(music21.corpus.getWork(name)))
        (d / f"{name.replace('/', '_')}{src.suffix}").write_bytes(src.read_bytes())
    return d
