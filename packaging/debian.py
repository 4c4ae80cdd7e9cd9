"""Lay out the Debian package tree for the GUI bundle (stdlib only; run by build_deb.sh).

    python packaging/debian.py stage --bundle "dist/Isengard Desktop" --root build/deb/root
    dpkg-deb --root-owner-group --build build/deb/root dist/isengard-desktop_<ver>_<arch>.deb

What the package installs:

    /opt/isengard-desktop/                  the PyInstaller bundle, as built
    /usr/bin/isengard-desktop               symlink to the bundle's executable
    /usr/share/applications/isengard-desktop.desktop
    /usr/share/icons/hicolor/<n>x<n>/apps/isengard-desktop.png   (16 … 512)
    /usr/share/icons/hicolor/scalable/apps/isengard-desktop.svg
    /usr/share/doc/isengard-desktop/copyright, changelog.gz

postinst/postrm refresh the desktop database and the icon cache when those tools exist. Nothing
in the package or its scripts touches the user's data (``~/.local/share/isengard-desktop``,
``ISENGARD_HOME``): removing or purging the package leaves it in place.
"""

from __future__ import annotations

import argparse
import email.utils
import gzip
import os
import re
import shutil
import stat
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "isengard-desktop"
APP_NAME = "Isengard Desktop"
INSTALL_DIR = f"/opt/{PACKAGE}"
LAUNCHER = f"/usr/bin/{PACKAGE}"
DESKTOP_FILE = ROOT / "packaging" / f"{PACKAGE}.desktop"
ICONS = ROOT / "resources" / "icons"
ICON_SIZES = (16, 32, 48, 64, 128, 256, 512)
MAINTAINER = "Isengard Desktop maintainers <maintainers@isengard-desktop.invalid>"

__all__ = ["ControlFields", "control_text", "glibc_version", "install_scripts",
           "project_version", "qt_system_packages", "stage"]


def project_version(pyproject: Path = ROOT / "pyproject.toml") -> str:
    """``[project] version`` of pyproject.toml (the .deb's Version)."""
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
        version = data["project"]["version"]
    except (OSError, tomllib.TOMLDecodeError, KeyError) as exc:
        raise SystemExit(f"{pyproject}: cannot read [project] version ({exc})") from None
    if not isinstance(version, str) or not re.fullmatch(r"[0-9][A-Za-z0-9.+~-]*", version):
        raise SystemExit(f"{pyproject}: [project] version {version!r} is not a Debian version")
    return version


def qt_system_packages(bootstrap: Path = ROOT / "bootstrap.sh") -> list[str]:
    """The Debian packages bootstrap.sh checks for (its ``QT_LIBS`` "soname:package" list), so
    the .deb's Depends and the developer set-up name the same libraries."""
    text = bootstrap.read_text(encoding="utf-8")
    block = re.search(r"^QT_LIBS=\((.*?)^\)", text, re.S | re.M)
    if not block:
        raise SystemExit(f"{bootstrap}: no QT_LIBS=( ... ) list found")
    packages = re.findall(r'"[^":]+:([a-z0-9][a-z0-9.+-]+)"', block.group(1))
    if not packages:
        raise SystemExit(f"{bootstrap}: QT_LIBS has no \"soname:package\" entries")
    return list(dict.fromkeys(packages))


def glibc_version() -> str:
    """The build machine's glibc: the bundle's own libpython and bootloader need at least it."""
    found = os.confstr("CS_GNU_LIBC_VERSION") if hasattr(os, "confstr") else None
    match = re.fullmatch(r"glibc (\d+\.\d+)", found or "")
    return match.group(1) if match else "2.31"


@dataclass(frozen=True, kw_only=True)
class ControlFields:
    version: str
    architecture: str
    installed_size_kib: int
    depends: tuple[str, ...]
    maintainer: str = MAINTAINER


def control_text(fields: ControlFields) -> str:
    """The DEBIAN/control file."""
    return (
        f"Package: {PACKAGE}\n"
        f"Version: {fields.version}\n"
        f"Architecture: {fields.architecture}\n"
        f"Maintainer: {fields.maintainer}\n"
        f"Installed-Size: {fields.installed_size_kib}\n"
        f"Depends: {', '.join(fields.depends)}\n"
        "Section: graphics\n"
        "Priority: optional\n"
        "Description: identity LoRA trainer and image generator (offline)\n"
        " Isengard Desktop turns a folder of photos of one person into an identity\n"
        " LoRA trained on your own GPU, and generates images with it through\n"
        " ComfyUI. Everything runs on this computer, offline.\n"
        " .\n"
        " This package holds the desktop app. The trainer runtime (PyTorch and the\n"
        " training libraries) is created on first run, from the network or from an\n"
        " offline folder.\n"
    )


# Refresh caches only when the tools exist (a minimal system may lack them); never fail the
# install over a cache. No line here reads or writes a home folder.
_REFRESH = """\
if command -v update-desktop-database >/dev/null 2>&1; then
    update-desktop-database -q /usr/share/applications || true
fi
if command -v gtk-update-icon-cache >/dev/null 2>&1 && [ -f /usr/share/icons/hicolor/index.theme ]; then
    gtk-update-icon-cache -q -t -f /usr/share/icons/hicolor || true
fi
"""


def install_scripts() -> dict[str, str]:
    """Maintainer scripts: name → text."""
    postinst = ("#!/bin/sh\nset -e\n"
                'if [ "$1" = "configure" ]; then\n'
                + _indent(_REFRESH) + "fi\n")
    postrm = ("#!/bin/sh\nset -e\n"
              "# The user's data (~/.local/share/isengard-desktop, ISENGARD_HOME) is never\n"
              "# touched here, not even on purge.\n"
              'case "$1" in\n'
              "    remove|purge)\n"
              + _indent(_REFRESH, 8)
              + f"        rmdir --ignore-fail-on-non-empty {INSTALL_DIR} 2>/dev/null || true\n"
              "        ;;\n"
              "esac\n")
    return {"postinst": postinst, "postrm": postrm}


def _indent(text: str, spaces: int = 4) -> str:
    return "".join((" " * spaces + line) if line.strip() else line
                   for line in text.splitlines(keepends=True))


def _copyright_text() -> str:
    return ("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"
            f"Upstream-Name: {APP_NAME}\n\n"
            "Files: *\n"
            "Copyright: the Isengard Desktop authors\n"
            "License: proprietary\n"
            " All rights reserved. The bundled third-party components (Python, Qt for\n"
            " Python and the other libraries under /opt/isengard-desktop/_internal) keep\n"
            " their own licences.\n")


def _tree_size_kib(root: Path) -> int:
    total = 0
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            total += (path.stat().st_size + 1023) // 1024
    return max(total, 1)


_SHARED_LIBRARY = re.compile(r"\.so(\.[0-9]+)*$|\.so\.")


def _normalise_modes(root: Path) -> None:
    """Directories 755; programs 755; everything else 644 — shared libraries too (the loader
    needs no execute bit; wheels ship many .so files as 755, which lintian flags). A bundle
    copied from a umask-077 build still installs readable."""
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        mode = path.stat().st_mode
        if path.is_dir():
            path.chmod(0o755)
        elif _SHARED_LIBRARY.search(path.name):
            path.chmod(0o644)
        else:
            path.chmod(0o755 if mode & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH) else 0o644)


def _changelog_gz(version: str) -> bytes:
    """usr/share/doc/<package>/changelog.gz in Debian's changelog format (a native package's
    changelog is read as one). Dated ``SOURCE_DATE_EPOCH`` when set (reproducible builds)."""
    when = float(os.environ.get("SOURCE_DATE_EPOCH", "") or time.time())
    text = (f"{PACKAGE} ({version}) unstable; urgency=medium\n\n"
            f"  * Isengard Desktop {version}. See the README (\"What works today\").\n\n"
            f" -- {MAINTAINER}  {email.utils.formatdate(when)}\n")
    return gzip.compress(text.encode("utf-8"), compresslevel=9, mtime=0)


def stage(bundle: Path, root: Path, *, version: str | None = None, architecture: str = "amd64",
          depends_extra: tuple[str, ...] = ()) -> Path:
    """Lay out the package tree under ``root`` (emptied first) from the one-folder ``bundle``;
    returns the path of the written control file."""
    exe = bundle / APP_NAME
    if not (exe.is_file() and os.access(exe, os.X_OK)):
        raise SystemExit(f"{exe}: the bundle's executable is missing (run make package first)")
    if root.exists():
        shutil.rmtree(root)
    opt = root / INSTALL_DIR.lstrip("/")
    shutil.copytree(bundle, opt, symlinks=True)

    apps = root / "usr/share/applications"
    apps.mkdir(parents=True)
    shutil.copyfile(DESKTOP_FILE, apps / f"{PACKAGE}.desktop")
    hicolor = root / "usr/share/icons/hicolor"
    for size in ICON_SIZES:
        src = ICONS / f"isengard-{size}.png"
        if not src.is_file():
            raise SystemExit(f"{src}: missing (run packaging/make_icons.py)")
        dest = hicolor / f"{size}x{size}" / "apps"
        dest.mkdir(parents=True)
        shutil.copyfile(src, dest / f"{PACKAGE}.png")
    scalable = hicolor / "scalable" / "apps"
    scalable.mkdir(parents=True)
    shutil.copyfile(ICONS / "isengard.svg", scalable / f"{PACKAGE}.svg")
    doc = root / f"usr/share/doc/{PACKAGE}"
    doc.mkdir(parents=True)
    (doc / "copyright").write_text(_copyright_text(), encoding="utf-8")
    version = version or project_version()
    (doc / "changelog.gz").write_bytes(_changelog_gz(version))

    _normalise_modes(root)
    bindir = root / "usr/bin"
    bindir.mkdir(parents=True, mode=0o755)
    (bindir / PACKAGE).symlink_to(f"{INSTALL_DIR}/{APP_NAME}")

    debian = root / "DEBIAN"
    debian.mkdir(mode=0o755)
    for name, text in install_scripts().items():
        script = debian / name
        script.write_text(text, encoding="utf-8")
        script.chmod(0o755)
    depends = (f"libc6 (>= {glibc_version()})", *qt_system_packages(), *depends_extra)
    fields = ControlFields(version=version, architecture=architecture,
                           installed_size_kib=_tree_size_kib(root), depends=depends)
    control = debian / "control"
    control.write_text(control_text(fields), encoding="utf-8")
    control.chmod(0o644)
    return control


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Debian package layout for Isengard Desktop")
    sub = parser.add_subparsers(dest="command", required=True)
    st = sub.add_parser("stage", help="lay out the package tree")
    st.add_argument("--bundle", type=Path, default=ROOT / "dist" / APP_NAME)
    st.add_argument("--root", type=Path, default=ROOT / "build" / "deb" / "root")
    st.add_argument("--arch", default="amd64", help="Debian architecture (dpkg --print-architecture)")
    sub.add_parser("version", help="print the package version (from pyproject.toml)")
    args = parser.parse_args(argv)
    if args.command == "version":
        print(project_version())
        return 0
    control = stage(args.bundle, args.root, architecture=args.arch)
    print(f"[deb] staged {args.root} ({control.read_text().splitlines()[1]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
