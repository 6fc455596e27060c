"""The codebase's shape, checked by standard tools: the import-linter layer contracts in
pyproject.toml (cli | gui over draw | live | audio over core, no cycles), ruff's small rule
set, and a core that loads no Qt, audio device or MIDI device library."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_PATHS = ("midizero_app", "tests", "benchmarks", "scripts", "packaging")
# What core must never load: the GUI toolkit, the audio and MIDI device libraries, and the
# layers above it.
NOT_IN_CORE = ("PySide6", "pyqtgraph", "sounddevice", "rtmidi", "soundfile",
               "midizero_app.audio", "midizero_app.live", "midizero_app.gui",
               "midizero_app.cli", "midizero_app.draw")


def tool(name: str, module: str) -> str:
    """The venv's console script ``name`` (installed with the ``test`` extra)."""
    pytest.importorskip(module, reason=f"{name} not installed (pip install -e .[test])")
    exe = Path(sys.executable).with_name(name)
    found = str(exe) if exe.is_file() else shutil.which(name)
    assert found, f"{name} is importable but its command is not on PATH"
    return found


def test_import_contracts_hold():
    """``lint-imports`` keeps every contract of pyproject.toml (and fails on an upward
    import, e.g. core importing audio)."""
    out = subprocess.run([tool("lint-imports", "importlinter"), "--no-cache"], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]
    assert "0 broken" in out.stdout and " kept" in out.stdout, out.stdout[-2000:]


def test_ruff_finds_nothing():
    out = subprocess.run([tool("ruff", "ruff"), "check", "--output-format", "concise",
                          *LINT_PATHS], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]


def test_importing_core_loads_no_gui_audio_or_device_module():
    """Every module of midizero_app.core (the library, query, search, parsing, training,
    ...) imported in a fresh interpreter: none of them loads Qt, sounddevice, rtmidi,
    soundfile or a module of the layers above core."""
    code = """
import importlib, json, pkgutil, sys
import midizero_app.core as core
names = ["midizero_app.core"]
for info in pkgutil.walk_packages(core.__path__, "midizero_app.core."):
    importlib.import_module(info.name)
    names.append(info.name)
print(json.dumps({"imported": names, "loaded": sorted(sys.modules)}))
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert {"midizero_app.core.library", "midizero_app.core.search",
            "midizero_app.core.query"} <= set(report["imported"])
    bad = [m for m in report["loaded"]
           if any(m == name or m.startswith(name + ".") for name in NOT_IN_CORE)]
    assert not bad, bad
