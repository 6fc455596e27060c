"""Fault injection, the long run: a full disk at every point, kill -9 at random moments,
bytes overwritten in every library file and in the model (``tests/test_faults.py`` runs a
short version of each on every CI run).

    sudo python -m benchmarks.fault_bench                 # all parts (the disk part needs root)
    python -m benchmarks.fault_bench --parts kill,damage --kills 200 --damage 100
    sudo python -m benchmarks.fault_bench --parts disk-train --points 10   # training alone

Parts:

* ``disk``: index, rescan, remove, re-embedding after a model change and converting to the
  compact index kind, each run on a real
  tmpfs filled to leave ``--points`` different amounts of free space spread over what the
  run writes. Afterwards, with the space back: the library opens, ``library check`` leaves
  it clean, and every piece indexed before the fault is found (Top-1 on its own file).
  Training's checkpoint saves the same way: afterwards the same run resumes and its model
  loads.
* ``kill``: ``--kills`` SIGKILLs at seeded random moments of index, rescan, remove and
  re-embed and convert (to a random index kind), on one library that lives through all of
  them; after each, the same checks,
  and no piece listed twice.
* ``damage``: ``--damage`` seeded places, 16 bytes each, overwritten in
  ``library.sqlite``, in each index file and in the model's weights, card and ONNX export;
  each case is opened and searched in a fresh process: it must end in one line (a
  :class:`~midizero_app.core.errors.MidizeroError`) or a working search — never a
  traceback or a crash — and ``library check`` must then make it whole.

The library is the demo's ten pieces (their notes parsed in advance, so runs are quick).
Prints one table: runs, runs the fault stopped, libraries left unusable, pieces lost,
pieces doubled, and tracebacks or crashes.
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from midizero_app.core.bundled import demo_dir
from midizero_app.core.errors import MidizeroError
from midizero_app.core.index_store import INDEX_KINDS, IVF_SQ6
from midizero_app.core.library import Library, check_library

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Tally:
    runs: int = 0
    stopped: int = 0
    unusable: int = 0
    lost: int = 0
    doubled: int = 0
    crashes: int = 0
    notes: str = ""

    def attempt(self, op) -> bool:
        """Run ``op()`` under the fault: True if it completed; a one-line message counts
        as stopped, anything else (a traceback, a multi-line message) as a crash."""
        try:
            op()
            return True
        except MidizeroError as exc:
            self.stopped += 1
            self.crashes += "\n" in str(exc)
        except Exception as exc:  # noqa: BLE001 - counted: a traceback for the user
            self.crashes += 1
            self.notes = f"{type(exc).__name__}: {exc}"[:80]
        return False

    def row(self, name: str) -> str:
        return (f"| {name:<28} | {self.runs:>5} | {self.stopped:>7} | {self.unusable:>8} | "
                f"{self.lost:>4} | {self.doubled:>7} | {self.crashes:>7} |")


def verify(lib_dir: Path, must_find: list[Path], tally: Tally) -> None:
    """Open, check (repairing), find every piece of ``must_find``; count what fails."""
    try:
        with Library(lib_dir) as lib:
            lib.check()
            if not lib.check(repair=False).clean:
                tally.unusable += 1
            paths = [p["path"] for p in lib.pieces()]
            tally.doubled += len(paths) - len(set(paths))
            for p in must_find:
                res = lib.search(str(p))
                if not res["results"] or res["results"][0]["path"] != str(p):
                    tally.lost += 1
    except MidizeroError:
        tally.unusable += 1


def make_sources(work: Path) -> tuple[Path, Path, list[Path]]:
    files = sorted(p for p in (demo_dir() / "scores").iterdir() if p.is_file())
    a, b = work / "a", work / "b"
    for folder, group in ((a, files[:4]), (b, files[4:])):
        folder.mkdir(parents=True)
        for f in group:
            shutil.copy(f, folder / f.name)
    return a, b, [a / f.name for f in files[:4]]


def other_model(work: Path) -> Path:
    """A second (untrained) model, so that a model change re-embeds the library."""
    import torch

    from midizero_app.core.encoder import build_model, save_checkpoint

    torch.manual_seed(1)
    path = work / "other.safetensors"
    save_checkpoint(build_model(), path, {"name": "fault-bench"})
    return path


# --- a full disk --------------------------------------------------------------------------

def mount_tmpfs(mnt: Path, size_mb: int) -> bool:
    mnt.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(mnt)],
                       capture_output=True)
    return r.returncode == 0


def fill(disk: Path, leave: int) -> Path:
    st = os.statvfs(disk)
    filler = disk / "filler"
    with open(filler, "wb") as f:
        f.write(b"\0" * max(0, st.f_bavail * st.f_frsize - leave))
    return filler


def usage(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def disk_part(work: Path, points: int) -> dict[str, Tally]:
    mnt = work / "disk"
    if os.geteuid() != 0 or not mount_tmpfs(mnt, 64):
        print("disk: skipped (mounting a tmpfs needs root)", file=sys.stderr)
        return {}
    try:
        a, b, kept = make_sources(work / "src")
        model = other_model(work)
        base, full = work / "base", work / "full"
        with Library(base) as lib:
            lib.add([a])
        shutil.copytree(base, full)
        with Library(full) as lib:
            lib.add([b])
        changed = a / kept[1].name
        ops = {
            "index": (base, lambda lib: lib.add([b]), kept),
            "rescan (one file changed)": (full, lambda lib: lib.rescan(), [kept[0], kept[2]]),
            "remove": (full, lambda lib: lib.remove(kept[0]), kept[1:]),
            "re-embed (model change)": (full, lambda lib: lib.set_model(model), kept),
            "convert (to ivf-sq6)": (full, lambda lib: lib.convert_index_kind(IVF_SQ6), kept),
        }
        original = changed.read_bytes()
        tallies = {}
        for name, (start, op, must_find) in ops.items():
            tally = tallies[name] = Tally()
            span = usage(full) * (3 if "re-embed" in name else 2 if "convert" in name
                                  else 1) + (1 << 20)
            for k in range(points):
                leave = int(span * k / max(points - 1, 1))
                for p in mnt.iterdir():
                    shutil.rmtree(p) if p.is_dir() else p.unlink()
                lib_dir = mnt / "lib"
                shutil.copytree(start, lib_dir)
                changed.write_bytes(original + (b"\0" if "rescan" in name else b""))
                filler = fill(mnt, leave)
                tally.runs += 1

                def run(op=op, lib_dir=lib_dir):
                    with Library(lib_dir) as lib:
                        op(lib)

                removed_ok = tally.attempt(run)
                filler.unlink()
                find = must_find if name != "remove" or removed_ok else kept
                verify(lib_dir, find, tally)
        changed.write_bytes(original)
        return tallies
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def train_disk_part(work: Path, points: int) -> dict[str, Tally]:
    """Training's checkpoint saves on a filling disk: ``points`` free-space levels from 0 to
    past what a whole run writes. After each: the same command with space back resumes and
    writes a model that loads ("lost": it did not)."""
    from midizero_app.core.encoder import load_checkpoint
    from midizero_app.core.training.config import TrainConfig
    from midizero_app.core.training.train import train

    mnt = work / "disk-train"
    if os.geteuid() != 0 or not mount_tmpfs(mnt, 64):
        print("disk (training): skipped (mounting a tmpfs needs root)", file=sys.stderr)
        return {}
    tally = Tally()
    try:
        out = mnt / "run"
        cfg = TrainConfig(batch_size=16, samples_per_epoch=48, epochs=3, seed=1,
                          out_dir=str(out))
        span = 3 * (10 << 20)  # last.pt (about 9.8 MB) twice, then the model and its export
        for k in range(points):
            shutil.rmtree(out, ignore_errors=True)
            filler = fill(mnt, int(span * k / max(points - 1, 1)))
            tally.runs += 1
            tally.attempt(lambda: train(cfg))
            filler.unlink()
            try:
                _, card = load_checkpoint(train(cfg))
                tally.lost += card["steps"] != cfg.total_steps
            except Exception as exc:  # noqa: BLE001 - the run could not be resumed
                tally.unusable += 1
                tally.notes = f"resume: {type(exc).__name__}: {exc}"[:80]
        return {"training checkpoint saves": tally}
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


# --- kill -9 ------------------------------------------------------------------------------

WORKER = """
import sys
from midizero_app.core.library import Library
lib = Library(sys.argv[1])
op, args = sys.argv[2], sys.argv[3:]
if op == "index":
    lib.add(args, workers=1)
elif op == "rescan":
    lib.rescan(workers=1)
elif op == "remove":
    lib.remove(*args)
elif op == "re-embed":
    lib.set_model(args[0])
elif op == "convert":
    lib.convert_index_kind(args[0])
"""


def kill_part(work: Path, kills: int, seed: int) -> dict[str, Tally]:
    rng = random.Random(seed)
    a, b, kept = make_sources(work / "src-kill")
    model = other_model(work)
    bundled = None
    lib_dir = work / "lib-kill"
    with Library(lib_dir) as lib:
        lib.add([a])
        bundled = lib.catalogue.get_meta("model_path")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    tallies = {op: Tally() for op in ("index", "rescan", "remove", "re-embed", "convert")}
    b_files = sorted(b.iterdir())
    for i in range(kills):
        op = list(tallies)[i % len(tallies)]
        args = {"index": [str(b)], "rescan": [], "remove": [str(rng.choice(b_files))],
                "re-embed": [str(model if i % 10 == 3 else bundled)],
                "convert": [rng.choice(INDEX_KINDS)]}[op]
        proc = subprocess.Popen([sys.executable, "-c", WORKER, str(lib_dir), op, *args],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.2, 3.0))
        killed = proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate()
        tally = tallies[op]
        tally.runs += 1
        tally.stopped += killed
        if not killed and proc.returncode != 0:
            tally.crashes += 1
            tally.notes = err.decode(errors="replace").strip().splitlines()[-1][:80]
        verify(lib_dir, kept, tally)
    return tallies


# --- damaged bytes ------------------------------------------------------------------------

PROBE = """
import sys
from midizero_app.core.errors import MidizeroError
from midizero_app.core.library import Library
try:
    with Library(sys.argv[1]) as lib:
        lib.stats()
        print(lib.search(sys.argv[2])["results"][0]["path"])
except MidizeroError as exc:
    print("message:", exc)
"""


def damage_part(work: Path, places: int, seed: int, done=None,
                files: list[str] | None = None) -> dict[str, Tally]:
    """``done(name, tally)`` is called as each file's runs end; ``files`` (names as in the
    table, e.g. ``library.sqlite``, ``index``, ``model``) limits the files damaged."""
    rng = random.Random(seed)
    a, _, kept = make_sources(work / "src-damage")
    pristine = work / "lib-pristine"
    model_dir = work / "model"
    model_dir.mkdir()
    from midizero_app.core.model_files import default_model_path

    src_model = default_model_path()
    for suffix in (".safetensors", ".json", ".onnx"):
        shutil.copy(src_model.with_suffix(suffix), model_dir / f"m{suffix}")
    with Library(pristine, model=model_dir / "m.safetensors") as lib:
        lib.add([a])
    targets = ["library.sqlite"] + sorted(p.name for p in pristine.glob("index-*.hnsw")) + \
        ["model/m.safetensors", "model/m.json", "model/m.onnx"]
    if files:
        targets = [t for t in targets if any(f in t for f in files)]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    tallies = {}
    lib_dir = work / "lib-damage"
    for name in targets:
        tally = tallies[name.replace("index-", "index ")[:28]] = Tally()
        for _ in range(places):
            shutil.rmtree(lib_dir, ignore_errors=True)
            shutil.copytree(pristine, lib_dir)
            shutil.rmtree(work / "model-damaged", ignore_errors=True)
            shutil.copytree(model_dir, work / "model-damaged")
            f = (work / "model-damaged" / name.split("/")[1]) if name.startswith("model/") \
                else lib_dir / name
            if name.startswith("model/"):  # the library's model is the damaged copy
                with Library(lib_dir) as lib:
                    lib.catalogue.set_meta("model_path",
                                           str(work / "model-damaged" / "m.safetensors"))
            data = bytearray(f.read_bytes())
            at = rng.randrange(len(data))
            data[at:at + 16] = bytes(rng.randrange(256) for _ in range(16))
            f.write_bytes(bytes(data))
            tally.runs += 1
            r = subprocess.run([sys.executable, "-c", PROBE, str(lib_dir), str(kept[0])],
                               env=env, capture_output=True, text=True, timeout=600)
            if r.returncode != 0 or "Traceback" in r.stderr:
                tally.crashes += 1
                tally.notes = f"{name}@{at}: rc {r.returncode}"
            elif r.stdout.startswith("message:"):
                tally.stopped += 1
            try:
                check_library(lib_dir)
            except MidizeroError:
                pass
            verify(lib_dir, kept, tally)
        if done is not None:
            done(name, tally)
    return tallies


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--parts", default="disk,kill,damage")
    ap.add_argument("--points", type=int, default=40, help="free-space levels per operation")
    ap.add_argument("--kills", type=int, default=200)
    ap.add_argument("--damage", type=int, default=100, help="places per file")
    ap.add_argument("--files", default="", help="damage only these files (comma-separated "
                    "parts of their names: library.sqlite, index, model, onnx...)")
    ap.add_argument("--seed", type=int, default=20261207)
    args = ap.parse_args(argv)
    parts = set(args.parts.split(","))
    os.environ.setdefault("MIDIZERO_PROGRESS", "0")
    t0 = time.monotonic()
    print("| fault, operation or file     |  runs | stopped | unusable | lost | doubled | crashes |")
    print("|---|---|---|---|---|---|---|", flush=True)

    def show(fault: str, tallies: dict[str, Tally]) -> None:
        for name, tally in tallies.items():  # each part as soon as it is done
            print(tally.row(f"{fault}: {name}"[:28]), flush=True)
            if tally.notes:
                print(f"|   {tally.notes} |", file=sys.stderr)

    with tempfile.TemporaryDirectory(prefix="midizero-faults-") as tmp:
        work = Path(tmp)
        if "disk" in parts:
            show("disk full", disk_part(work, args.points))
        if "disk" in parts or "disk-train" in parts:
            show("disk full", train_disk_part(work, args.points))
        if "kill" in parts:
            show("kill -9", kill_part(work, args.kills, args.seed))
        if "damage" in parts:
            damage_part(work, args.damage, args.seed,
                        done=lambda name, tally: show("bytes overwritten", {name: tally}),
                        files=[f for f in args.files.split(",") if f])
    print(f"\n{time.monotonic() - t0:.0f} s; 'stopped': the run met the fault (a disk-full "
          "message, a kill before the end, or a one-line message for damaged bytes); "
          "'crashes': a traceback, a signal or a multi-line message.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
