#!/bin/sh
# Build the desktop app as one folder for this OS: dist/MIDI-Zero/ (run it: dist/MIDI-Zero/MIDI-Zero).
#
#   packaging/build.sh            the full app (CPU torch: identify, index, train)
#   packaging/build.sh --onnx     also dist/MIDI-Zero-onnx/ (onnxruntime only, no Training tab)
#   packaging/build.sh --smoke    then run packaging/smoke_test.py (identify + train) on it
#
# It uses a build venv of its own (packaging/.build-venv) holding only the app's runtime
# dependencies plus PyInstaller, so test tools and the dev venv's extras stay out of the
# bundle. hnswlib is compiled there with HNSWLIB_NO_NATIVE=1 (no -march=native), so the app
# runs on any x86-64 CPU, not only the build machine's. Takes a few minutes; run it niced on a
# shared machine: `nice -n 10 packaging/build.sh`.
set -e
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY=${PYTHON:-python3}
VENV=packaging/.build-venv
ONNX=0
SMOKE=0
for arg in "$@"; do
  case "$arg" in
    --onnx) ONNX=1 ;;
    --smoke) SMOKE=1 ;;
    *) echo "usage: $0 [--onnx] [--smoke]" >&2; exit 2 ;;
  esac
done

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
# torch: the CPU build (a local wheelhouse in $PIP_FIND_LINKS, else PyTorch's CPU index).
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  if [ -n "${PIP_FIND_LINKS:-}" ] && ls "${PIP_FIND_LINKS}"/torch-2.13.0* >/dev/null 2>&1; then
    "$VENV/bin/pip" install -q torch==2.13.0
  else
    "$VENV/bin/pip" install -q torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
  fi
fi
# The runtime dependencies from pyproject.toml, environment markers kept (not the package
# itself: the spec takes the source tree), hnswlib from source without -march=native,
# PyInstaller.
"$VENV/bin/python" - > "$VENV/requirements.txt" <<'EOF'
import re
text = open("pyproject.toml").read()
block = re.search(r"^dependencies\s*=\s*\[(.*?)\]", text, re.S | re.M).group(1)
print("\n".join(d for d in re.findall(r'"([^"]+)"', block) if not d.startswith("torch")))
print("pyinstaller==6.22.3")
EOF
HNSWLIB_NO_NATIVE=1 "$VENV/bin/pip" install -q --no-cache-dir --no-binary hnswlib \
  -r "$VENV/requirements.txt"
# Without their declared dependencies (as in scripts/setup.sh): tinysoundfont (SoundFont
# synth; its pyaudio needs portaudio19-dev and is unused) and basic-pitch (only its ONNX
# transcription model is used; its dependencies pull TensorFlow).
"$VENV/bin/pip" install -q --no-deps tinysoundfont==0.3.7 basic-pitch==0.4.0 \
  || echo "tinysoundfont/basic-pitch not installed: no sound / no audio queries in the app"

build() {
  variant=$1
  MIDIZERO_VARIANT=$variant "$VENV/bin/pyinstaller" --noconfirm --clean --log-level WARN \
    --distpath "$ROOT/dist" --workpath "$ROOT/build/pyinstaller-$variant" packaging/midizero.spec
}
build full
echo "built: dist/MIDI-Zero/ ($(du -sh dist/MIDI-Zero | cut -f1))"
if [ "$ONNX" = 1 ]; then
  build onnx
  echo "built: dist/MIDI-Zero-onnx/ ($(du -sh dist/MIDI-Zero-onnx | cut -f1))"
fi
if [ "$SMOKE" = 1 ]; then
  "$VENV/bin/python" packaging/smoke_test.py dist/MIDI-Zero/MIDI-Zero --train
fi
