"""The audio branch's models: shapes, losses, snippet cutting, a short training run on
real rendered audio, and the ONNX export against torch."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from midizero_app.audio.branch import snippets as S
from midizero_app.audio.branch.dataset import render_one, save_rendering
from midizero_app.audio.branch.dataset import test_font as held_out_font
from midizero_app.audio.branch.model import (AudioEmbedder, audio_arch, build, load,
                                             pairwise_ranking_loss, teacher_loss)
from midizero_app.audio.branch.train import Recipe, rank_metrics, retrieval_ranks, train
from midizero_app.core.frames import group_performance
from midizero_app.core.model_arch import EMBED_DIM
from midizero_app.core.model_files import ModelError
from midizero_app.core.scores import Notes
from midizero_app.core.windows import make_windows

pytest.importorskip("tinysoundfont")
pytest.importorskip("pedalboard")


def _notes(seed: int, n: int = 40) -> np.ndarray:
    """A short piano texture: (n_notes, 3) onset s, offset s, MIDI pitch."""
    rng = np.random.default_rng(seed)
    t = np.cumsum(rng.choice([0.2, 0.3, 0.4], n))
    rows = []
    for x in t:
        for p in rng.choice(np.arange(48, 84), int(rng.integers(1, 4)), replace=False):
            rows.append((x, x + 0.35, p))
    return np.array(rows, np.float64)


@pytest.fixture(scope="module")
def rendered():
    """Two pieces rendered through a real SoundFont (room and noise included)."""
    return [render_one(_notes(s), held_out_font(), seed=s, piece=f"p{s}") for s in (1, 2)]


def test_branch_shapes_and_unit_norm():
    torch.manual_seed(0)
    pair = build(audio_arch("reproduce")).eval()
    teacher = build(audio_arch("teacher")).eval()
    with torch.inference_mode():
        a = pair(torch.rand(3, 42, 92))
        s = pair.embed_symbolic(torch.rand(3, 42, 88))
        t = teacher(torch.rand(3, 42, 92))
    assert a.shape == (3, 32) and s.shape == (3, 32) and t.shape == (3, EMBED_DIM)
    for x in (a, s, t):
        assert torch.allclose(x.norm(dim=1), torch.ones(3), atol=1e-5)
    assert not hasattr(teacher, "symbolic")  # the teacher model is an audio branch alone


def test_architecture_is_checked():
    with pytest.raises(ModelError, match="dim"):
        build({**audio_arch("teacher"), "dim": 32})
    with pytest.raises(ModelError, match="widths"):
        build({**audio_arch("reproduce"), "widths": [24, 48]})


def test_pairwise_ranking_loss():
    eye = torch.eye(4)
    assert float(pairwise_ranking_loss(eye, eye, 0.7)) == 0.0  # matched 1, others 0 < 1 − 0.7
    # every pair equally similar: each of the 12 terms is the margin
    same = torch.nn.functional.normalize(torch.ones(4, 4), dim=1)
    assert float(pairwise_ranking_loss(same, same, 0.7)) == pytest.approx(0.7)
    assert float(teacher_loss(eye, eye)) < float(teacher_loss(eye, eye.roll(1, 0)))


def test_piano_roll_and_cut():
    notes = np.array([[0.0, 0.5, 60], [0.25, 0.3, 20]])  # 20 folds up to 32
    roll = S.piano_roll(notes, 20)
    assert roll.shape == (20, 88) and roll.dtype == np.float32
    assert roll[0, 60 - 21] == 1.0 and roll[5, 60 - 21] == 0.5 and roll[10, 60 - 21] == 0.0
    assert roll[5, 32 - 21] == 1.0
    spec = np.arange(10 * 3, dtype=np.float16).reshape(10, 3)
    c = S.cut(spec, np.array([-2, 8]), 4)
    assert c.shape == (2, 4, 3) and c.dtype == np.float32
    assert (c[0, :2] == 0).all() and (c[0, 2] == spec[0]).all() and (c[1, 2:] == 0).all()
    r = S.cut_spans(spec.astype(np.float32), np.array([0.0]), np.array([0.45]), 10, fps=20)
    assert np.allclose(r[0], spec.astype(np.float32)[:10])  # 0..0.45 s is rows 0..9


def test_teacher_pairs_are_the_apps_windows(rendered):
    r = rendered[0]
    frames = group_performance(Notes(onset=r.notes[:, 0], pitch=np.rint(r.notes[:, 2])))
    windows, _ = make_windows(frames, 1)
    for mapping in S.MAPPINGS:
        p = S.teacher_pairs(r.spec, r.notes, mapping)
        assert p.audio.shape == (len(p.other), 42, 92)
        assert np.array_equal(p.other, windows[:len(p.other)])
        assert np.allclose(p.time, frames.onset[:len(p.other)])
    rp = S.reproduce_pairs(r.spec, r.notes)
    assert rp.audio.shape[1:] == (42, 92) and rp.other.shape[1:] == (42, 88)
    assert (rp.other[:, 21] == 1).any(axis=1).all()  # every centre frame holds an onset


def test_onsets_are_found_in_rendered_audio(rendered):
    hits, det, true = S.onset_scores(rendered[0].spec, rendered[0].notes)
    assert hits / true >= 0.8 and hits / det >= 0.8
    snips, idx = S.query_snippets(rendered[0].spec, "onsets")
    assert snips.shape == (det, 42, 92) and np.array_equal(idx, np.arange(det))


def test_retrieval_metrics():
    q = np.eye(3, dtype=np.float32)
    ranks = retrieval_ranks(q, q[[0, 2, 1]])
    assert ranks.tolist() == [1, 3, 3]  # a tie with the own item counts against it
    m = rank_metrics(np.array([1, 2, 4, 10]))
    assert m["R@1"] == 0.25 and m["R@10"] == 1.0 and m["MR"] == 3.0
    assert m["MRR"] == pytest.approx((1 + 0.5 + 0.25 + 0.1) / 4)


@pytest.mark.parametrize("kind", ["teacher", "reproduce"])
def test_short_training_writes_a_loadable_model(rendered, tmp_path, kind):
    data = tmp_path / "data"
    for r, split in zip(rendered, ("train", "valid")):
        (data / split).mkdir(parents=True)
        save_rendering(r, data / split / f"{r.piece}__{r.font}.npz")
    out = tmp_path / f"{kind}.safetensors"
    card = train(Recipe(kind=kind, mapping="onsets", batch=8, max_steps=2, threads=1),
                 data, out, log=lambda m: None)
    assert card["training"]["steps"] == 2 and card["valid"]["a2s"]["n"] > 0
    assert json.loads(out.with_suffix(".json").read_text())["model_id"] == card["model_id"]
    if kind == "teacher":
        from midizero_app.core.inference import load_embedder

        assert card["teacher_model_id"] == load_embedder().model_id
        assert card["audio_arch"]["dim"] == EMBED_DIM
        vecs, q, onsets = AudioEmbedder(out, threads=1).embed_recording(rendered[1].audio,
                                                                         22050)
        assert vecs.shape == (len(q), EMBED_DIM) and len(onsets) == len(q) > 10
        assert np.array_equal(q, np.arange(len(q)))
    emb = AudioEmbedder(out, runtime="onnx", threads=1)
    assert emb.runtime == "onnxruntime"
    x = S.teacher_pairs(rendered[1].spec, rendered[1].notes, "onsets").audio[:16]
    got = emb.embed(x)
    model, _ = load(out)
    with torch.inference_mode():
        want = model(torch.from_numpy(x)).numpy()
    assert got.shape == (len(x), card["audio_arch"]["dim"])
    assert np.abs(got - want).max() < 1e-4  # the ONNX export computes torch's embeddings
    if kind == "reproduce":
        roll = S.reproduce_pairs(rendered[1].spec, rendered[1].notes).other[:4]
        assert emb.embed_symbolic(roll).shape == (4, 32)
    # damaged weights are refused with one line
    raw = bytearray(out.read_bytes())
    raw[-8:] = b"\x00\x00\xc0\x7f" * 2  # NaNs in the last tensor's bytes
    out.write_bytes(bytes(raw))
    with pytest.raises(ModelError):
        load(out)
