"""Content hashes: one hasher for every file the software fingerprints.

BLAKE2b with a 16-byte digest (32 hex characters): fast on CPUs without SHA extensions and
far from collisions at library sizes. Used for score files (a renamed or touched file with
the same content is not parsed again), recordings (their cached notes), index files (a file
that does not match its record is rebuilt, never loaded) and model weights (the model id).
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterable

CHUNK = 1 << 20


def new_hasher():
    """A fresh hasher object (``update(bytes)``, ``hexdigest()``)."""
    return hashlib.blake2b(digest_size=16)


def bytes_hash(data: bytes | Iterable[bytes]) -> str:
    """Hex digest of bytes (or of several byte strings, in order)."""
    h = new_hasher()
    if isinstance(data, (bytes, bytearray, memoryview)):
        h.update(data)
    else:
        for part in data:
            h.update(part)
    return h.hexdigest()


def file_hash(path: str | Path) -> str:
    """Hex digest of a file's content, read in 1 MiB chunks (flat memory for any size)."""
    h = new_hasher()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()
