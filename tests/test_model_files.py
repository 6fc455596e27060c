"""Model files are untrusted input: damaged, truncated, crafted or mismatched weights, cards
and ONNX exports each end in one ModelError line naming the file (or, for an export that
does not belong to its weights, in torch running the weights), never in a crash; and every
model, card, export and training checkpoint is written atomically.

Loads that could crash the interpreter run in a subprocess, so a segmentation fault fails
the test instead of ending pytest.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from midizero_app.core.errors import MidizeroError, WriteFailed
from midizero_app.core.model_files import (ModelError, model_id_of_arrays, read_card,
                                           read_weights)

ROOT = Path(__file__).resolve().parents[1]
BUNDLED_ID = "5192491b492bcd28"  # the id libraries record for the bundled model
TINY_ARCH = {"widths": [4, 8, 8, 8], "blocks": [1, 1, 1, 1], "dim": 128, "win_length": 10}

PROBE = r"""
import json, sys
if sys.argv[1] == "no-torch":
    sys.modules["torch"] = None  # the ONNX-only build: importing torch fails
from midizero_app.core.inference import load_embedder
from midizero_app.core.model_files import ModelError
runtime = sys.argv[2]
for path in sys.argv[3:]:
    print(json.dumps({"start": path}), flush=True)
    try:
        emb = load_embedder(path, runtime=runtime)
        out = {"path": path, "ok": emb.runtime, "model_id": emb.model_id}
    except ModelError as exc:
        out = {"path": path, "error": str(exc)}
    except BaseException as exc:  # anything else is a defect the test reports
        out = {"path": path, "other": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(out), flush=True)
"""


def load_in_subprocess(paths: list[Path], runtime: str = "auto", torch: bool = True
                       ) -> dict[str, dict]:
    """``load_embedder`` on each path in a fresh interpreter: {path name: outcome}."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("MIDIZERO_RUNTIME", None)
    proc = subprocess.run([sys.executable, "-c", PROBE, "torch" if torch else "no-torch",
                           runtime, *map(str, paths)], capture_output=True, text=True,
                          cwd=str(ROOT), env=env, timeout=600)
    lines = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    started = [x["start"] for x in lines if "start" in x]
    assert proc.returncode == 0, (f"the process died (code {proc.returncode}) loading "
                                  f"{started[-1] if started else '?'}: {proc.stderr[-1500:]}")
    results = {Path(x["path"]).name: x for x in lines if "path" in x}
    assert len(results) == len(paths), proc.stderr[-1500:]
    for r in results.values():
        assert "other" not in r, r
        if "error" in r:
            assert "\n" not in r["error"] and len(r["error"]) < 400, r
    return results


def st_parts(path: Path) -> tuple[dict, bytes]:
    """A safetensors file's header (JSON) and data."""
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def st_bytes(header: dict, data: bytes) -> bytes:
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def model_beside(bundled: Path, folder: Path, name: str, weights: bytes | None = None,
                 onnx: bytes | None = None, card: dict | None = None) -> Path:
    """``<name>.safetensors`` with the bundled card and export beside it (or the given
    replacements); returns the weights path."""
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / f"{name}.safetensors"
    p.write_bytes(weights if weights is not None else bundled.read_bytes())
    p.with_suffix(".onnx").write_bytes(onnx if onnx is not None
                                       else bundled.with_suffix(".onnx").read_bytes())
    p.with_suffix(".json").write_text(json.dumps(card if card is not None
                                                 else read_card(bundled)))
    return p


# --- the bundled model ----------------------------------------------------------------------

def test_bundled_model_keeps_its_id_and_loads_without_torch(bundled_model):
    assert bundled_model.name == "default.safetensors"
    weights = read_weights(bundled_model)
    assert model_id_of_arrays(weights) == BUNDLED_ID
    card = read_card(bundled_model)
    assert card["model_id"] == card["onnx_model_id"] == BUNDLED_ID and card["onnx_hash"]
    assert weights["head.weight"].shape == (128, 1536) and weights["head.weight"].dtype == \
        np.float32
    assert weights["stem.1.num_batches_tracked"].shape == ()
    r = load_in_subprocess([bundled_model], torch=False)[bundled_model.name]
    assert r == {"path": str(bundled_model), "ok": "onnxruntime", "model_id": BUNDLED_ID}


def test_bundled_model_in_torch_equals_its_export(bundled_model):
    from midizero_app.core.encoder import Embedder, load_checkpoint, model_id_of
    from midizero_app.core.inference import OnnxEmbedder, load_embedder

    model, card = load_checkpoint(bundled_model)
    assert model_id_of(model.state_dict()) == card["model_id"] == BUNDLED_ID
    fast = load_embedder(bundled_model)
    assert isinstance(fast, OnnxEmbedder)
    x = (np.random.default_rng(0).random((40, 10, 88)) < 0.06).astype(np.uint8)
    np.testing.assert_allclose(fast.embed(x), Embedder(bundled_model, runtime="torch").embed(x),
                               atol=1e-5)


# --- bad weights ----------------------------------------------------------------------------

def test_bad_weight_files_give_one_line(bundled_model, tmp_path):
    header, data = st_parts(bundled_model)
    good = bundled_model.read_bytes()
    rng = np.random.default_rng(7)
    cases: dict[str, bytes] = {}
    # the crafted file of the report: a tensor whose size exceeds its bytes, beside the
    # matching export and card
    h = json.loads(json.dumps(header))
    h["head.weight"]["shape"] = [128, 15360]
    cases["sizes-exceed-storage"] = st_bytes(h, data)
    h = json.loads(json.dumps(header))
    h["head.bias"]["data_offsets"] = [0, len(data) + 4096]
    cases["offsets-past-the-end"] = st_bytes(h, data)
    h = json.loads(json.dumps(header))
    h["head.bias"]["dtype"] = "Q99"
    cases["unknown-dtype"] = st_bytes(h, data)
    cases["huge-header-length"] = struct.pack("<Q", 2 ** 62) + good[8:]
    cases["truncated"] = good[: len(good) // 2]
    cases["header-only"] = good[: 8 + struct.unpack("<Q", good[:8])[0]]
    cases["random-bytes"] = rng.bytes(4096)
    cases["empty"] = b""
    flipped = bytearray(good)
    flipped[20:40] = rng.bytes(20)  # inside the JSON header
    cases["flipped-header"] = bytes(flipped)
    paths = [model_beside(bundled_model, tmp_path, name, weights=blob)
             for name, blob in cases.items()]
    for runtime in ("auto", "torch"):
        results = load_in_subprocess(paths, runtime)
        for path in paths:
            assert path.name in results[path.name].get("error", ""), results[path.name]


def test_weights_that_do_not_fit_the_architecture(bundled_model, tmp_path):
    weights = read_weights(bundled_model)
    from safetensors.numpy import save

    shape = dict(weights)
    shape["head.weight"] = np.zeros((128, 1535), np.float32)
    dtype = dict(weights)
    dtype["head.bias"] = weights["head.bias"].astype(np.float64)
    missing = {k: v for k, v in weights.items() if k != "head.bias"}
    extra = {**weights, "head.extra": np.zeros(3, np.float32)}
    nan = dict(weights)
    nan["head.bias"] = np.full(128, np.nan, np.float32)
    cases = {"shape": shape, "dtype": dtype, "missing": missing, "extra": extra, "nan": nan}
    paths = [model_beside(bundled_model, tmp_path / name, name, weights=save(w))
             for name, w in cases.items()]
    results = load_in_subprocess(paths)
    want = {"shape": "head.weight is (128, 1535), the architecture needs (128, 1536)",
            "dtype": "head.bias is float64, not float32", "missing": "missing head.bias",
            "extra": "unexpected head.extra", "nan": "NaN or infinite"}
    for name, text in want.items():
        err = results[f"{name}.safetensors"].get("error", "")
        assert f"{name}.safetensors" in err and text in err, (name, err)


def test_bad_model_cards_and_paths(bundled_model, tmp_path):
    card = read_card(bundled_model)
    p1 = model_beside(bundled_model, tmp_path / "a", "junk")
    p1.with_suffix(".json").write_bytes(b"{\"arch\": [1, 2")
    p2 = model_beside(bundled_model, tmp_path / "b", "huge",
                      card={**card, "arch": {**card["arch"], "widths": [10 ** 6] * 4}})
    p3 = model_beside(bundled_model, tmp_path / "c", "dim",
                      card={**card, "arch": {**card["arch"], "dim": 64}})
    p4 = model_beside(bundled_model, tmp_path / "d", "list")
    p4.with_suffix(".json").write_text("[1, 2]")
    for p in (p1, p2, p3, p4):
        with pytest.raises(ModelError, match=p.with_suffix(".json").name) as exc:
            read_card(p)
        assert "\n" not in str(exc.value)
    from midizero_app.core.inference import load_embedder

    with pytest.raises(ModelError, match="not found"):
        load_embedder(tmp_path / "nowhere.safetensors")
    with pytest.raises(ModelError, match="not a model file"):
        load_embedder(tmp_path)
    huge = tmp_path / "huge.safetensors"
    with open(huge, "wb") as f:  # sparse: no disk space used
        f.truncate((1 << 30) + 1)
    with pytest.raises(ModelError, match="huge.safetensors is not a model of this software"):
        load_embedder(huge)


def test_bad_pt_checkpoints_through_torchs_safe_loader(bundled_model, tmp_path):
    """``.pt`` checkpoints of earlier versions are read only by torch's safe loader
    (``weights_only=True``): a storage shorter than its tensor, random bytes, or a pickle that would run
    code end in ModelError; a good one loads, with its export when that computes the same
    embeddings."""
    import pickle

    import torch

    from midizero_app.core.encoder import load_checkpoint

    sd = {k: torch.from_numpy(np.array(v)) for k, v in read_weights(bundled_model).items()}
    good = tmp_path / "good.pt"
    torch.save(sd, good)
    shutil.copy(bundled_model.with_suffix(".json"), good.with_suffix(".json"))
    model, card = load_checkpoint(good)
    assert card["model_id"] == BUNDLED_ID
    from midizero_app.core.inference import load_embedder

    # a card written before export hashes were recorded: the export runs once it computes
    # the weights' embeddings, and an export of other weights does not
    hashless = {k: v for k, v in card.items() if k != "onnx_hash"}
    good.with_suffix(".json").write_text(json.dumps(hashless))
    assert load_embedder(good).runtime == "torch"  # no export beside it
    shutil.copy(bundled_model.with_suffix(".onnx"), good.with_suffix(".onnx"))
    assert load_embedder(good).runtime == "onnxruntime"
    from midizero_app.core.encoder import build_model, export_onnx

    torch.manual_seed(5)
    export_onnx(build_model(), good.with_suffix(".onnx"))
    emb = load_embedder(good)
    assert emb.runtime == "torch" and emb.model_id == BUNDLED_ID
    with pytest.raises(ModelError, match="computes other embeddings"):
        load_embedder(good, runtime="onnx")
    short = tmp_path / "short.pt"  # the largest tensor's storage cut short: sizes exceed it
    with zipfile.ZipFile(good) as zin, zipfile.ZipFile(short, "w") as zout:
        largest = max((i for i in zin.infolist() if "/data/" in i.filename),
                      key=lambda i: i.file_size).filename
        for info in zin.infolist():
            blob = zin.read(info.filename)
            if info.filename == largest:
                blob = blob[:16]
            zout.writestr(info.filename, blob)
    for ext in (".json", ".onnx"):  # the report's case: beside the matching card and export
        shutil.copy(bundled_model.with_suffix(ext), short.with_suffix(ext))
    (tmp_path / "random.pt").write_bytes(np.random.default_rng(1).bytes(5000))
    marker = tmp_path / "ran"
    (tmp_path / "code.pt").write_bytes(pickle.dumps(
        type("Evil", (), {"__reduce__": lambda self: (os.system, (f"touch {marker}",))})()))
    paths = [short, tmp_path / "random.pt", tmp_path / "code.pt"]
    results = load_in_subprocess(paths)
    for p in paths:
        assert p.name in results[p.name].get("error", ""), results[p.name]
    assert "does not match expected size" in results["short.pt"]["error"]
    assert "safe loader refused it" in results["code.pt"]["error"]
    assert not marker.exists()


# --- the ONNX export beside the weights -----------------------------------------------------

def test_an_export_that_is_not_the_weights_is_never_run(bundled_model, tmp_path):
    """A damaged, replaced or other model's export: torch runs the weights (same model id),
    ``runtime="onnx"`` and a build without torch say why in one line."""
    import torch

    from midizero_app.core.encoder import build_model, export_onnx

    torch.manual_seed(3)
    other = tmp_path / "other.onnx"
    export_onnx(build_model(), other)
    card = read_card(bundled_model)
    onnx = bundled_model.with_suffix(".onnx").read_bytes()
    flipped = bytearray(onnx)
    flipped[len(onnx) // 2: len(onnx) // 2 + 64] = bytes(64)
    paths = [model_beside(bundled_model, tmp_path / "r", "random",
                          onnx=np.random.default_rng(2).bytes(4000)),
             model_beside(bundled_model, tmp_path / "f", "flipped", onnx=bytes(flipped)),
             model_beside(bundled_model, tmp_path / "o", "other", onnx=other.read_bytes()),
             model_beside(bundled_model, tmp_path / "s", "stale",  # exported from other weights
                          card={**card, "onnx_model_id": "0123456789abcdef"}),
             model_beside(bundled_model, tmp_path / "n", "nohash",
                          card={k: v for k, v in card.items() if k != "onnx_hash"})]
    # a card that vouches for a broken export: onnxruntime refuses it, torch runs the weights
    from midizero_app.core.hashing import bytes_hash

    junk = np.random.default_rng(4).bytes(3000)
    paths.append(model_beside(bundled_model, tmp_path / "v", "vouched", onnx=junk,
                              card={**card, "onnx_hash": bytes_hash(junk)}))
    results = load_in_subprocess(paths)
    for p in paths:
        assert results[p.name].get("ok") == "torch", results[p.name]
        assert results[p.name]["model_id"] == BUNDLED_ID
    forced = load_in_subprocess(paths, runtime="onnx")
    no_torch = load_in_subprocess(paths, torch=False)
    for p in paths:
        assert p.name in forced[p.name].get("error", ""), forced[p.name]
        assert "torch is not installed" in no_torch[p.name].get("error", ""), no_torch[p.name]
    assert "damaged or was replaced" in forced["random.safetensors"]["error"]
    assert "exported from other weights" in forced["stale.safetensors"]["error"]
    assert "damaged or not an ONNX model" in forced["vouched.safetensors"]["error"]


# --- writing models -------------------------------------------------------------------------

def test_a_trained_model_round_trips(tmp_path):
    import torch

    from midizero_app.core.encoder import (Embedder, build_model, export_onnx,
                                           load_checkpoint, model_id_of, save_checkpoint)
    from midizero_app.core.inference import OnnxEmbedder, load_embedder
    from midizero_app.core.model_files import write_card

    torch.manual_seed(0)
    model = build_model(TINY_ARCH).eval()
    path = tmp_path / "tiny.safetensors"
    card = save_checkpoint(model, path, {"name": "tiny", "arch": TINY_ARCH})
    assert card["model_id"] == model_id_of(model.state_dict())
    assert card["model_id"] == model_id_of_arrays(read_weights(path))
    assert "onnx_model_id" not in read_card(path)
    assert load_embedder(path).runtime == "torch"  # no export yet
    write_card(path, {**card, "onnx_model_id": card["model_id"],
                      "onnx_hash": export_onnx(model, path.with_suffix(".onnx"))})
    loaded, card2 = load_checkpoint(path)
    assert card2["model_id"] == card["model_id"] and card2["name"] == "tiny"
    fast = load_embedder(path)
    assert isinstance(fast, OnnxEmbedder) and fast.model_id == card["model_id"]
    x = (np.random.default_rng(0).random((20, 10, 88)) < 0.06).astype(np.uint8)
    slow = Embedder(path, runtime="torch")
    np.testing.assert_allclose(fast.embed(x), slow.embed(x), atol=1e-5)
    with torch.inference_mode():
        np.testing.assert_allclose(slow.embed(x), model(torch.from_numpy(x).float()).numpy(),
                                   atol=1e-6)
    with pytest.raises(ModelError, match="safetensors"):
        save_checkpoint(model, tmp_path / "tiny.pt", {})


def test_model_writes_never_follow_a_planted_link_and_a_full_disk_changes_nothing(
        tmp_path, monkeypatch):
    import torch

    from midizero_app.core.encoder import build_model, export_onnx, save_checkpoint
    from midizero_app.core.training import train as train_mod

    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    path = tmp_path / "m.safetensors"
    for name in ("m.safetensors.tmp", "m.json.tmp", "m.onnx.tmp", "last.pt.tmp",
                 ".m.safetensors.tmp"):
        (tmp_path / name).symlink_to(victim)
    model = build_model(TINY_ARCH)
    card = save_checkpoint(model, path, {"arch": TINY_ARCH})
    export_onnx(model, path.with_suffix(".onnx"))
    opt = torch.optim.Adam(model.parameters())
    train_mod._save_training_state(tmp_path / "last.pt", model, opt, 3, [[1, 0.5, 1e-3]])
    assert victim.read_text() == "keep me"
    assert torch.load(tmp_path / "last.pt", weights_only=True)["step"] == 3

    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if not p.is_symlink()}

    def full(*_a, **_k):
        raise OSError(errno.ENOSPC, "No space left on device")

    torch.manual_seed(9)
    other = build_model(TINY_ARCH)
    with monkeypatch.context() as m:
        m.setattr(Path, "write_bytes", full)
        with pytest.raises(WriteFailed, match="disk is full"):
            save_checkpoint(other, path, {"arch": TINY_ARCH})
    with monkeypatch.context() as m:
        m.setattr(os, "write", full)  # the checked write path's own writes fail
        with pytest.raises(WriteFailed, match="disk is full"):
            train_mod._save_training_state(tmp_path / "last.pt", other, opt, 4, [])
    with monkeypatch.context() as m:
        m.setattr(torch.onnx, "export", full)
        with pytest.raises(WriteFailed, match="disk is full"):
            export_onnx(other, path.with_suffix(".onnx"))
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir() if not p.is_symlink()}
    assert after == before  # every file as it was, no temporary file left
    assert read_card(path)["model_id"] == card["model_id"]
    assert isinstance(WriteFailed("x"), MidizeroError)
