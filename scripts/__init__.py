"""Tools that make the shipped model files, run from the repository root:

    python -m scripts.fit_texture_confidence   # the texture search's calibration (models/default.json)
    python -m scripts.fit_melody_confidence    # models/melody-confidence.npz
    python scripts/convert_ctc_chroma.py ...   # models/ctc-chroma.npz (in a TensorFlow environment)
"""
