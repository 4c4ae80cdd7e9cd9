#!/usr/bin/env bash
# Build the one-folder GUI bundle into dist/"Isengard Desktop"/ with PyInstaller.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYINSTALLER_VERSION=6.22.0
APP_NAME="Isengard Desktop"
PY=.venv/bin/python

[ -f isengard_desktop/__main__.py ] || {
    echo "[package] ERROR: isengard_desktop/__main__.py does not exist; nothing to build" >&2
    exit 1
}

bash ./bootstrap.sh

have="$("$PY" -c 'import PyInstaller; print(PyInstaller.__version__)' 2>/dev/null || true)"
if [ "$have" != "$PYINSTALLER_VERSION" ]; then
    echo "[package] installing pyinstaller==$PYINSTALLER_VERSION into .venv"
    "$PY" -m pip --no-input --disable-pip-version-check install -q \
        "pyinstaller==$PYINSTALLER_VERSION"
fi

# The app's own wheel rides in the bundle (resources/runtime/): the trainer runtime installs it
# so `<runtime python> -m isengard_desktop.training_runtime` works (a frozen app has no sources).
rm -rf build/appwheel
echo "[package] building the app's wheel for the trainer runtime"
"$PY" -m pip --no-input --disable-pip-version-check wheel -q --no-deps -w build/appwheel .

echo "[package] building dist/$APP_NAME/ (about a minute)"
"$PY" -m PyInstaller --noconfirm --clean --log-level WARN \
    --distpath dist --workpath build/pyinstaller packaging/isengard.spec

out="dist/$APP_NAME"
[ -d "$out" ] || { echo "[package] ERROR: $out was not produced" >&2; exit 1; }
# Guard: the GUI bundle must not carry the trainer's ML stack, nor PyAV (GPL x264 in its FFmpeg).
for mod in torch diffusers transformers peft av av.libs dlib; do
    if [ -e "$out/_internal/$mod" ]; then
        echo "[package] ERROR: $mod ended up in the GUI bundle ($out/_internal/$mod)" >&2
        exit 1
    fi
done
# ... nor any GPL codec library (x264/x265: PyAV's FFmpeg, pillow-heif's encoder; HEIC photos
# are read with pi-heif, LGPL libheif + libde265)
gpl="$(find "$out" \( -name 'libx264*' -o -name 'libx265*' -o -name 'pillow_heif*' \) -print -quit)"
if [ -n "$gpl" ]; then
    echo "[package] ERROR: a GPL codec library ended up in the GUI bundle ($gpl)" >&2
    exit 1
fi
for need in "_internal/resources/runtime/cpu.txt" "_internal/uv"; do
    [ -e "$out/$need" ] || { echo "[package] ERROR: $out/$need is missing" >&2; exit 1; }
done
ls "$out"/_internal/resources/runtime/isengard_desktop-*.whl >/dev/null 2>&1 \
    || { echo "[package] ERROR: the app's wheel is missing from the bundle" >&2; exit 1; }
echo "[package] done: $out ($(du -sh "$out" | cut -f1))"
