"""Finding the files a library indexes under folders (recursive, sorted)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from .sources import all_suffixes


def scan_paths(paths: Iterable[str | Path]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Readable files under files and folders, and the places that could not be read.

    Returns ``(files, problems)``: absolute paths of every file some source reads (hidden
    files skipped), sorted within each folder; and ``(path, reason)`` pairs for missing or
    unreadable folders, broken links, link loops and special files (a FIFO named like a
    score would block a read forever).
    """
    suffixes = all_suffixes()
    files: list[Path] = []
    problems: list[tuple[str, str]] = []
    for root in paths:
        root = Path(root).expanduser()
        if root.is_file():
            files.append(root.resolve())
            continue
        if root.exists() and not root.is_dir():
            problems.append((str(root), "not a regular file or folder"))
            continue
        if not root.exists():
            problems.append((str(root), "no such file or folder"))
            continue
        if not os.access(root, os.R_OK | os.X_OK):
            problems.append((str(root), "folder not readable (permission denied)"))
            continue

        def onerror(err: OSError, _root=root):
            problems.append((err.filename or str(_root), f"folder not readable ({err.strerror})"))

        for dirpath, dirnames, filenames in os.walk(root, onerror=onerror):
            dirnames.sort()
            for name in sorted(filenames):
                if not name.lower().endswith(suffixes) or name.startswith("."):
                    continue
                path = Path(dirpath) / name
                try:
                    regular = path.is_file()
                except OSError:  # a link loop: "too many levels of symbolic links"
                    regular = False
                if regular:
                    files.append(path.resolve())
                elif path.is_symlink():
                    problems.append((str(path), "a broken link or a link loop"))
                else:
                    problems.append((str(path), "not a regular file (a pipe or device)"))
    return files, problems

