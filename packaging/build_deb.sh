#!/usr/bin/env bash
# Build dist/isengard-desktop_<version>_<arch>.deb from the bundle packaging/build.sh made.
# The layout and the control file come from packaging/debian.py; dpkg-deb packs them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PY=.venv/bin/python
BUNDLE="dist/Isengard Desktop"
STAGE=build/deb/root

command -v dpkg-deb >/dev/null 2>&1 || {
    echo "[deb] dpkg-deb not found (not a Debian/Ubuntu system): no .deb built" >&2
    exit 0
}
[ -x "$BUNDLE/Isengard Desktop" ] || {
    echo "[deb] ERROR: $BUNDLE/Isengard Desktop missing; run packaging/build.sh first" >&2
    exit 1
}
ARCH="$(dpkg --print-architecture)"
VERSION="$("$PY" packaging/debian.py version)"
OUT="dist/isengard-desktop_${VERSION}_${ARCH}.deb"

"$PY" packaging/debian.py stage --bundle "$BUNDLE" --root "$STAGE" --arch "$ARCH"
rm -f "$OUT"
echo "[deb] packing $OUT (zstd -${DEB_ZSTD_LEVEL:-9})"
dpkg-deb --root-owner-group -Zzstd -z"${DEB_ZSTD_LEVEL:-9}" --threads-max="$(nproc)" --build "$STAGE" "$OUT" >/dev/null
rm -rf "$STAGE"
echo "[deb] done: $OUT ($(du -h "$OUT" | cut -f1))"
