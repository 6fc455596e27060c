"""Files that ship with the software, found in one place.

The models (``models/``) and the demo library (``resources/demo``) live beside the package
in a source checkout (``<repo>/models``) and in a PyInstaller bundle's data folder
(``_internal/models``, next to ``_internal/midizero_app``). Every lookup of a shipped file
goes through :func:`bundled_path`, so there is one rule for where they are.
"""
from __future__ import annotations

import os
from pathlib import Path

from .errors import MidizeroError

_PACKAGE_DIR = Path(__file__).resolve().parents[1]  # midizero_app/
_ROOTS = (_PACKAGE_DIR.parent, _PACKAGE_DIR)  # source tree / bundle data dir; package data


class MissingBundledFile(MidizeroError):
    """A file that ships with the software is missing (a broken installation)."""


def bundled_path(*parts: str, must_exist: bool = True) -> Path:
    """The shipped file or folder ``parts`` (e.g. ``"models", "default.safetensors"``).

    Raises :class:`MissingBundledFile` if it is nowhere (``must_exist=False`` returns the
    source-tree location instead)."""
    for root in _ROOTS:
        p = root.joinpath(*parts)
        if p.exists():
            return p
    if must_exist:
        raise MissingBundledFile(f"{'/'.join(parts)} is missing from this installation; "
                                 "reinstall MIDI-Zero")
    return _ROOTS[0].joinpath(*parts)


def model_file(name: str, env: str | None = None) -> Path:
    """A bundled model file, unless the environment variable ``env`` names another."""
    if env and os.environ.get(env):
        return Path(os.environ[env])
    return bundled_path("models", name, must_exist=False)


def demo_dir() -> Path:
    """The demo library: ``scores/`` (the pieces), ``queries/`` (played excerpts) and
    ``parsed/`` (their notes, parsed in advance)."""
    d = bundled_path("resources", "demo", must_exist=False)
    if not (d / "scores").is_dir():
        raise MissingBundledFile("the demo files (resources/demo) are missing from this "
                                 "installation; reinstall MIDI-Zero")
    return d
