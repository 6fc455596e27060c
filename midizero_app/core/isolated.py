"""Run a heavy core job (training, evaluation) in a process of its own.

Training and evaluation need torch. Imported in the desktop app's process, torch holds the GIL
for whole seconds while it initialises (``import torch``: 1–3 s here) and the training loop's
Python parts hold it between tensor operations, so the GUI's event loop stalls (measured
130–500 ms gaps, benchmarks/stall_bench.py). :func:`run_isolated` runs ``module:function`` in
a spawned process instead, relays its progress and its result (or error message), and
forwards cancellation — the same contract as calling the function directly, so the GUI's
workers keep their progress/cancel plumbing. In a PyInstaller build the child re-runs the app
executable (``multiprocessing.freeze_support`` in the entry point).
"""
from __future__ import annotations

import builtins
import importlib
import inspect
import multiprocessing as mp
import threading
import time
from typing import Any, Callable


class IsolatedJobError(RuntimeError):
    """The job failed in its process (the message is the job's own)."""


def _child(target: str, args: tuple, kwargs: dict, conn, threads: int | None) -> None:
    cancel = threading.Event()
    send_lock = threading.Lock()

    def send(msg) -> None:
        with send_lock:
            conn.send(msg)

    def listen() -> None:  # the parent's "cancel" (or its end: EOF)
        try:
            while conn.recv() != "cancel":
                pass
        except (EOFError, OSError):
            pass
        cancel.set()

    threading.Thread(target=listen, daemon=True).start()
    try:
        try:
            send(("done", _call(target, args, kwargs, threads, send, cancel)))
        except ModuleNotFoundError as exc:
            if exc.name == "torch":  # the onnxruntime-only build
                exc = IsolatedJobError("this needs PyTorch, which this build of MIDI-Zero "
                                       "leaves out: use the full build (or pip install torch)")
            send(("error", (type(exc).__name__, str(exc))))
        except (BrokenPipeError, ConnectionError, EOFError, KeyboardInterrupt):
            raise
        except BaseException as exc:  # noqa: BLE001 - everything goes back to the caller
            send(("error", (type(exc).__name__, str(exc))))
    except (BrokenPipeError, ConnectionError, EOFError, KeyboardInterrupt):
        return  # the parent has gone or was interrupted: nothing to report to


def _call(target: str, args: tuple, kwargs: dict, threads: int | None, send, cancel):
    """Import and call ``target`` with progress and cancel wired to the parent."""
    if threads:
        try:
            import torch

            torch.set_num_threads(threads)
        except ImportError:
            pass
    mod, name = target.split(":")
    fn = getattr(importlib.import_module(mod), name)
    params = inspect.signature(fn).parameters
    if "progress" in params:
        kwargs["progress"] = lambda *a: send(("progress", a[0] if len(a) == 1 else a))
    if "cancel" in params:
        kwargs["cancel"] = cancel
    return fn(*args, **kwargs)


def run_isolated(target: str, *args: Any, progress: Callable | None = None,
                 cancel: threading.Event | None = None, threads: int | None = None,
                 poll_s: float = 0.1, **kwargs: Any) -> Any:
    """Call ``target`` (``"package.module:function"``) with ``args``/``kwargs`` in a spawned
    process and return its result.

    ``progress(payload)`` is called (on this thread) with each progress payload the function
    reports (one argument, or a tuple of its arguments). Setting ``cancel`` sets the child's
    own cancel event (the function stops as it would in-process); if the child then does not
    finish within 30 s it is killed. A failure in the child raises :class:`IsolatedJobError`
    (or the same built-in exception type) with the child's message. Messages travel over one
    pipe (no multiprocessing queue, lock or feeder thread).
    """
    ctx = mp.get_context("spawn")
    conn, child_conn = ctx.Pipe()
    proc = ctx.Process(target=_child, name=f"midizero-{target.rsplit(':', 1)[-1]}",
                       args=(target, args, kwargs, child_conn, threads))
    proc.start()
    child_conn.close()
    kill_at = None
    try:
        while True:
            if cancel is not None and cancel.is_set() and kill_at is None:
                try:
                    conn.send("cancel")
                except OSError:
                    pass
                kill_at = time.monotonic() + 30
            if not conn.poll(poll_s):
                if not proc.is_alive() and not conn.poll(0.5):
                    raise IsolatedJobError(
                        f"the {target.rsplit(':', 1)[-1]} process ended unexpectedly "
                        f"(exit code {proc.exitcode})")
                if kill_at is not None and time.monotonic() > kill_at:
                    proc.kill()
                continue
            try:
                kind, payload = conn.recv()
            except (EOFError, OSError):  # the child is gone without a word
                proc.join(5)
                raise IsolatedJobError(
                    f"the {target.rsplit(':', 1)[-1]} process ended unexpectedly "
                    f"(exit code {proc.exitcode})") from None
            if kind == "progress":
                if progress is not None:
                    progress(payload)
            elif kind == "done":
                return payload
            else:
                name, message = payload
                exc_type = getattr(builtins, name, None)
                if isinstance(exc_type, type) and issubclass(exc_type, Exception):
                    raise exc_type(message)
                raise IsolatedJobError(message)
    finally:
        conn.close()
        proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join(5)
