"""Content hashes: one hasher for every file the software fingerprints.

BLAKE2b with a 16-byte digest (32 hex characters): fast on CPUs without SHA extensions and
far from collisions at library sizes. Used for score files (a renamed or touched file with
the same content is not parsed again), recordings (their cached notes), index files (a file
that does not match its record is rebuilt, never loaded) and model weights (the model id).
"""
from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
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


SPLIT_PREFIX = "split2-"
"""Marks a :func:`split_file_hash` digest (a plain :func:`file_hash` has no prefix)."""


def split_file_hash(path: str | Path, parts: int = 2) -> str:
    """Hex digest of a file hashed as ``parts`` equal byte ranges at once, one thread each
    (hashlib releases the GIL while it hashes), then combined: BLAKE2b of the file's size
    and the ranges' digests, prefixed :data:`SPLIT_PREFIX`.

    For index files of gigabytes, whose check is most of the time a library takes to open:
    on two cores it takes about half the time of :func:`file_hash`, and any changed byte
    still changes it."""
    size = os.path.getsize(path)
    bounds = [size * i // parts for i in range(parts + 1)]

    def part(i: int) -> bytes:
        h = new_hasher()
        with open(path, "rb") as f:
            f.seek(bounds[i])
            left = bounds[i + 1] - bounds[i]
            while left > 0:
                chunk = f.read(min(CHUNK, left))
                if not chunk:
                    break  # the file shrank while read: the digest will not match
                h.update(chunk)
                left -= len(chunk)
        return h.digest()

    with ThreadPoolExecutor(parts) as pool:
        digests = list(pool.map(part, range(parts)))
    return SPLIT_PREFIX + bytes_hash([size.to_bytes(8, "little"), *digests])


def checksum_matches(path: str | Path, checksum: str) -> bool:
    """Whether ``path``'s content has ``checksum``, a :func:`split_file_hash` digest or a
    plain :func:`file_hash` one (as recorded before split hashing)."""
    if checksum.startswith(SPLIT_PREFIX):
        return split_file_hash(path) == checksum
    return file_hash(path) == checksum
