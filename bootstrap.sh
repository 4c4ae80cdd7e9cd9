#!/usr/bin/env bash
# Bootstrap the development environment for Isengard Desktop.
#
#   ./bootstrap.sh               create .venv (if needed) and install the app's pinned dependencies
#   ./bootstrap.sh --test        same, plus the `test` extra (pytest, pytest-qt, ...)
#   ./bootstrap.sh --check-only  report the Python it would use and missing system libraries;
#                                installs nothing
#
# Environment:
#   ISENGARD_PYTHON=/path/to/python   use this interpreter (must be >= 3.11)
#   ISENGARD_TORCH_INDEX=<url>        install torch from this package index first (e.g. a CUDA
#                                     build); the version stays the one pinned in pyproject.toml
#   ISENGARD_SKIP_SYSTEM_LIBS=1       do not check/install the Qt system libraries
#   ISENGARD_VERBOSE=1                show pip's output instead of only writing it to the log
#
# Never prompts. Safe to run again: a stamp file skips the install when nothing changed.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
ROOT="$(pwd -P)"
VENV="$ROOT/.venv"
STAMP="$VENV/.isengard-stamp"
LOG="$VENV/isengard-bootstrap.log"
MIN_MAJOR=3
MIN_MINOR=11

say() { printf '[bootstrap] %s\n' "$*"; }
warn() { printf '[bootstrap] WARNING: %s\n' "$*" >&2; }
die() { printf '[bootstrap] ERROR: %s\n' "$*" >&2; exit 1; }
trap 'rc=$?; printf "[bootstrap] ERROR: command failed (exit %s) at line %s: %s\n" "$rc" "$LINENO" "$BASH_COMMAND" >&2' ERR

MODE=install
EXTRAS=""
for arg in "$@"; do
    case "$arg" in
        --test) EXTRAS="test" ;;
        --check-only) MODE=check ;;
        -h|--help) sed -n '2,16p' "$ROOT/$(basename "${BASH_SOURCE[0]}")" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option: $arg (try --help)" ;;
    esac
done

# ---------------------------------------------------------------------------------------------
# Python >= 3.11
# ---------------------------------------------------------------------------------------------
python_ok() {  # usable interpreter of a recent enough version?
    "$1" -c "import sys; sys.exit(0 if sys.version_info >= ($MIN_MAJOR, $MIN_MINOR) else 1)" \
        >/dev/null 2>&1
}

find_python() {
    local cand path
    # 3.11 first: it is the version the pinned torch/PySide6 set is tested with.
    for cand in python3.11 python3 python3.12 python3.13; do
        path="$(command -v "$cand" 2>/dev/null)" || continue
        if python_ok "$path"; then
            printf '%s\n' "$path"
            return 0
        fi
    done
    return 1
}

if [ -n "${ISENGARD_PYTHON:-}" ]; then
    python_ok "$ISENGARD_PYTHON" \
        || die "ISENGARD_PYTHON=$ISENGARD_PYTHON is not a working Python >= $MIN_MAJOR.$MIN_MINOR"
    PY="$ISENGARD_PYTHON"
else
    PY="$(find_python)" || die "no Python >= $MIN_MAJOR.$MIN_MINOR found (tried python3.11, python3, python3.12, python3.13).
  Install Python 3.11, for example:
    Debian/Ubuntu:  sudo apt-get install python3.11 python3.11-venv
                    (older Ubuntu releases: from the deadsnakes PPA)
    Fedora:         sudo dnf install python3.11
    macOS:          brew install python@3.11
    any system:     pyenv install 3.11
  or point ISENGARD_PYTHON at an existing interpreter."
fi
PY_VERSION="$("$PY" -c 'import platform; print(platform.python_version())')"
PY_MM="$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"

# ---------------------------------------------------------------------------------------------
# Qt system libraries (Linux only). soname -> Debian/Ubuntu package.
# ---------------------------------------------------------------------------------------------
QT_LIBS=(
    # needed even with QT_QPA_PLATFORM=offscreen
    "libglib-2.0.so.0:libglib2.0-0"
    "libGL.so.1:libgl1"
    "libEGL.so.1:libegl1"
    "libxkbcommon.so.0:libxkbcommon0"
    "libfontconfig.so.1:libfontconfig1"
    "libdbus-1.so.3:libdbus-1-3"
    # needed for a real X display (the xcb platform plugin)
    "libxkbcommon-x11.so.0:libxkbcommon-x11-0"
    "libxcb-cursor.so.0:libxcb-cursor0"
    "libxcb-icccm.so.4:libxcb-icccm4"
    "libxcb-keysyms.so.1:libxcb-keysyms1"
    "libxcb-shape.so.0:libxcb-shape0"
    "libxcb-randr.so.0:libxcb-randr0"
    "libxcb-render-util.so.0:libxcb-render-util0"
    "libxcb-image.so.0:libxcb-image0"
    "libxcb-xinerama.so.0:libxcb-xinerama0"
)
MISSING_PKGS=()

find_ldconfig() {
    command -v ldconfig 2>/dev/null && return 0
    local p
    for p in /sbin/ldconfig /usr/sbin/ldconfig; do
        [ -x "$p" ] && { printf '%s\n' "$p"; return 0; }
    done
    return 1
}

check_qt_libs() {  # fills MISSING_PKGS; returns 1 when it cannot tell
    MISSING_PKGS=()
    local ldc cache entry so pkg
    if ldc="$(find_ldconfig)"; then
        cache="$("$ldc" -p 2>/dev/null | awk 'NR > 1 {print $1}' || true)"
        for entry in "${QT_LIBS[@]}"; do
            so="${entry%%:*}"; pkg="${entry#*:}"
            grep -qxF "$so" <<<"$cache" || MISSING_PKGS+=("$pkg")
        done
    elif command -v dpkg >/dev/null 2>&1; then
        for entry in "${QT_LIBS[@]}"; do
            pkg="${entry#*:}"
            dpkg -s "$pkg" >/dev/null 2>&1 || MISSING_PKGS+=("$pkg")
        done
    else
        return 1
    fi
}

with_timeout() {  # apt must not hang CI forever on a dead mirror
    if command -v timeout >/dev/null 2>&1; then timeout 900 "$@"; else "$@"; fi
}

ensure_qt_libs() {
    [ "$(uname -s)" = Linux ] || return 0
    [ "${ISENGARD_SKIP_SYSTEM_LIBS:-0}" = 1 ] && return 0
    if ! check_qt_libs; then
        warn "cannot check Qt system libraries (no ldconfig or dpkg); skipping"
        return 0
    fi
    [ "${#MISSING_PKGS[@]}" -eq 0 ] && return 0

    local pkgs="${MISSING_PKGS[*]}"
    if [ "$MODE" = check ]; then
        say "missing Qt system libraries: $pkgs"
        command -v apt-get >/dev/null 2>&1 && say "  install with: sudo apt-get install -y --no-install-recommends $pkgs"
        return 0
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        warn "missing Qt system libraries (Debian/Ubuntu package names): $pkgs"
        warn "install their equivalents with your package manager; offscreen tests may still work"
        return 0
    fi
    if [ "$(id -u)" -ne 0 ]; then
        warn "missing Qt system libraries; install them with:"
        warn "  sudo apt-get install -y --no-install-recommends $pkgs"
        warn "continuing (offscreen tests may still work)"
        return 0
    fi
    say "installing Qt system libraries with apt: $pkgs"
    if with_timeout env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null 2>&1 \
        && with_timeout env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            --no-install-recommends "${MISSING_PKGS[@]}" </dev/null >/dev/null 2>&1; then
        check_qt_libs || true
        [ "${#MISSING_PKGS[@]}" -eq 0 ] || warn "still missing after apt: ${MISSING_PKGS[*]}"
    else
        warn "apt-get could not install: $pkgs (continuing; offscreen tests may still work)"
    fi
}

# ---------------------------------------------------------------------------------------------
# Stamp: what the current install was made from.
# ---------------------------------------------------------------------------------------------
stamp_for() {  # $1 = extras
    "$PY" - "$1" "$ROOT" "${ISENGARD_TORCH_INDEX:-}" "$PY_MM" <<'PYEOF'
import hashlib, sys
h = hashlib.sha256()
for name in ("pyproject.toml", "bootstrap.sh"):
    with open(name, "rb") as f:
        h.update(name.encode() + b"\0" + f.read() + b"\0")
for value in sys.argv[1:]:  # extras, repo path, torch index, python major.minor
    h.update(value.encode() + b"\0")
print(h.hexdigest())
PYEOF
}

venv_ok() {
    [ -x "$VENV/bin/python" ] && python_ok "$VENV/bin/python"
}

stamp_current() {
    venv_ok && [ -f "$STAMP" ] || return 1
    local have; have="$(cat "$STAMP")"
    [ "$have" = "$(stamp_for "$EXTRAS")" ] && return 0
    # A venv made with the test extra also serves a plain run.
    [ -z "$EXTRAS" ] && [ "$have" = "$(stamp_for test)" ] && return 0
    return 1
}

# ---------------------------------------------------------------------------------------------
# --check-only
# ---------------------------------------------------------------------------------------------
if [ "$MODE" = check ]; then
    say "python: $PY (Python $PY_VERSION)"
    if [ "$(uname -s)" = Linux ] && [ "${ISENGARD_SKIP_SYSTEM_LIBS:-0}" != 1 ]; then
        if check_qt_libs; then
            if [ "${#MISSING_PKGS[@]}" -eq 0 ]; then
                say "Qt system libraries: all present"
            else
                ensure_qt_libs
            fi
        else
            say "Qt system libraries: cannot check (no ldconfig or dpkg)"
        fi
    fi
    if stamp_current; then
        say ".venv: up to date"
    elif [ -d "$VENV" ]; then
        say ".venv: present, would (re)install dependencies"
    else
        say ".venv: missing, would be created"
    fi
    exit 0
fi

# ---------------------------------------------------------------------------------------------
# Install
# ---------------------------------------------------------------------------------------------
ensure_qt_libs

if stamp_current; then
    say "environment up to date ($VENV, Python $("$VENV/bin/python" -c 'import platform; print(platform.python_version())'))"
    exit 0
fi

if [ -e "$VENV" ] && ! venv_ok; then
    say "existing .venv is broken or too old; recreating it"
    rm -rf "$VENV"
fi
if [ ! -d "$VENV" ]; then
    if ! "$PY" -c 'import venv, ensurepip' >/dev/null 2>&1; then
        die "$PY has no working venv module.
  On Debian/Ubuntu install it with: sudo apt-get install python$PY_MM-venv"
    fi
    say "creating .venv with $PY (Python $PY_VERSION)"
    "$PY" -m venv "$VENV" || { rm -rf "$VENV"; die "could not create .venv with $PY"; }
fi

: >"$LOG"
run_logged() {
    printf '\n$ %s\n' "$*" >>"$LOG"
    if [ "${ISENGARD_VERBOSE:-0}" = 1 ]; then
        "$@" 2>&1 | tee -a "$LOG"
    else
        "$@" >>"$LOG" 2>&1
    fi
}
install_failed() {
    printf '[bootstrap] ERROR: %s. Last lines of %s:\n' "$1" "$LOG" >&2
    tail -n 40 "$LOG" >&2
    exit 1
}

PIP=("$VENV/bin/python" -m pip --no-input --disable-pip-version-check)
PIP_INSTALL=("${PIP[@]}" install --progress-bar off)
rm -f "$STAMP"

# pip keeps an installed torch that satisfies the pin, so switching between the default index and
# ISENGARD_TORCH_INDEX (e.g. CPU -> CUDA build) would silently do nothing: remove torch first.
TORCH_SRC_FILE="$VENV/.isengard-torch-index"
torch_src_prev=""
[ -f "$TORCH_SRC_FILE" ] && torch_src_prev="$(cat "$TORCH_SRC_FILE")"
if [ "$torch_src_prev" != "${ISENGARD_TORCH_INDEX:-}" ] \
    && "${PIP[@]}" show torch >/dev/null 2>&1; then
    say "torch source changed (${torch_src_prev:-default index} -> ${ISENGARD_TORCH_INDEX:-default index}); reinstalling torch"
    run_logged "${PIP[@]}" uninstall -y torch || install_failed "uninstalling torch failed"
fi

if [ -n "${ISENGARD_TORCH_INDEX:-}" ]; then
    TORCH_REQ="$("$PY" - <<'PYEOF'
import re, tomllib
with open("pyproject.toml", "rb") as f:
    deps = tomllib.load(f)["project"]["dependencies"]
for dep in deps:
    if re.match(r"torch\s*(==|>=|<=|~=|!=|<|>|;|\[|$)", dep):
        print(dep.split(";")[0].replace(" ", ""))
        break
PYEOF
)"
    [ -n "$TORCH_REQ" ] || die "no torch pin found in pyproject.toml"
    say "installing $TORCH_REQ from ISENGARD_TORCH_INDEX=$ISENGARD_TORCH_INDEX"
    run_logged "${PIP_INSTALL[@]}" "$TORCH_REQ" --index-url "$ISENGARD_TORCH_INDEX" \
        || install_failed "installing $TORCH_REQ from $ISENGARD_TORCH_INDEX failed"
fi

TARGET="."
[ -n "$EXTRAS" ] && TARGET=".[$EXTRAS]"
say "installing dependencies (first run takes a few minutes; log: ${LOG#"$ROOT"/})"
run_logged "${PIP_INSTALL[@]}" -e "$TARGET" || install_failed "pip install -e '$TARGET' failed"

printf '%s\n' "${ISENGARD_TORCH_INDEX:-}" >"$TORCH_SRC_FILE"
stamp_for "$EXTRAS" >"$STAMP"
say "done: $VENV (Python $("$VENV/bin/python" -c 'import platform; print(platform.python_version())'))"
