"""Smoke test of the built desktop app (or of ``midizero-app`` from a venv).

    python packaging/smoke_test.py [dist/MIDI-Zero/MIDI-Zero] [--query "played - ode to joy.mid"]

Starts the app offscreen (``QT_QPA_PLATFORM=offscreen``) as a first run — fresh settings and
an empty library in a temporary home, so it indexes the bundled demo scores — waits until
the live search is ready, replays a demo query in real time through the live path (the same
path a MIDI keyboard feeds), and checks that the final answer is the right piece. Prints the
timings and exits 0 on success. Run by ``packaging/build.sh --smoke`` and by
``tests/test_packaging.py`` (marked slow) when the bundle exists.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_APP = ROOT / "dist" / "MIDI-Zero" / "MIDI-Zero"
# query file (in resources/demo/queries) → the title the app must put first
EXPECTED = {"played - ode to joy.mid": "Ode to Joy",
            "played - mozart.mid": "Mozart - Sonata K.545 (I, exposition)",
            "played - maple leaf rag, middle.mid": "Joplin - Maple Leaf Rag"}


def app_command(app: str | Path) -> list[str]:
    """The command that starts the app: a built executable, or "venv" for this Python's
    ``python -m midizero_app``."""
    if str(app) == "venv":
        return [sys.executable, "-m", "midizero_app"]
    return [str(Path(app).resolve())]


def isolated_env(home: Path) -> dict:
    """Settings, library and caches in ``home``: the user's own are never touched."""
    env = dict(os.environ)
    env.update({"HOME": str(home), "XDG_CONFIG_HOME": str(home / "config"),
                "XDG_DATA_HOME": str(home / "data"), "XDG_CACHE_HOME": str(home / "cache"),
                "QT_QPA_PLATFORM": "offscreen", "MIDIZERO_PROGRESS": "0"})
    env.pop("MIDIZERO_LIBRARY", None)
    env.pop("MIDIZERO_MODEL", None)
    env.pop("MIDIZERO_MELODY_CONFIDENCE", None)
    return env


def run_smoke(app: str | Path = DEFAULT_APP, query: str = "played - ode to joy.mid",
              timeout: float = 300.0) -> dict:
    """Run the app's ``--smoke-test``; returns the parsed result plus timings and ``ok``."""
    qfile = ROOT / "resources" / "demo" / "queries" / query
    with tempfile.TemporaryDirectory(prefix="midizero-smoke-") as tmp:
        home = Path(tmp)
        t0 = time.time()
        proc = subprocess.run(
            [*app_command(app), "--smoke-test", str(qfile), "--probe-timeout", str(timeout)],
            env=isolated_env(home), cwd=tmp, capture_output=True, text=True,
            timeout=timeout + 60)
        wall = time.time() - t0
    marks, result = {}, {}
    for line in proc.stdout.splitlines():
        if line.startswith("MIDIZERO-MARK "):
            _, name, t = line.split()[:3]
            try:
                marks[name] = float(t) - t0
            except ValueError:
                pass
        elif line.startswith("MIDIZERO-SMOKE "):
            result = json.loads(line.split(" ", 1)[1])
    want = EXPECTED.get(query)
    ok = (proc.returncode == 0 and not result.get("error")
          and (want is None or result.get("title") == want))
    return {**result, "ok": ok, "returncode": proc.returncode, "wall_s": round(wall, 2),
            "shown_s": round(marks.get("shown", float("nan")), 2),
            "ready_s": round(marks.get("ready", float("nan")), 2), "expected": want,
            "log_tail": "" if ok else (proc.stdout[-2000:] + proc.stderr[-3000:])}


def run_train_smoke(app: str | Path = DEFAULT_APP, timeout: float = 600.0) -> dict:
    """The Training tab's 20-step run inside the app (``MIDIZERO_SMOKE_TRAIN``)."""
    with tempfile.TemporaryDirectory(prefix="midizero-smoke-train-") as tmp:
        env = isolated_env(Path(tmp))
        env["MIDIZERO_SMOKE_TRAIN"] = str(Path(tmp) / "model")
        t0 = time.time()
        proc = subprocess.run([*app_command(app), "--probe-timeout", str(timeout)], env=env,
                              cwd=tmp, capture_output=True, text=True, timeout=timeout + 60)
    result = {}
    for line in proc.stdout.splitlines():
        if line.startswith("MIDIZERO-SMOKE "):
            result = json.loads(line.split(" ", 1)[1])
    ok = proc.returncode == 0 and bool(result.get("ok"))
    return {**result, "ok": ok, "returncode": proc.returncode,
            "wall_s": round(time.time() - t0, 2),
            "log_tail": "" if ok else (proc.stdout[-2000:] + proc.stderr[-3000:])}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("app", nargs="?", default=str(DEFAULT_APP),
                    help="the built executable, or 'venv' for python -m midizero_app")
    ap.add_argument("--query", default="played - ode to joy.mid", choices=sorted(EXPECTED))
    ap.add_argument("--timeout", type=float, default=300.0)
    ap.add_argument("--train", action="store_true",
                    help="also run a 20-step training from the Training tab")
    args = ap.parse_args(argv)
    if args.app != "venv" and not Path(args.app).is_file():
        print(f"smoke test: no app at {args.app} (build it: packaging/build.sh)", file=sys.stderr)
        return 2
    r = run_smoke(args.app, args.query, args.timeout)
    print(f"app: {args.app}\nquery: {args.query}\n"
          f"window shown after {r['shown_s']} s; ready to identify after {r['ready_s']} s "
          f"(first run: indexes the demo library)\n"
          f"answer: {r.get('title')!r} (confidence {r.get('confidence')}), expected "
          f"{r['expected']!r}; exit code {r['returncode']}; {r['wall_s']} s in all")
    if not r["ok"]:
        print("SMOKE TEST FAILED\n" + r["log_tail"], file=sys.stderr)
        return 1
    if args.train:
        t = run_train_smoke(args.app)
        print(f"training (Training tab, 20 steps): {t.get('info')!r}; exit code "
              f"{t['returncode']}; {t['wall_s']} s")
        if not t["ok"]:
            print("TRAINING SMOKE TEST FAILED\n" + t["log_tail"], file=sys.stderr)
            return 1
    print("smoke test passed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
