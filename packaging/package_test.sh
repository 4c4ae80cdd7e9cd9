#!/usr/bin/env bash
# make package-test: build the bundle and the .deb (make package), then check what a user gets.
#
#   1. the bundle's --smoke-test, offscreen, on a fresh ISENGARD_HOME;
#   2. the .deb: dpkg-deb --info/--contents, desktop-file-validate and lintian when installed;
#      with PACKAGE_TEST_INSTALL_DEB=1 (root only; changes this machine): dpkg -i, the installed
#      launcher's --smoke-test, dpkg -r, and checks that /opt is clean and user data is kept;
#   3. training through the frozen app: an offline payload (dist/offline-cpu/, made by
#      `make offline-payload DEVICE=cpu` when that target exists), `<bundle> runtime install
#      --offline dist/offline-cpu`, then `<bundle> selftest --json --device cpu` must train the
#      tiny model. Skipped with a loud note while neither the payload nor its target exists;
#      PACKAGE_TEST_REQUIRE_TRAINING=1 turns that note into a failure.
#
# PACKAGE_TEST_SKIP_BUILD=1 reuses dist/ as it is. Exit status 0 only when every part that ran
# passed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PY=.venv/bin/python
BUNDLE="dist/Isengard Desktop"
EXE="$BUNDLE/Isengard Desktop"
PAYLOAD=dist/offline-cpu
say() { printf '[package-test] %s\n' "$*"; }
die() { printf '[package-test] FAILED: %s\n' "$*" >&2; exit 1; }
clock() { date +%s.%N; }
since() { "$PY" -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f} s')" "$1" "$(clock)"; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/isengard-package-test.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

if [ "${PACKAGE_TEST_SKIP_BUILD:-0}" != 1 ]; then
    t0="$(clock)"
    make --no-print-directory package
    say "make package: $(since "$t0")"
fi
[ -x "$EXE" ] || die "$EXE missing (make package did not build it)"
# files the frozen app reads from beside its modules (sys._MEIPASS)
for data in resources/theme/dark.qss resources/icons/isengard-256.png workflows profiles \
            isengard_desktop/plugins/external/trainer_shim.py; do
    [ -e "$BUNDLE/_internal/$data" ] || die "the bundle lacks _internal/$data"
done
VERSION="$("$PY" packaging/debian.py version)"

# Checks the --smoke-test JSON line: our version, the library ready, the data folder we chose.
check_smoke() {  # check_smoke <output file> <expected data folder>
    "$PY" - "$1" "$2" "$VERSION" <<'EOF'
import json, sys
out, home, version = sys.argv[1:]
lines = [l for l in open(out, encoding="utf-8").read().splitlines() if l.startswith("{")]
if not lines:
    sys.exit(f"no JSON line in the smoke-test output ({out})")
data = json.loads(lines[-1])
problems = []
if data.get("version") != version:
    problems.append(f"version {data.get('version')!r}, expected {version!r}")
if data.get("ready") is not True:
    problems.append("the library did not become ready")
if not str(data.get("data_dir", "")).startswith(home):
    problems.append(f"data_dir {data.get('data_dir')!r} is not under {home}")
if not data.get("tabs"):
    problems.append("no tabs")
if problems:
    sys.exit("; ".join(problems))
print(f"tabs: {', '.join(data['tabs'])}")
EOF
}

# --- 1. the bundle's smoke test ------------------------------------------------------------
t0="$(clock)"
ISENGARD_HOME="$WORK/smoke" QT_QPA_PLATFORM=offscreen "$EXE" --smoke-test >"$WORK/smoke.out" 2>&1 \
    || { cat "$WORK/smoke.out" >&2; die "the bundle's --smoke-test exited non-zero"; }
check_smoke "$WORK/smoke.out" "$WORK/smoke" || { cat "$WORK/smoke.out" >&2; die "smoke test"; }
say "bundle --smoke-test: ok ($(since "$t0"))"

# --- 2. the .deb ----------------------------------------------------------------------------
DEB="$(ls dist/isengard-desktop_"$VERSION"_*.deb 2>/dev/null | head -n1 || true)"
if [ -z "$DEB" ]; then
    command -v dpkg-deb >/dev/null 2>&1 && die "make package made no .deb"
    say ".deb: not built (no dpkg-deb on this system)"
else
    dpkg-deb --info "$DEB" >"$WORK/info"
    dpkg-deb --contents "$DEB" >"$WORK/contents"
    grep -q "Version: $VERSION" "$WORK/info" || die "$DEB: control has no Version: $VERSION"
    for path in "./opt/isengard-desktop/Isengard Desktop" \
                "./usr/bin/isengard-desktop -> /opt/isengard-desktop/Isengard Desktop" \
                ./usr/share/applications/isengard-desktop.desktop \
                ./usr/share/icons/hicolor/16x16/apps/isengard-desktop.png \
                ./usr/share/icons/hicolor/512x512/apps/isengard-desktop.png \
                ./usr/share/icons/hicolor/scalable/apps/isengard-desktop.svg; do
        grep -qF "$path" "$WORK/contents" || die "$DEB does not hold $path"
    done
    if grep -E '\./(home|root)/' "$WORK/contents"; then die "$DEB installs into a home folder"; fi
    say ".deb layout: ok ($DEB, $(du -h "$DEB" | cut -f1))"
    if command -v desktop-file-validate >/dev/null 2>&1; then
        desktop-file-validate packaging/isengard-desktop.desktop || die "desktop-file-validate"
        say "desktop-file-validate: ok"
    fi
    if command -v lintian >/dev/null 2>&1; then
        # reported, not fatal for warnings; errors are listed in packaging/README.md
        lintian --no-tag-display-limit "$DEB" >"$WORK/lintian" 2>&1 || true
        say "lintian: $(grep -c '^E:' "$WORK/lintian" || true) errors, $(grep -c '^W:' "$WORK/lintian" || true) warnings (full list: PACKAGE_TEST_LINTIAN=1)"
        [ "${PACKAGE_TEST_LINTIAN:-0}" = 1 ] && cat "$WORK/lintian"
    fi
    if [ "${PACKAGE_TEST_INSTALL_DEB:-0}" = 1 ]; then
        [ "$(id -u)" = 0 ] || die "PACKAGE_TEST_INSTALL_DEB=1 needs root"
        status="$(dpkg-query -W -f='${Status}' isengard-desktop 2>/dev/null || true)"
        [ "$status" != "install ok installed" ] || die "isengard-desktop is already installed"
        DATA="$WORK/user-data"
        dpkg -i "$DEB" >/dev/null
        ISENGARD_HOME="$DATA" QT_QPA_PLATFORM=offscreen /usr/bin/isengard-desktop --smoke-test \
            >"$WORK/installed.out" 2>&1 || { dpkg -r isengard-desktop >/dev/null; die "installed --smoke-test"; }
        check_smoke "$WORK/installed.out" "$DATA" || { dpkg -r isengard-desktop >/dev/null; die "installed smoke"; }
        for step in -r -P; do      # remove, then purge: neither may touch the user's data
            dpkg "$step" isengard-desktop >/dev/null
            [ ! -e /opt/isengard-desktop ] || die "/opt/isengard-desktop is left after dpkg $step"
            [ ! -e /usr/bin/isengard-desktop ] || die "/usr/bin/isengard-desktop is left after dpkg $step"
            [ ! -e /usr/share/applications/isengard-desktop.desktop ] || die "menu entry left after dpkg $step"
            [ -d "$DATA/data" ] && [ -n "$(ls -A "$DATA")" ] || die "dpkg $step removed the user data in $DATA"
        done
        say ".deb install/smoke/remove/purge: ok (user data kept: $(ls "$DATA" | tr '\n' ' '))"
    fi
fi

# --- 3. training through the frozen app and an offline runtime -------------------------------
if [ ! -f "$PAYLOAD/manifest.json" ] && make -n offline-payload DEVICE=cpu >/dev/null 2>&1; then
    t0="$(clock)"
    # PAYLOAD_FLAGS: --without-python where releases.astral.sh cannot be reached (the
    # frozen app then needs a Python 3.11 on this machine, see packaging/README.md)
    make --no-print-directory offline-payload DEVICE=cpu PAYLOAD_FLAGS="${PAYLOAD_FLAGS:-}"
    say "make offline-payload DEVICE=cpu: $(since "$t0")"
fi
if [ ! -f "$PAYLOAD/manifest.json" ]; then
    say "NOT RUN: training through the bundle (no $PAYLOAD/manifest.json and no"
    say "         'make offline-payload' target to build it)"
    [ "${PACKAGE_TEST_REQUIRE_TRAINING:-0}" = 1 ] && die "training part required but not run"
    exit 0
fi
TRAIN_HOME="$WORK/train"
t0="$(clock)"
ISENGARD_HOME="$TRAIN_HOME" "$EXE" runtime install --offline "$PAYLOAD" \
    || die "'$EXE runtime install --offline $PAYLOAD' failed"
say "runtime install from $PAYLOAD: $(since "$t0")"
t0="$(clock)"
ISENGARD_HOME="$TRAIN_HOME" QT_QPA_PLATFORM=offscreen "$EXE" selftest --json --device cpu \
    >"$WORK/selftest.json" || { cat "$WORK/selftest.json" >&2; die "bundle selftest exited non-zero"; }
"$PY" - "$WORK/selftest.json" <<'EOF' || die "bundle selftest did not train"
import json, os, sys
lines = [l for l in open(sys.argv[1], encoding="utf-8").read().splitlines() if l.startswith("{")]
result = json.loads(lines[-1])
failed = [c.get("title") or c.get("name") for c in result.get("checks", []) if not c.get("ok")]
if not result.get("ok"):
    sys.exit(f"selftest not ok; failed checks: {failed}")
lora = result.get("lora")
if not lora or not os.path.isfile(lora):
    sys.exit(f"selftest says ok but its LoRA {lora!r} is not a file")
print(f"selftest ok: {result.get('steps')} steps on {result.get('device')}, "
      f"loss {result.get('first_loss')} -> {result.get('last_loss')}, LoRA {lora}")
EOF
say "bundle selftest --json through the offline runtime: ok ($(since "$t0"))"
