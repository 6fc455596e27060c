"""Training package (DESIGN §1.4, §4.3–4.4): data modes, augmentation, losses, the training
loop with resume, evaluation, file safety and the CLI. Small and CPU-only by design."""
from __future__ import annotations

import csv
import json
import math
import threading
from pathlib import Path

import numpy as np
import pretty_midi
import pytest
import torch

from midizero_app.core.training.augment import augment
from midizero_app.core.training.datagen import (
    WindowSource, extract_frame_distributions, frame_distributions, generate_training_data,
    load_frame_distributions, load_frames_json, preprocess_and_save_midi_data)
from midizero_app.core.training.evaluate import evaluate, metrics, read_ground_truth
from midizero_app.core.training.loss import contrastive_loss, info_nce, sim_loss
from midizero_app.core.training.train import TrainConfig, TrainingCancelled, train

TINY_ARCH = {"widths": [4, 8, 8, 8], "blocks": [1, 1, 1, 1]}


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """The test machine is small and busy: one intra-op thread avoids oversubscription."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def write_midi(path: Path, chords: list[list[int]], dt: float = 0.25) -> Path:
    """One chord every ``dt`` seconds (120 bpm, on the grid)."""
    pm = pretty_midi.PrettyMIDI(initial_tempo=120)
    inst = pretty_midi.Instrument(program=0)
    for i, chord in enumerate(chords):
        for p in chord:
            inst.notes.append(pretty_midi.Note(velocity=80, pitch=p, start=i * dt,
                                               end=i * dt + 0.9 * dt))
    pm.instruments.append(inst)
    pm.write(str(path))
    return path


def random_chords(rng: np.random.Generator, n: int) -> list[list[int]]:
    return [sorted(rng.choice(np.arange(40, 90), int(rng.integers(1, 4)), replace=False).tolist())
            for _ in range(n)]


def tiny_config(out_dir: Path, steps: int, **kw) -> TrainConfig:
    return TrainConfig(arch=dict(TINY_ARCH), batch_size=32, epochs=1,
                       samples_per_epoch=32 * steps, lr=1e-3, device="cpu",
                       out_dir=str(out_dir), **kw)


# --- fixtures built once per module -------------------------------------------------------

@pytest.fixture(scope="module")
def real_midi(tmp_path_factory) -> dict:
    """Two small MIDI files, their chords, and the frames JSON preprocessed from them."""
    d = tmp_path_factory.mktemp("real")
    rng = np.random.default_rng(7)
    chords = {"one.mid": random_chords(rng, 23), "two.mid": random_chords(rng, 31)}
    files = [write_midi(d / name, c) for name, c in chords.items()]
    json_path = d / "frames.json"
    data = preprocess_and_save_midi_data(files, json_path)
    return {"dir": d, "files": files, "chords": chords, "json": json_path, "data": data}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> dict:
    """A 40-step training run of a tiny encoder on mode P."""
    out = tmp_path_factory.mktemp("run") / "tiny"
    seen: list[dict] = []
    path = train(tiny_config(out, 40), progress=seen.append)
    return {"path": path, "progress": seen}


@pytest.fixture(scope="module")
def eval_set(tmp_path_factory) -> dict:
    """Three distinct pieces (two share a file name in different folders) and exact
    excerpts of them as queries, with the ground-truth CSV."""
    root = tmp_path_factory.mktemp("eval")
    db, queries = root / "db", root / "queries"
    for d in (db / "a", db / "b", queries):
        d.mkdir(parents=True)
    rng = np.random.default_rng(3)
    rows = []
    for i, rel in enumerate(["a/score.mid", "b/score.mid", "piece.mid"]):
        chords = random_chords(rng, 40)
        write_midi(db / rel, chords)
        write_midi(queries / f"q{i}.mid", chords[10 + i:30 + i])
        rows.append((f"q{i}.mid", rel))
    gt = root / "gt.csv"
    with open(gt, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["query", "gt"])
        w.writerows(rows)
    return {"db": db, "queries": queries, "gt": gt, "root": root}


# --- data modes -----------------------------------------------------------------------------

def write_stats(path: Path, sequences: list[list[list[int]]]) -> Path:
    frame_distributions(sequences, path)
    return path


@pytest.mark.parametrize("mode", ["C", "S", "P", "R"])
def test_modes_give_binary_windows(mode, tmp_path, real_midi):
    params = {}
    if mode == "S":
        params["frame_dist_file"] = write_stats(tmp_path / "s.json",
                                                [[[60, 64], [62], [60, 64, 67], [62]]])
    if mode == "R":
        params["train_data_path"] = real_midi["json"]
    arr = generate_training_data(mode, num_samples=64, seed=1, **params)
    assert arr.dtype == np.uint8 and arr.shape == (64, 10, 88)
    assert set(np.unique(arr)) <= {0, 1}
    notes = arr.sum(axis=2)
    assert notes.min() >= 1 and notes.max() <= 12  # no empty frame, at most note_max
    # seeded: the same call gives the same data
    assert np.array_equal(arr, generate_training_data(mode, num_samples=64, seed=1, **params))


def truncated_rounded_normal_mean(mu: float, sd: float, kmax: int) -> float:
    """E[k] for k = round(Normal(mu, sd)) conditioned on 1 <= k <= kmax."""
    cdf = lambda x: 0.5 * (1 + math.erf((x - mu) / (sd * math.sqrt(2))))  # noqa: E731
    w = [cdf(k + 0.5) - cdf(k - 0.5) for k in range(1, kmax + 1)]
    return sum(k * p for k, p in zip(range(1, kmax + 1), w)) / sum(w)


@pytest.mark.parametrize("n_mean", [6.0, 0.0])
def test_p_mode_note_count_is_the_truncated_normal_mean(n_mean):
    arr = generate_training_data("P", num_samples=3000, n_mean=n_mean, n_std=2.5, seed=2)
    counts = arr.sum(axis=2).ravel()  # 30 000 frames: standard error of the mean < 0.015
    expected = truncated_rounded_normal_mean(n_mean, 2.5, 12)
    assert abs(counts.mean() - expected) < 0.06, (counts.mean(), expected)
    assert counts.min() >= 1 and counts.max() <= 12
    if n_mean == 0.0:
        assert np.mean(counts <= 2) > 0.6  # 1-2-note frames dominate, as DESIGN notes
    # pitches ~ Normal(64, 24) clipped to 21..108: centred near 64
    pitches = np.nonzero(arr)[2] + 21
    assert abs(pitches.mean() - 64.5) < 2.0


def test_c_mode_pitches_uniform_and_counts_uniform():
    arr = generate_training_data("C", num_samples=2000, seed=3)
    per_pitch = arr.sum(axis=(0, 1)).astype(np.float64)
    expected = per_pitch.sum() / 88
    chi2 = ((per_pitch - expected) ** 2 / expected).sum()
    assert chi2 < 87 + 6 * math.sqrt(2 * 87)  # 87 degrees of freedom, generous bound
    counts = arr.sum(axis=2).ravel()
    assert abs(counts.mean() - 6.5) < 0.1  # k ~ U{1..12}
    assert set(np.unique(counts)) == set(range(1, 13))


def test_c_mode_respects_pitch_range():
    arr = generate_training_data("C", num_samples=200, pitch_range=(40, 60), note_max=5, seed=4)
    cols = np.nonzero(arr.sum(axis=(0, 1)))[0] + 21
    assert cols.min() >= 40 and cols.max() <= 60
    assert arr.sum(axis=2).max() <= 5


def test_bad_generator_parameters_are_refused():
    with pytest.raises(ValueError, match="mode"):
        generate_training_data("X", num_samples=1)
    with pytest.raises(ValueError, match="pitch_range"):
        generate_training_data("C", num_samples=1, pitch_range=(0, 127))
    with pytest.raises(ValueError, match="note_max"):
        generate_training_data("C", num_samples=1, pitch_range=(60, 64), note_max=6)
    with pytest.raises(ValueError, match="frame_dist_file"):
        generate_training_data("S", num_samples=1)
    with pytest.raises(ValueError, match="train_data_path"):
        generate_training_data("R", num_samples=1)


A, B, C = [60, 64, 67], [62], [59, 65]


def test_frame_distributions_reproduce_unigram_and_bigram(tmp_path):
    stats = frame_distributions([[A, B, A, C], [[67, 64, 60], B]], tmp_path / "s.json")
    uni = {tuple(f): p for f, p in stats["unigram"]}
    assert uni == pytest.approx({tuple(A): 3 / 6, tuple(B): 2 / 6, tuple(C): 1 / 6})
    bi = {tuple(prev): {tuple(f): p for f, p in nexts} for prev, nexts in stats["bigram"]}
    assert bi.keys() == {tuple(A), tuple(B)}
    assert bi[tuple(A)] == pytest.approx({tuple(B): 2 / 3, tuple(C): 1 / 3})
    assert bi[tuple(B)] == pytest.approx({tuple(A): 1.0})
    assert load_frame_distributions(tmp_path / "s.json") == json.loads(
        json.dumps(stats))  # the saved JSON round-trips


def test_s_mode_follows_the_bigram(tmp_path):
    # a deterministic chain A -> B -> C -> A ...
    path = write_stats(tmp_path / "chain.json", [[A, B, C] * 5 + [A]])
    nxt = {tuple(A): B, tuple(B): C, tuple(C): A}
    src = WindowSource("S", frame_dist_file=path)
    rng = np.random.default_rng(5)
    firsts = set()
    for _ in range(200):
        w = src.draw(rng)
        assert len(w) == 10
        firsts.add(tuple(w[0]))
        for a, b in zip(w, w[1:]):
            assert b == nxt[tuple(a)]
    assert firsts == {tuple(A), tuple(B), tuple(C)}  # the first frame comes from the unigram


def test_s_mode_unseen_frame_falls_back_to_unigram(tmp_path):
    path = write_stats(tmp_path / "dead_end.json", [[A, B]])  # B has no successor
    src = WindowSource("S", frame_dist_file=path)
    rng = np.random.default_rng(6)
    after_b = []
    for _ in range(300):
        w = src.draw(rng)
        for a, b in zip(w, w[1:]):
            assert a != A or b == B
            if a == B:
                after_b.append(b == A)
    assert 0.35 < np.mean(after_b) < 0.65  # unigram: A and B 1/2 each


def test_s_mode_stats_from_npz(tmp_path):
    stats = frame_distributions([[A, B, C, A]])
    np.savez(tmp_path / "s.npz", json=np.array(json.dumps(stats)))
    arr = generate_training_data("S", num_samples=20, frame_dist_file=tmp_path / "s.npz")
    assert arr.shape == (20, 10, 88)


def test_preprocess_gives_the_written_chords(real_midi):
    data = json.loads(real_midi["json"].read_text())
    assert data == {name: c for name, c in real_midi["chords"].items()}
    assert load_frames_json(real_midi["json"]) == data


def test_r_mode_windows_come_from_the_real_frames(real_midi):
    allowed = set()
    for frames in real_midi["chords"].values():
        for s in range(0, len(frames) - 10 + 1, 5):  # hop 5
            allowed.add(json.dumps(frames[s:s + 10]))
    src = WindowSource("R", train_data_path=real_midi["json"])
    rng = np.random.default_rng(8)
    drawn = {json.dumps(src.draw(rng)) for _ in range(200)}
    assert drawn <= allowed
    assert len(drawn) == len(allowed)  # 3 + 5 windows, all reachable


def test_extract_frame_distributions_matches_the_frames(real_midi, tmp_path):
    stats = extract_frame_distributions(real_midi["dir"], tmp_path / "s.json")
    assert stats == frame_distributions(real_midi["chords"].values())
    assert (tmp_path / "s.json").is_file()


def test_saved_training_data_loads_without_pickle(tmp_path):
    arr = generate_training_data("P", num_samples=10, save_path=tmp_path / "d.npz")
    with np.load(tmp_path / "d.npz", allow_pickle=False) as z:
        assert np.array_equal(z["windows"], arr)
        assert str(z["mode"]) == "P"


# --- augmentation ---------------------------------------------------------------------------

def _sets(w):
    return [set(f) for f in w]


@pytest.mark.parametrize("piano", [False, True])
def test_augment_invariants(piano):
    rng = np.random.default_rng(11)
    windows = [WindowSource(m).draw(rng) for m in ("C", "P") for _ in range(600)]
    windows += [[[60]] * 10, [[60, 64, 67]] * 10]
    refs = []
    for w in windows:
        edits: list = []
        out, ref = augment(w, rng, piano=piano, edits=edits)
        refs.append(ref)
        assert len(out) == len(w) == 10
        assert all(f and f == sorted(set(f)) and 21 <= f[0] and f[-1] <= 108 for f in out)
        assert out != [sorted(f) for f in w]
        assert ref <= 1.0
        assert ref == pytest.approx(1.0 - sum(c for _, c in edits))
        assert edits, "a changed window must have paid for its change"
        names = [e for e, _ in edits]
        if not piano:
            assert not {"octave", "split_chord", "merge_frames"} & set(names)
        aligned = not {"insert_frame", "delete_frame", "split_chord", "merge_frames"} & set(names)
        if aligned and "force_change" not in names:
            # frames still line up: every new or lost note was charged for
            new = sum(len(o - i) for o, i in zip(_sets(out), _sets(w)))
            lost = sum(len(i - o) for o, i in zip(_sets(out), _sets(w)))
            added = names.count("add_note") + names.count("octave")
            assert new <= added and lost <= names.count("remove_note")
            if "remove_note" not in names:
                assert new == added
            if added == 0:
                assert lost == names.count("remove_note")
    assert 0.3 < float(np.mean(refs)) < 0.95


class _NoEditRng:
    """An rng whose coin flips never pass, so that augment must force a change."""

    def __init__(self, seed: int):
        self._rng = np.random.default_rng(seed)

    def random(self) -> float:
        return 0.999

    def integers(self, *a, **kw):
        return self._rng.integers(*a, **kw)

    def choice(self, *a, **kw):
        return self._rng.choice(*a, **kw)


@pytest.mark.parametrize("seed", range(20))
def test_augment_forced_change(seed):
    w = WindowSource("P").draw(np.random.default_rng(seed))
    edits: list = []
    out, ref = augment(w, _NoEditRng(seed), edits=edits)
    assert ref == 0.95 and edits == [("force_change", 0.05)]
    diff = [(set(i), set(o)) for i, o in zip(w, out) if set(i) != set(o)]
    assert len(diff) == 1
    before, after = diff[0]
    assert len(before) == len(after) and len(before - after) == 1


# --- losses ---------------------------------------------------------------------------------

def test_info_nce_prefers_aligned_pairs():
    g = torch.Generator().manual_seed(0)
    a = torch.nn.functional.normalize(torch.randn(64, 32, generator=g), dim=1)
    p = torch.nn.functional.normalize(a + 0.2 * torch.randn(64, 32, generator=g), dim=1)
    aligned = info_nce(a, p)
    shuffled = info_nce(a, p[torch.randperm(64, generator=g)])
    assert aligned < shuffled - 1.0
    assert info_nce(a, a, temperature=0.01) < 1e-3  # perfectly aligned, sharp: ~0


def test_sim_loss_zero_when_cos_equals_ref():
    g = torch.Generator().manual_seed(1)
    a = torch.nn.functional.normalize(torch.randn(16, 8, generator=g), dim=1)
    p = torch.nn.functional.normalize(torch.randn(16, 8, generator=g), dim=1)
    cos = (a * p).sum(1)
    assert sim_loss(a, p, cos).item() == pytest.approx(0.0, abs=1e-12)
    assert sim_loss(a, p, cos + 0.1).item() == pytest.approx(0.01, rel=1e-5)
    combined = contrastive_loss(a, p, cos + 0.1, "combine", alpha=0.25)
    assert combined.item() == pytest.approx(0.25 * info_nce(a, p).item() + 0.75 * 0.01, rel=1e-5)
    with pytest.raises(ValueError):
        contrastive_loss(a, p, cos, "nope")


# --- training -------------------------------------------------------------------------------

def test_training_lowers_loss_and_writes_a_loadable_model(tiny_run):
    from midizero_app.core.encoder import load_checkpoint

    seen = tiny_run["progress"]
    assert [s["step"] for s in seen] == [10, 20, 30, 40]
    assert seen[-1]["loss"] < seen[0]["loss"] - 0.1
    path = tiny_run["path"]
    assert path.name == "model.safetensors" and path.with_suffix(".json").is_file()
    model, card = load_checkpoint(path)
    # the export belongs to the weights: the card records its id and content hash
    from midizero_app.core.hashing import file_hash

    assert card["onnx_model_id"] == card["model_id"]
    assert card["onnx_hash"] == file_hash(path.with_suffix(".onnx"))
    assert not [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    assert card["arch"]["widths"] == TINY_ARCH["widths"] and card["steps"] == 40
    assert card["training"]["data_source"] == "P" and "no real music" in card["data_provenance"]
    emb = model(torch.from_numpy(generate_training_data("P", num_samples=4)).float())
    assert emb.shape == (4, 128)
    assert torch.allclose(emb.norm(dim=1), torch.ones(4), atol=1e-5)


def test_training_resumes_after_cancel(tmp_path):
    cfg = tiny_config(tmp_path / "run", 30)
    cancel = threading.Event()

    def stop_at_first_report(info: dict) -> None:
        cancel.set()

    with pytest.raises(TrainingCancelled) as exc:
        train(cfg, progress=stop_at_first_report, cancel=cancel)
    assert exc.value.step == 10
    assert (tmp_path / "run" / "last.pt").is_file()
    assert not (tmp_path / "run" / "model.safetensors").exists()
    seen: list[dict] = []
    path = train(cfg, progress=seen.append)
    assert seen[0]["step"] > 10 and seen[-1]["step"] == 30
    assert json.loads(path.with_suffix(".json").read_text())["steps"] == 30


def test_training_other_window_length(tmp_path):
    from midizero_app.core.encoder import load_checkpoint

    path = train(tiny_config(tmp_path / "w8", 2, win_length=8, data_source="C"))
    model, card = load_checkpoint(path)
    assert card["arch"]["win_length"] == 8
    assert model(torch.zeros(3, 8, 88)).shape == (3, 128)


def test_training_data_error_surfaces_instead_of_hanging(tmp_path, monkeypatch):
    import midizero_app.core.training.train as train_mod

    def broken(*a, **kw):
        raise RuntimeError("augmentation broke")

    monkeypatch.setattr(train_mod, "augment", broken)
    result: list = []

    def run() -> None:
        try:
            train(tiny_config(tmp_path / "broken", 5))
        except Exception as exc:  # noqa: BLE001
            result.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(60)
    assert not t.is_alive(), "train() hung on a failing data generator"
    assert result and "augmentation broke" in str(result[0])


def test_resume_from_an_incompatible_run_is_a_clear_error(tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "last.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="resume"):
        train(tiny_config(tmp_path / "bad", 2))


# --- evaluation -----------------------------------------------------------------------------

def test_metrics_on_hand_made_ranks():
    m = metrics([1, 2, None])
    assert m["recall@1"] == pytest.approx(1 / 3)
    assert m["recall@10"] == pytest.approx(2 / 3)
    assert m["mrr@10"] == pytest.approx((1 + 0.5) / 3)
    assert m["ndcg@10"] == pytest.approx((1 + 1 / math.log2(3)) / 3)
    assert m["queries"] == 3
    assert metrics([11], k=10)["recall@10"] == 0.0
    assert metrics([3, 5], k=4) == pytest.approx(
        {"recall@1": 0.0, "recall@4": 0.5, "mrr@4": 1 / 6, "ndcg@4": 0.5 / 2, "queries": 2})


def test_evaluate_exact_excerpts(eval_set, tiny_run):
    res = evaluate(eval_set["db"], eval_set["queries"], eval_set["gt"], tiny_run["path"])
    assert res["ranks"] == {"q0.mid": 1, "q1.mid": 1, "q2.mid": 1}
    assert res["recall@1"] == 1.0 and res["mrr@10"] == 1.0 and res["ndcg@10"] == 1.0
    assert res["queries"] == 3 and res["errors"] == {}


def test_ground_truth_errors(eval_set, tiny_run, tmp_path):
    gt = tmp_path / "gt.csv"
    gt.write_text("query,gt\nq0.mid,piece.mid\nmissing.mid,piece.mid\n")
    with pytest.raises(ValueError, match="missing.mid"):
        evaluate(eval_set["db"], eval_set["queries"], gt, tiny_run["path"])
    gt.write_text("name,target\nq0.mid,piece.mid\n")
    with pytest.raises(ValueError, match="query,gt"):
        read_ground_truth(gt)
    gt.write_text("query,gt\nq0.mid\n")
    with pytest.raises(ValueError, match="line 2"):
        read_ground_truth(gt)
    with pytest.raises(ValueError, match="cannot read"):
        read_ground_truth(tmp_path / "nope.csv")
    gt.write_text("\ufeffquery,gt\nq0.mid,piece.mid\n")  # as Excel saves it
    assert read_ground_truth(gt) == {"q0.mid": "piece.mid"}


def test_bad_checkpoint_is_a_value_error(eval_set, tmp_path):
    from midizero_app.core.encoder import load_checkpoint
    from midizero_app.core.model_files import ModelError

    for name in ("bad.pt", "bad.safetensors"):
        bad = tmp_path / name
        bad.write_bytes(np.random.default_rng(0).bytes(4096))
        with pytest.raises(ModelError, match=f"cannot load model {name}|cannot read model "
                                             f"{name}"):
            load_checkpoint(bad)
        with pytest.raises(ValueError, match=name):
            evaluate(eval_set["db"], eval_set["queries"], eval_set["gt"], bad)


# --- untrusted data files ---------------------------------------------------------------------

UNPICKLED: list = []


def _mark_unpickled() -> None:
    UNPICKLED.append(True)


class _Trap:
    def __reduce__(self):
        return (_mark_unpickled, ())


@pytest.mark.parametrize("content", [
    "not json", "[1, 2]", '{"a": 3}', '{"a": [[60, "x"]]}', '{"a": [60, 61]}'])
def test_bad_frames_json(tmp_path, content):
    path = tmp_path / "frames.json"
    path.write_text(content)
    with pytest.raises(ValueError, match="frames"):
        load_frames_json(path)
    with pytest.raises(ValueError):
        generate_training_data("R", num_samples=1, train_data_path=path)


def test_frames_json_without_full_windows(tmp_path):
    path = tmp_path / "short.json"
    path.write_text('{"a": [[60], [62]]}')
    with pytest.raises(ValueError, match="no windows"):
        generate_training_data("R", num_samples=1, train_data_path=path)


@pytest.mark.parametrize("content", [
    "not json", "[]", '{"unigram": []}', '{"unigram": [], "bigram": []}',
    '{"unigram": [[[60], 1.0]], "bigram": {}}',
    '{"unigram": [[["x"], 1.0]], "bigram": []}',
    '{"unigram": [[[200], 1.0]], "bigram": []}',
    '{"unigram": [[[60], -1.0]], "bigram": []}',
    '{"unigram": [[[60], 1.0]], "bigram": [[[60], [[[61], "p"]]]]}',
    '{"unigram": [60], "bigram": []}'])
def test_bad_stats_file(tmp_path, content):
    path = tmp_path / "stats.json"
    path.write_text(content)
    with pytest.raises(ValueError, match="frame-statistics"):
        generate_training_data("S", num_samples=1, frame_dist_file=path)


def test_stats_npz_is_never_unpickled(tmp_path):
    path = tmp_path / "stats.npz"
    np.savez(path, json=np.array([_Trap()], dtype=object))
    with pytest.raises(ValueError, match="frame-statistics"):
        load_frame_distributions(path)
    with pytest.raises(ValueError):
        generate_training_data("S", num_samples=1, frame_dist_file=path)
    assert not UNPICKLED


# --- CLI ------------------------------------------------------------------------------------

@pytest.mark.parametrize("spelling", ["published", "dashed"])
def test_cli_gen_data(tmp_path, capsys, spelling):
    from midizero_app.cli import main

    out = tmp_path / "x.npz"
    args = (["--data_source", "P", "--num_samples", "50", "--n_mean", "0.0"]
            if spelling == "published" else
            ["--data-source", "p", "--num-samples", "50", "--n-mean", "0.0"])
    assert main(["gen-data", *args, "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["windows"] == 50 and report["mean_notes_per_frame"] < 3
    with np.load(out, allow_pickle=False) as z:
        assert z["windows"].shape == (50, 10, 88)


def test_cli_gen_data_bad_input_is_one_clear_line(tmp_path, capsys):
    from midizero_app.cli import main

    bad = tmp_path / "s.json"
    bad.write_text("{}")
    assert main(["gen-data", "--data_source", "S", "--frame_dist_file", str(bad),
                 "--num_samples", "5"]) == 1
    err = capsys.readouterr().err
    assert "frame-statistics" in err and "Traceback" not in err


def test_cli_train_help(capsys):
    from midizero_app.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["train", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--data-source" in out and "--batch_size" in out


def test_cli_train_ctrl_c_saves_and_resumes(tmp_path):
    """^C finishes the current step, keeps last.pt (to resume from) and exits 130."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "midizero_app.cli", "train", "--widths", "4", "8", "8", "8",
           "--batch_size", "16", "--samples_per_epoch", "160", "--epochs", "1000",
           "--lr", "1e-3", "--device", "cpu", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    log = tmp_path / "stderr.txt"
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, cwd=Path(__file__).parents[1], env=env,
                                stdout=subprocess.DEVNULL, stderr=f)
    try:
        deadline = time.monotonic() + 60
        while not (out / "last.pt").is_file():  # the first epoch (10 steps) is saved
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = log.read_text()
    assert proc.returncode == 130, err
    assert "resume" in err and "Traceback" not in err
    ck = torch.load(out / "last.pt", weights_only=True)
    assert ck["step"] >= 10


def test_transcription_augmentations():
    rng = np.random.default_rng(5)
    windows = [WindowSource("P", n_mean=2.0).draw(rng) for _ in range(800)]
    seen: set[str] = set()
    for w in windows:
        edits: list = []
        out, ref = augment(w, rng, transcription=True, edits=edits)
        assert len(out) == 10 and all(f and 21 <= f[0] and f[-1] <= 108 for f in out)
        assert ref == pytest.approx(1.0 - sum(c for _, c in edits))
        seen |= {e for e, _ in edits}
        plain: list = []
        augment(w, rng, edits=plain)
        assert not {"missed_note", "octave_error", "double_onset", "spurious_note"} & \
            {e for e, _ in plain}
    assert {"missed_note", "octave_error", "double_onset", "spurious_note"} <= seen


def test_melody_pairs_are_key_normalised_tunes_with_slips():
    from midizero_app.core.melody import melody_windows
    from midizero_app.core.training.melody_pairs import melody_pair, remembered, tune

    rng = np.random.default_rng(3)
    line = tune(rng, 13)
    slipped, n = remembered(line, rng)
    assert 1 <= n <= 3 and abs(len(slipped) - len(line)) <= n
    for _ in range(200):
        a, p, ref = melody_pair(rng)
        assert a.shape == p.shape == (10, 88)
        # one note per row, as the melody view's windows
        assert (a.sum(1) == 1).all() and (p.sum(1) == 1).all()
        assert ref in (pytest.approx(0.9), pytest.approx(0.8), pytest.approx(0.7))
    # the same tune in another key gives the same anchor window
    w1 = melody_windows(line[:10], 10)[0][0]
    w2 = melody_windows(line[:10] + 5, 10)[0][0]
    assert (w1 == w2).all()


def test_a_share_of_each_batch_is_melody_pairs():
    from midizero_app.core.training.train import PairBatches

    batches = PairBatches(TrainConfig(data_source="P", n_mean=2.0, batch_size=16,
                                      melody_pairs=0.25), seed=0)
    try:
        a, p, ref = batches.next()
    finally:
        batches.close()
    assert a.shape == p.shape == (16, 10, 88) and ref.shape == (16,)
    one_note_rows = (a.sum(2) == 1).all(1)
    assert one_note_rows[-4:].all()  # the last quarter: tunes, one note per row
