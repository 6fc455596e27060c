"""Convert one of Zalkow & Müller's CTC chroma models (pip package ``ctc-chroma``, MIT) from
its TensorFlow checkpoint to ``models/ctc-chroma.npz``, which the chroma route runs with torch
(midizero_app/audio/chroma_route.py). Run once, in a throwaway environment with TensorFlow;
TensorFlow is never needed at run time::

    python3 -m venv /tmp/tfenv && /tmp/tfenv/bin/pip install tensorflow-cpu
    pip download --no-deps ctc-chroma==2.1 -d /tmp/ctc && unzip -q /tmp/ctc/*.whl -d /tmp/ctc/x
    /tmp/tfenv/bin/python scripts/convert_ctc_chroma.py /tmp/ctc/x/ctc_chroma/models \\
        --model v2_ctc_train123valid4

The checkpoint's variables are read with ``tf.train.load_checkpoint`` (no Keras model is
built). The file also holds a check: a seeded random input and the output of the network
computed here with TensorFlow's own ops (``tf.nn.conv2d``, SAME padding), so the torch port
is tested against TensorFlow without TensorFlow (tests/test_chroma.py).

Network (ctc_chroma/models.py): input (time, 216 HCQT bins, 6 harmonics); five 3×3 / 3×42
convolutions with leaky ReLU (slope 0.3), a 1×1 sigmoid to a pitch salience (time, 216),
then a fixed 216 → 12 chroma pooling and a learnt 216 → 1 blank ("epsilon") unit, softmax
over the 13.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

LAYERS = ["bendy1", "bendy2", "smoothy1", "smoothy2", "distribute", "squishy"]


def reference_forward(tf, w: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """The network in TensorFlow ops: ``x`` (1, time, 216, 6) → (1, time, 13)."""
    y = tf.constant(x)
    for i, name in enumerate(LAYERS):
        y = tf.nn.conv2d(y, w[f"{name}.kernel"], strides=1, padding="SAME") + w[f"{name}.bias"]
        y = tf.nn.sigmoid(y) if name == "squishy" else tf.nn.leaky_relu(y, alpha=0.3)
    s = tf.squeeze(y, -1)
    chroma = tf.einsum("btp,pc->btc", s, w["chroma_pool.kernel"])
    eps = tf.einsum("btp,pc->btc", s, w["eps_pool.kernel"]) + w["eps_pool.bias"]
    return tf.nn.softmax(tf.concat([chroma, eps], -1), axis=-1).numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models_dir", type=Path, help="ctc_chroma/models of the unpacked wheel")
    ap.add_argument("--model", default="v2_ctc_train123valid4")
    ap.add_argument("--out", type=Path,
                    default=Path(__file__).resolve().parents[1] / "models" / "ctc-chroma.npz")
    args = ap.parse_args()
    import tensorflow as tf

    reader = tf.train.load_checkpoint(str(args.models_dir / f"model_{args.model}"))
    w: dict[str, np.ndarray] = {}
    for i, name in enumerate(LAYERS):
        for part in ("kernel", "bias"):
            w[f"{name}.{part}"] = reader.get_tensor(
                f"layer_with_weights-{i}/{part}/.ATTRIBUTES/VARIABLE_VALUE").astype(np.float32)
    w["chroma_pool.kernel"] = reader.get_tensor(
        "layer_with_weights-6/layer/kernel/.ATTRIBUTES/VARIABLE_VALUE").astype(np.float32)
    for part in ("kernel", "bias"):
        w[f"eps_pool.{part}"] = reader.get_tensor(
            f"layer_with_weights-7/layer/{part}/.ATTRIBUTES/VARIABLE_VALUE").astype(np.float32)
    x = np.random.default_rng(0).random((1, 16, 216, 6), dtype=np.float32)
    x /= np.linalg.norm(x, axis=2, keepdims=True)  # as the app's input: unit norm per harmonic
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **w, check_input=x, check_output=reference_forward(tf, w, x),
                        model_id=np.array(args.model))
    print(f"{args.model}: {sum(v.size for v in w.values())} weights → {args.out} "
          f"({args.out.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
