"""Packaging and first-run experience: the spec's inputs, the README's commands, the
torch-free inference the bundle relies on, the demo's parsed cache, and the smoke test of the
app — from this venv always, and of the built bundle when there is one.

The bundle smoke test is marked slow and skips unless ``dist/MIDI-Zero/MIDI-Zero`` exists:
CI (``.ci/run``) does not build the bundle (a PyInstaller build takes minutes and a second,
1.5 GB venv). Run it after ``packaging/build.sh``: ``packaging/build.sh --smoke``, or
``.venv/bin/python -m pytest -m slow tests/test_packaging.py``.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / "dist" / "MIDI-Zero" / "MIDI-Zero"
ONNX_BUNDLE = ROOT / "dist" / "MIDI-Zero-onnx" / "MIDI-Zero-onnx"
sys.path.insert(0, str(ROOT / "packaging"))


def test_spec_data_files_exist():
    spec = (ROOT / "packaging" / "midizero.spec").read_text()
    entries = re.findall(r'\(str\(ROOT((?: / "[^"]+")+)\), "([^"]+)"\)', spec)
    assert len(entries) >= 6, entries
    for parts, _dest in entries:
        path = ROOT.joinpath(*re.findall(r'"([^"]+)"', parts))
        assert path.exists(), f"the spec bundles {path}, which is missing"
    for name in ("Beethoven - Ode to Joy.mid",):
        assert (ROOT / "resources" / "demo" / "scores" / name).is_file()
    assert (ROOT / "packaging" / "midizero_entry.py").is_file()
    # the SoundFont the synth plays (the spec collects it from pretty_midi)
    import importlib.util

    where = importlib.util.find_spec("pretty_midi").submodule_search_locations
    assert (Path(list(where)[0]) / "TimGM6mb.sf2").is_file()
    assert "HNSWLIB_NO_NATIVE=1" in (ROOT / "packaging" / "build.sh").read_text()


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Two commands on a fresh machine", 1)[1].split("\n## ", 1)[0]
    return [b.strip() for b in re.findall(r"```sh\n(.*?)```", section, re.S)][:2]


def test_readme_two_commands_are_what_ci_and_a_fresh_setup_run():
    app_cmd, test_cmd = _readme_commands()
    ci = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines()
          if ln.strip() and not ln.lstrip().startswith("#")]
    assert ci[-1] == test_cmd, "the README's test command must be exactly .ci/run's"
    assert app_cmd.startswith("./scripts/setup.sh && ") and test_cmd.startswith("./scripts/setup.sh && ")
    assert app_cmd.split("&& ", 1)[1] in (".venv/bin/midizero-app", ".venv/bin/python -m midizero_app")
    assert (ROOT / "scripts" / "setup.sh").stat().st_mode & 0o111


def test_search_path_never_imports_torch(tmp_path):
    """Identify and index run through onnxruntime: the ONNX-only bundle has no torch, and the
    app's event loop would stall for seconds while torch loads."""
    code = f"""
import sys
from midizero_app.core.library import Library
from midizero_app.core.parsing import parse_one
from midizero_app.core.bundled import demo_dir
from midizero_app.live.session import LiveSession
if __name__ == "__main__":
    lib = Library({str(tmp_path / 'lib')!r})
    lib.add([demo_dir() / "scores"])
    r = lib.search(parse_one(demo_dir() / "queries" / "played - ode to joy.mid"), top=3)
    assert r["results"][0]["title"] == "Ode to Joy", r["results"][0]
    assert lib.embedder.runtime == "onnxruntime"
    assert "torch" not in sys.modules, "torch was imported"
    print("ok")
"""
    script = tmp_path / "probe.py"
    script.write_text(code)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         cwd=str(ROOT), timeout=600)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-2000:]


def test_torch_free_model_id_and_embeddings_match_torch(bundled_model):
    from midizero_app.core.encoder import Embedder, load_checkpoint, model_id_of
    from midizero_app.core.inference import (OnnxEmbedder, load_embedder, model_id_of_arrays,
                                             read_state_dict)

    state = read_state_dict(bundled_model)
    model, card = load_checkpoint(bundled_model)
    assert model_id_of_arrays(state) == model_id_of(model.state_dict()) == card["model_id"]
    fast = load_embedder(bundled_model)
    assert isinstance(fast, OnnxEmbedder) and fast.model_id == card["model_id"]
    x = (np.random.default_rng(0).random((50, 10, 88)) < 0.06).astype(np.uint8)
    np.testing.assert_allclose(fast.embed(x), Embedder(bundled_model, runtime="torch").embed(x),
                               atol=1e-5)
    assert fast.card["calibration"] == card["calibration"]


def test_a_checkpoint_whose_onnx_is_stale_falls_back_to_torch(tmp_path, bundled_model):
    import json
    import shutil

    import torch

    from midizero_app.core.inference import OnnxEmbedder, load_embedder

    for ext in (".json", ".onnx"):
        shutil.copy(bundled_model.with_suffix(ext), tmp_path / f"m{ext}")
    from midizero_app.core.encoder import load_checkpoint

    sd = load_checkpoint(bundled_model)[0].state_dict()
    sd["head.bias"] = sd["head.bias"] + 0.01  # other weights, same (now stale) ONNX export
    torch.save(sd, tmp_path / "m.pt")
    emb = load_embedder(tmp_path / "m.pt")
    assert not isinstance(emb, OnnxEmbedder) and emb.runtime == "torch"
    assert emb.model_id != json.loads((tmp_path / "m.json").read_text())["model_id"]


def test_demo_parsed_cache_equals_a_fresh_parse(monkeypatch):
    from midizero_app.core import parsing

    scores = sorted((ROOT / "resources" / "demo" / "scores").iterdir())
    cached = {str(p): parsing.cached_notes(p) for p in scores}
    assert all(n is not None for n in cached.values()), "run packaging/make_parsed_cache.py"
    monkeypatch.setattr(parsing, "_PARSED_INDEX", {})  # no cache: real parser processes
    for r in parsing.parse_files(scores, workers=2):
        c = cached[r.path]
        assert r.notes is not None, r.error
        for key, value in r.notes.to_arrays().items():
            other = c.to_arrays()[key]
            if isinstance(value, np.ndarray):
                np.testing.assert_array_equal(value, other, err_msg=f"{r.path}: {key}")
            else:
                assert value == other, f"{Path(r.path).name}: {key} differs; re-run " \
                                       "packaging/make_parsed_cache.py"


def test_run_isolated_returns_results_and_errors():
    from midizero_app.core.isolated import run_isolated

    assert run_isolated("math:sqrt", 16.0) == 4.0
    with pytest.raises(ValueError):
        run_isolated("math:sqrt", -1.0)


@pytest.mark.slow
def test_app_smoke_test_from_the_venv():
    """`midizero-app --smoke-test`: first run (demo indexed), a demo query replayed in real
    time through the live path, the right piece first."""
    from smoke_test import run_smoke

    r = run_smoke("venv", "played - ode to joy.mid", timeout=240)
    assert r["ok"], r
    assert r["shown_s"] < r["ready_s"]


@pytest.mark.slow
@pytest.mark.skipif(not BUNDLE.is_file(),
                    reason="no built bundle (dist/MIDI-Zero): run packaging/build.sh first")
def test_built_bundle_smoke_test():
    """The built app identifies a replayed demo query, and its Training tab trains (torch in
    a spawned process of the frozen executable) and exports ONNX."""
    from smoke_test import run_smoke, run_train_smoke

    r = run_smoke(BUNDLE, "played - ode to joy.mid", timeout=300)
    assert r["ok"], r
    t = run_train_smoke(BUNDLE)
    assert t["ok"], t


@pytest.mark.slow
@pytest.mark.skipif(not ONNX_BUNDLE.is_file(),
                    reason="no ONNX-only bundle (dist/MIDI-Zero-onnx): packaging/build.sh --onnx")
def test_onnx_only_bundle_identifies_and_says_training_needs_the_full_build():
    from smoke_test import run_smoke, run_train_smoke

    r = run_smoke(ONNX_BUNDLE, "played - mozart.mid", timeout=300)
    assert r["ok"], r
    t = run_train_smoke(ONNX_BUNDLE)
    assert not t["ok"] and "full build" in (t.get("info") or ""), t
