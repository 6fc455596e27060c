"""Atomic, checked file writes: a file is either its old self or its complete new self.

Every file the software writes (index files, models and checkpoints, exported MIDI, cached
notes, settings it owns) goes through :func:`atomic_write` or :func:`write_bytes`:

1. a temporary file is created *exclusively* in the target's folder (``O_EXCL`` with a
   random name, so a link planted at a predictable ``<name>.tmp`` is never followed and two
   writers never share one);
2. the content is written, flushed and ``fsync``\\ ed;
3. its size (and, when the caller knows it, its checksum) is read back and checked — a full
   disk can make a writer that ignores ``write``'s return value (hnswlib's ``save_index``)
   leave a short or empty file without an error;
4. it is renamed over the target (atomic on POSIX and Windows) and the folder is fsynced.

A failure at any step removes the temporary file, leaves the target as it was and raises
:class:`~midizero_app.core.errors.WriteFailed` with one line for the user (a full disk
says so, and that nothing was changed).
"""
from __future__ import annotations

import errno
import os
import secrets
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from .errors import WriteFailed, is_disk_full
from .hashing import file_hash


def write_failed(exc: BaseException, target: str | Path) -> WriteFailed:
    """The one-line error for a failed write of ``target``."""
    if is_disk_full(exc):
        return WriteFailed(f"the disk is full: nothing was changed in {Path(target).name}; "
                           "free some space and try again", getattr(exc, "errno", None))
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return WriteFailed(f"could not write {Path(target).name} ({reason}): nothing was changed",
                       getattr(exc, "errno", None))


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # Windows cannot open folders; its rename is durable enough
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _mode_for(target: Path) -> int:
    try:
        return os.stat(target).st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def temp_path_for(target: str | Path) -> Path:
    """Create (exclusively; readable only by its owner until it has the target's mode) and return an empty temporary file beside ``target``.

    The name is ``.<target name>.<random>.tmp``: hidden, unique, and never an existing path
    (``O_EXCL | O_NOFOLLOW``), so a planted file or link there is never written through.
    """
    target = Path(target)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | \
        getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(tmp, flags, 0o600)
        except FileExistsError:
            continue
        try:  # the mode the target has, or a new file's usual mode (0666 less the umask)
            os.fchmod(fd, _mode_for(target))
        except (OSError, AttributeError):
            pass  # Windows has no fchmod; its files have no such mode bits
        finally:
            os.close(fd)
        return tmp
    raise WriteFailed(f"could not create a temporary file beside {target.name}")


@contextmanager
def atomic_write(target: str | Path, verify: Callable[[Path], None] | None = None,
                 expected_size: int | None = None) -> Iterator[Path]:
    """Yield a fresh, empty temporary path beside ``target``; on a clean exit, check it and
    rename it over ``target``.

    For writers that take a path (``hnswlib.Index.save_index``, ``onnx.save``,
    ``np.savez``, ``PrettyMIDI.write``): they must leave a non-empty file. ``verify``, if
    given, is called with the finished temporary file before the rename and raises if its
    content is wrong (e.g. a checksum or a test load); ``expected_size`` (bytes), if given,
    is the size the file must have. Raises :class:`WriteFailed` with ``target`` untouched.
    """
    target = Path(target)
    tmp = temp_path_for(target)
    try:
        yield tmp
        _finish(tmp, target, expected_size=expected_size, verify=verify)
    except WriteFailed:
        _discard(tmp)
        raise
    except OSError as exc:
        _discard(tmp)
        raise write_failed(exc, target) from exc
    except Exception as exc:
        # Writers in C++ (torch.save, hnswlib, onnx) report a full disk in their own words
        # ("file write failed"); with the temporary file still there, a disk left with
        # almost nothing free names the cause.
        full = _nearly_full(target.parent)
        _discard(tmp)
        if full:
            raise write_failed(OSError(errno.ENOSPC, "No space left on device"), target) \
                from exc
        raise
    except BaseException:
        _discard(tmp)
        raise


def write_bytes(target: str | Path, data: bytes) -> None:
    """Write ``data`` to ``target`` atomically (see the module docstring)."""
    with atomic_write(target, expected_size=len(data)) as tmp:
        fd = os.open(tmp, os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0))
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)


def write_text(target: str | Path, text: str) -> None:
    """Write UTF-8 text to ``target`` atomically."""
    write_bytes(target, text.encode("utf-8"))


def _finish(tmp: Path, target: Path, expected_size: int | None,
            verify: Callable[[Path], None] | None = None) -> None:
    """fsync, check the size (and ``verify``), rename over ``target``, fsync the folder."""
    if os.path.islink(tmp) or not os.path.isfile(tmp):
        raise WriteFailed(f"could not write {target.name}: the temporary file was replaced")
    fd = os.open(tmp, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0))
    try:
        os.fsync(fd)
        size = os.fstat(fd).st_size
    finally:
        os.close(fd)
    if expected_size is not None and size != expected_size or expected_size is None and \
            size == 0:
        # A writer that ignores short writes (a full disk) leaves a short or empty file.
        raise WriteFailed(f"the disk is full (or failing): {target.name} was not written "
                          "completely, nothing was changed; free some space and try again")
    if verify is not None:
        verify(tmp)
    os.replace(tmp, target)
    _fsync_dir(target.parent)


def _nearly_full(folder: Path, margin: int = 1 << 20) -> bool:
    """Whether the filesystem holding ``folder`` has less than ``margin`` bytes free."""
    try:
        return shutil.disk_usage(folder).free < margin
    except OSError:
        return False


def _discard(tmp: Path) -> None:
    try:
        os.unlink(tmp)
    except OSError:
        pass


def verified_hash(path: str | Path) -> str:
    """The content hash of a just-written file (re-read from disk, not from memory)."""
    return file_hash(path)
