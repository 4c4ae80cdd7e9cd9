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
# xz (level 1 by default: 113 MB in ~80 s here; level 6 took 6 min for 99 MB) is what lintian
# and every dpkg accept. DEB_COMPRESS=zstd DEB_LEVEL=9 packs in ~25 s (121 MB); dpkg reads it
# from 1.21.18 (Debian 12, Ubuntu 21.10), but lintian calls it a malformed archive.
COMPRESS="${DEB_COMPRESS:-xz}"
LEVEL="${DEB_LEVEL:-1}"
echo "[deb] packing $OUT ($COMPRESS -$LEVEL)"
dpkg-deb --root-owner-group -Z"$COMPRESS" -z"$LEVEL" --threads-max="$(nproc)" \
    --build "$STAGE" "$OUT" >/dev/null
rm -rf "$STAGE"
echo "[deb] done: $OUT ($(du -h "$OUT" | cut -f1))"
