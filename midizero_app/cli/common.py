"""What every ``midizero`` command shares: the user error, the ``--library`` option, opening
the library, progress bars on stderr and JSON on stdout."""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from pathlib import Path
from typing import Callable, TypeVar

from ..core.errors import MidizeroError

T = TypeVar("T")

EMPTY_LIBRARY = "the library is empty: add scores first with 'midizero index FOLDER'"


class UserError(MidizeroError):
    """A problem the user can fix; printed as one line, exit code 1."""


def add_library_arg(p: argparse.ArgumentParser) -> None:
    """The ``--library DIR`` option."""
    p.add_argument("--library", metavar="DIR",
                   help="library folder (default: $MIDIZERO_LIBRARY or the user data dir), or "
                        "a shared library on a server: milvus://HOST[:PORT]/NAME")


def library_folder(args) -> Path:
    """The folder ``--library`` names, or the default library's."""
    from ..core.library import default_library
    from ..core.server_library import is_server_url

    where = args.library or default_library()
    if is_server_url(where):
        raise UserError(f"{where} is a shared library on a server: this command needs a "
                        "local library folder")
    return Path(where).expanduser()


def open_library(args, model: str | None = None, create: bool = False):
    """Open the library ``--library`` names.

    ``create``: make a new library when the folder holds none (``index``, ``demo``);
    otherwise a folder without one is :class:`NoLibrary` (a mistyped ``--library`` must
    not leave an empty library behind). Errors the user can act on stay
    :class:`MidizeroError`; anything else becomes one line.
    """
    from ..core import melody_confidence
    from ..core.library import Library
    from ..core.server_library import ServerLibrary, is_server_url

    from ..core.library import default_library

    if not args.library and is_server_url(default_library()):  # MIDIZERO_LIBRARY=milvus://…
        args.library = str(default_library())
    try:
        melody_confidence.default()  # a damaged installation is said now, not mid-search
        if is_server_url(args.library):  # a shared library: searched, changed by pushing
            if create:
                raise UserError(f"{args.library} is a shared library on a server: index into a "
                                "local library and push it (`midizero library push --to URL`)")
            return ServerLibrary(args.library, model=model)
        return Library(library_folder(args), model=model, create=create)
    except MidizeroError:
        raise
    except Exception as exc:  # noqa: BLE001 - e.g. an unwritable folder or a broken model
        if _is_library_failure(exc):
            raise  # main() words these (damaged, disk full)
        raise UserError(f"cannot open library: {exc}") from None


def _is_library_failure(exc: BaseException) -> bool:
    import sqlite3

    from ..core.errors import is_disk_full

    return isinstance(exc, sqlite3.DatabaseError) or is_disk_full(exc)


def require_pieces(lib) -> None:
    """Raise :class:`UserError` if the library holds no piece to search."""
    if lib.stats()["ok"] == 0:
        raise UserError(EMPTY_LIBRARY)


def write_json(obj) -> None:
    """Print ``obj`` as one JSON line on stdout, flushed (JSON Lines for pipes)."""
    print(json.dumps(obj), flush=True)


class Progress:
    """tqdm on stderr, driven by core progress callbacks ``(done, total, message)``."""

    def __init__(self, desc: str, enabled: bool = True, unit: str = "file"):
        self.desc, self.unit, self.bar = desc, unit, None
        self.enabled = enabled and sys.stderr.isatty() or \
            os.environ.get("MIDIZERO_PROGRESS") == "1"

    def __call__(self, done: int, total: int, message: str = "") -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(total=total, desc=self.desc, unit=self.unit, file=sys.stderr,
                            dynamic_ncols=True)
        self.bar.total = total
        self.bar.n = done
        self.bar.set_postfix_str(str(message)[:40], refresh=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def run(self, fn: Callable[..., T]) -> T:
        """``fn(progress=self, cancel=event)``, a long core run: Ctrl-C sets ``event`` (the
        run stops where its work is stored whole) before the interrupt goes on; the bar is
        closed either way."""
        cancel = threading.Event()
        try:
            return fn(progress=self, cancel=cancel)
        except KeyboardInterrupt:
            cancel.set()
            raise
        finally:
            self.close()
