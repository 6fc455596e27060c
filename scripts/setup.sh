#!/bin/sh
# Create .venv with MIDI-Zero desktop and its test tools (Python 3.10-3.13).
# torch: the CPU build. Where a local wheelhouse ($PIP_FIND_LINKS) has torch 2.13.0 it is
# used; elsewhere PyTorch's CPU index (PyPI's torch is the multi-GB CUDA build).
set -e
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  if [ -n "${PIP_FIND_LINKS:-}" ] && ls "${PIP_FIND_LINKS}"/torch-2.13.0* >/dev/null 2>&1; then
    .venv/bin/pip install -q torch==2.13.0
  else
    .venv/bin/pip install -q torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
  fi
fi
.venv/bin/pip install -q -e ".[test,bench]"
# basic-pitch ships the transcription model (nmp.onnx, run with onnxruntime); its declared
# dependencies pull TensorFlow, and tinysoundfont's pull pyaudio: neither is needed.
.venv/bin/pip install -q --no-deps basic-pitch==0.4.0 tinysoundfont==0.3.7
