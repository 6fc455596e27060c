"""Audio routes: the bundled audio branch run with onnxruntime (no torch), a rendered demo
piece found by the embedding route alone, ``--audio-route`` in the JSON, and the same
messages for bad recordings by every route.

Audio is rendered with a real SoundFont from /usr/share/sounds/sf2 (or pretty_midi's
TimGM6mb) and written with libsndfile; the library is real demo scores indexed here.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from midizero_app.audio.branch.runtime import OnnxAudioBranch, audio_branch_path
from midizero_app.core.bundled import demo_dir
from midizero_app.core.model_files import ModelError

from .test_cli import ROOT, midizero

pytest.importorskip("tinysoundfont")
SR = 22050
PIECES = ("Bach - Prelude in C, BWV 846.mxl", "Mozart - Sonata K.545 (I, exposition).mxl",
          "Joplin - Maple Leaf Rag.mxl", "Bach - Chorale BWV 7.7.mxl")
ROUTES = ("transcribe", "embed", "both")


def _soundfont() -> Path:
    for p in sorted(Path("/usr/share/sounds/sf2").glob("*.sf2")):
        if "GM" in p.name:
            return p
    from midizero_app.audio.synth import AudioUnavailable, default_soundfont

    try:
        return default_soundfont()
    except AudioUnavailable as exc:
        pytest.skip(f"no SoundFont to render with ({exc})")


@pytest.fixture(scope="module")
def demo_lib(tmp_path_factory, bundled_model) -> Path:
    """Four demo scores indexed into a fresh library."""
    from midizero_app.core.library import Library

    folder = tmp_path_factory.mktemp("routes") / "lib"
    with Library(folder) as lib:
        lib.add([demo_dir() / "scores" / name for name in PIECES], workers=1)
    return folder


@pytest.fixture(scope="module")
def recording(demo_lib, tmp_path_factory) -> Path:
    """15 s of the Mozart sonata from 6 s in, rendered through a real SoundFont, with a
    little noise, as a WAV file."""
    import soundfile as sf

    from midizero_app.audio.synth import frames_to_notes, render
    from midizero_app.core.library import Library

    with Library(demo_lib) as lib:
        pid = next(p["id"] for p in lib.pieces() if "Mozart" in p["path"])
        notes = frames_to_notes(lib.frames_of(pid))
    notes = notes[(notes[:, 0] >= 6.0) & (notes[:, 0] < 21.0)]
    notes[:, :2] -= 6.0
    y = render(notes, SR, _soundfont())[:, 0]
    y = y + np.random.default_rng(0).normal(0, 0.01 * np.std(y), len(y)).astype(np.float32)
    path = tmp_path_factory.mktemp("rec") / "mozart.wav"
    sf.write(str(path), y, SR, subtype="PCM_16")
    return path


def test_bundled_branch_is_an_onnx_export_with_its_card():
    path = audio_branch_path()
    assert path.suffix == ".onnx" and path.is_file()
    assert path.stat().st_size <= 10 * 2**20
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["audio_arch"]["kind"] == "teacher" and card["calibration"]["thresholds"]
    branch = OnnxAudioBranch(path)
    x = np.abs(np.random.default_rng(0).normal(0.5, 0.5, (3, branch.frames, 92)))
    e = branch.embed(x.astype(np.float32))
    assert e.shape == (3, 128) and np.allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-4)


def test_a_damaged_or_foreign_export_is_refused_in_one_line(tmp_path):
    onnx = tmp_path / "b.onnx"
    onnx.write_bytes(audio_branch_path().read_bytes()[:-100])
    card = json.loads(audio_branch_path().with_suffix(".json").read_text())
    (tmp_path / "b.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="damaged or was replaced"):
        OnnxAudioBranch(onnx)
    (tmp_path / "b.json").write_text(json.dumps({**card, "audio_arch": {"kind": "x"}}))
    with pytest.raises(ModelError, match="audio_arch kind"):
        OnnxAudioBranch(onnx)
    with pytest.raises(ModelError, match="not found"):
        OnnxAudioBranch(tmp_path / "missing.onnx")


def test_onnx_branch_matches_torch(tmp_path):
    """A fresh model's export, run by the app's torch-free class, computes what torch does
    within 1e-4; so does the bundled export against its weights where they are kept."""
    torch = pytest.importorskip("torch")
    from midizero_app.audio.branch.model import audio_arch, build, export_onnx, load, save

    torch.manual_seed(0)
    model = build(audio_arch("teacher", mapping="onsets")).eval()
    w = tmp_path / "m.safetensors"
    export_onnx(model, w, save(model, w, {"name": "m"}))
    x = np.abs(np.random.default_rng(1).normal(0.5, 0.5, (5, 42, 92))).astype(np.float32)
    with torch.inference_mode():
        want = model(torch.from_numpy(x)).numpy()
    assert np.allclose(OnnxAudioBranch(w.with_suffix(".onnx")).embed(x), want, atol=1e-4)
    kept = ROOT / "benchmarks" / ".cache" / "audio-branch-models" / "teacher-onsets-3.safetensors"
    if kept.is_file():
        bundled, _ = load(kept)
        with torch.inference_mode():
            want = bundled(torch.from_numpy(x)).numpy()
        assert np.allclose(OnnxAudioBranch().embed(x), want, atol=1e-4)


def test_embedding_route_finds_a_rendered_demo_piece_without_torch(demo_lib, recording):
    """The embedding route alone, in a fresh process: the right piece first, not flagged,
    at the right place, and torch never imported."""
    code = f"""
import json, sys
import soundfile as sf
from midizero_app.audio.routes import read_samples, search_audio
from midizero_app.core.library import Library
y, sr = sf.read({str(recording)!r}, dtype="float32")
q = read_samples(y, sr, "embed")
with Library({str(demo_lib)!r}) as lib:
    res = search_audio(lib, q, "embed", top=3)
print(json.dumps({{"res": res, "torch": "torch" in sys.modules}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=str(ROOT), timeout=300)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.splitlines()[-1])
    res = got["res"]
    assert not got["torch"]
    assert res["audio_route"] == "embed" and res["results"], res
    top = res["results"][0]
    assert "Mozart" in top["path"] and not res["not_in_library"], res
    assert abs(top["positions"][0]["seconds"] - 6.0) <= 3.0, top


def test_every_route_reaches_the_json_and_bad_audio_reads_the_same(demo_lib, recording,
                                                                   tmp_path):
    """``search --audio-route R --json``: the route in every object, the piece found; a
    silent, a corrupt and an over-long recording give the same message by every route."""
    import soundfile as sf

    silent = tmp_path / "silent.wav"
    sf.write(str(silent), np.zeros(SR * 2, np.float32), SR)
    broken = tmp_path / "broken.mp3"
    broken.write_bytes(b"ID3" + bytes(200))
    long_ = tmp_path / "long.wav"  # 5,500 samples at 1 Hz: 92 minutes by its header
    sf.write(str(long_), np.zeros(5500, np.float32), 1, subtype="PCM_16")
    errors = {}
    for route in ROUTES:
        out = midizero("search", recording, silent, broken, long_, "--library", demo_lib,
                       "--json", "--top", "3", "--audio-route", route)
        lines = [json.loads(line) for line in out.stdout.splitlines()]
        assert [r["audio_route"] for r in lines] == [route] * 4, out.stderr
        assert "Mozart" in lines[0]["results"][0]["path"], (route, lines[0])
        assert not lines[0]["not_in_library"], (route, lines[0])
        errors[route] = [r["error"] for r in lines[1:]]
        assert out.returncode == 0
    assert errors["transcribe"] == errors["embed"] == errors["both"], errors
    silent_e, broken_e, long_e = errors["embed"]
    assert silent_e == "no notes heard (silence, or too quiet)"
    assert "not a readable audio file" in broken_e
    assert "too long" in long_e
    both = json.loads(midizero("search", recording, "--library", demo_lib, "--json",
                               "--audio-route", "both").stdout)
    assert set(both["routes"]) == {"transcribe", "embed"}


def test_an_unknown_route_is_a_usage_error(demo_lib, recording):
    out = midizero("search", recording, "--library", demo_lib, "--audio-route", "chroma")
    assert out.returncode == 2 and "invalid choice" in out.stderr


def test_the_app_keeps_the_route_setting(qtbot_or_skip, tmp_path, bundled_model, monkeypatch):
    """The status bar's route box starts at the default, and a choice is remembered by the
    next window (the settings file)."""
    from PySide6.QtCore import QSettings

    from midizero_app.audio.routes import DEFAULT_ROUTE
    from midizero_app.gui.app import MainWindow

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    ini = str(tmp_path / "settings.ini")

    def window():
        w = MainWindow(settings=QSettings(ini, QSettings.IniFormat),
                       library_dir=str(tmp_path / "lib"), first_run_demo=False)
        qtbot_or_skip.addWidget(w)
        return w

    w = window()
    assert w.audio_route == DEFAULT_ROUTE
    w.route_combo.setCurrentIndex(w.route_combo.findData("embed"))
    w.settings.sync()
    w.close()
    assert window().audio_route == "embed"


@pytest.fixture
def qtbot_or_skip(request):
    import os

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    pytest.importorskip("PySide6")
    pytest.importorskip("pytestqt")
    return request.getfixturevalue("qtbot")


def test_match_recordings_by_the_embedding_route(demo_lib, recording, tmp_path):
    import shutil

    import soundfile as sf

    folder = tmp_path / "recs"
    folder.mkdir()
    shutil.copy(recording, folder / "take.wav")
    sf.write(str(folder / "quiet.wav"), np.zeros(SR, np.float32), SR)
    out = midizero("match-recordings", folder, "--library", demo_lib, "--json",
                   "--audio-route", "embed")
    rows = {Path(r["recording"]).name: r for r in map(json.loads, out.stdout.splitlines())}
    assert "Mozart" in rows["take.wav"]["path"] and rows["take.wav"]["audio_route"] == "embed"
    assert rows["quiet.wav"]["error"] == "no notes heard (silence, or too quiet)"
    assert out.returncode == 0, out.stderr


def test_a_recording_in_the_library_is_found_by_every_route(recording, tmp_path,
                                                            bundled_model):
    """A recording indexed into the library (transcribed once, as always) is what an audio
    query by any route finds when its score is not there."""
    import shutil

    import soundfile as sf

    from midizero_app.core.library import Library

    rec = tmp_path / "Recordings"
    rec.mkdir()
    shutil.copy(recording, rec / "mozart take.wav")
    lib = tmp_path / "lib"
    with Library(lib) as library:
        library.add([rec / "mozart take.wav",
                     demo_dir() / "scores" / PIECES[0], demo_dir() / "scores" / PIECES[2]],
                    workers=1)
    y, sr = sf.read(str(recording), dtype="float32")
    part = tmp_path / "part.flac"
    sf.write(str(part), y[int(3 * sr):int(13 * sr)], sr)
    for route in ROUTES:
        res = json.loads(midizero("search", part, "--library", lib, "--json", "--top", "2",
                                  "--audio-route", route).stdout)
        top = res["results"][0]
        assert top["kind"] == "recording" and top["path"].endswith("mozart take.wav"), \
            (route, res)
        assert abs(top["positions"][0]["seconds"] - 3.0) <= 2.5, (route, top)


def test_microphone_by_the_embedding_route(demo_lib, recording, tmp_path):
    """A real sounddevice input (ALSA's file capture device playing the rendered recording)
    searched by the embedding route: its recent audio identified, one JSON line an answer."""
    import ctypes.util
    import os

    import soundfile as sf

    from midizero_app.audio.decode import resample

    from .test_audio import ASOUNDRC

    if ctypes.util.find_library("portaudio") is None:
        pytest.skip("PortAudio missing (apt-get install libportaudio2)")
    y, sr = sf.read(str(recording), dtype="float32")
    y = np.concatenate([resample(y, sr, 44100), np.zeros(44100 * 2, np.float32)])
    home = tmp_path / "home"
    home.mkdir()
    raw = tmp_path / "mic.raw"
    raw.write_bytes(np.asarray(y, "<f4").tobytes())
    (home / ".asoundrc").write_text(ASOUNDRC.format(raw=raw))
    env = dict(os.environ, HOME=str(home), JACK_NO_START_SERVER="1")
    code = f"""
import argparse, sys
from midizero_app.cli.audio import listen_mic
args = argparse.Namespace(device="fromfile", duration=15.0, audio_route="embed", json=True,
                          top=3, library={str(demo_lib)!r})
sys.exit(listen_mic(args, None))
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=str(ROOT), env=env,
                         capture_output=True, text=True, timeout=300)
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert out.returncode == 0, out.stderr
    assert lines and all(r["audio_route"] == "embed" for r in lines)
    assert "Mozart" in lines[-1]["results"][0]["path"] and not lines[-1]["not_in_library"]
