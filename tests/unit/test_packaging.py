"""Packaging without building the bundle: the .desktop entry, the .deb layout and control file
(packaging/debian.py on a stand-in bundle), the Inno Setup script's paths, and the committed
icons against their SVG. The real bundle and .deb are checked by ``make package-test``."""

from __future__ import annotations

import configparser
import gzip
import importlib.util
import os
import re
import struct
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGING = REPO / "packaging"


def _load(name: str):
    # packaging/ is not a package (and the name would shadow PyPI's "packaging"): load by path
    spec = importlib.util.spec_from_file_location(f"isengard_packaging_{name}",
                                                  PACKAGING / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


debian = _load("debian")
make_icons = _load("make_icons")


def _desktop_entry(path: Path) -> dict[str, str]:
    parser = configparser.RawConfigParser(delimiters=("=",), interpolation=None)
    parser.optionxform = str  # keys are case-sensitive
    parser.read_string(path.read_text(encoding="utf-8"))
    assert parser.sections()[0] == "Desktop Entry"
    return dict(parser["Desktop Entry"])


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def test_desktop_entry_names_the_installed_launcher_and_icon():
    entry = _desktop_entry(PACKAGING / "isengard-desktop.desktop")
    assert entry["Type"] == "Application"
    assert entry["Name"] == "Isengard Desktop"
    assert entry["Icon"] == debian.PACKAGE == "isengard-desktop"
    # Exec/TryExec name the command the .deb puts on PATH (/usr/bin/isengard-desktop)
    assert entry["Exec"].split()[0] == Path(debian.LAUNCHER).name
    assert entry["TryExec"] == Path(debian.LAUNCHER).name
    assert entry["Terminal"] == "false"
    for key in ("Categories", "Keywords"):
        assert entry[key].endswith(";"), f"{key} must end with ';' (desktop entry spec)"
    assert "Graphics" in entry["Categories"].split(";")
    # the spec's main categories: at least one must be present
    assert {"AudioVideo", "Audio", "Video", "Development", "Education", "Game", "Graphics",
            "Network", "Office", "Science", "Settings", "System", "Utility"} & set(
        entry["Categories"].split(";"))


def test_control_file_version_and_depends_follow_pyproject_and_bootstrap():
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert debian.project_version() == version
    packages = debian.qt_system_packages()
    # the list bootstrap.sh checks: the Qt offscreen set and the xcb set
    assert {"libgl1", "libegl1", "libxkbcommon0", "libfontconfig1", "libdbus-1-3",
            "libxcb-cursor0", "libxkbcommon-x11-0"} <= set(packages)
    text = debian.control_text(debian.ControlFields(
        version="1.2.3", architecture="amd64", installed_size_kib=4096,
        depends=("libc6 (>= 2.36)", *packages)))
    fields = dict(line.split(": ", 1) for line in text.splitlines()
                  if line and not line.startswith(" "))
    assert fields["Package"] == "isengard-desktop"
    assert fields["Version"] == "1.2.3"
    assert fields["Architecture"] == "amd64"
    assert fields["Installed-Size"] == "4096"
    assert fields["Depends"].split(", ") == ["libc6 (>= 2.36)", *packages]
    assert "<" in fields["Maintainer"] and fields["Maintainer"].endswith(">")
    # the long description: every line indented, paragraphs split by " ."
    description = text.split("Description: ", 1)[1].splitlines()
    assert description[0] and all(line.startswith(" ") for line in description[1:])


def test_a_version_dpkg_cannot_take_is_named(tmp_path):
    bad = tmp_path / "pyproject.toml"
    bad.write_text('[project]\nname = "x"\nversion = "one point oh"\n')
    with pytest.raises(SystemExit, match=r"pyproject.toml.*not a Debian version"):
        debian.project_version(bad)
    bad.write_text('[project]\nname = "x"\n')
    with pytest.raises(SystemExit, match=r"pyproject.toml: cannot read \[project\] version"):
        debian.project_version(bad)


def _fake_bundle(tmp_path: Path) -> Path:
    bundle = tmp_path / "dist" / "Isengard Desktop"
    (bundle / "_internal" / "resources").mkdir(parents=True)
    exe = bundle / "Isengard Desktop"
    exe.write_text("#!/bin/sh\necho bundle \"$@\"\n")
    exe.chmod(0o700)                                   # as a umask-077 build leaves it
    lib = bundle / "_internal" / "libpython3.11.so.1.0"
    lib.write_bytes(b"\x7fELF" + b"\0" * 2000)
    lib.chmod(0o600)
    ext = bundle / "_internal" / "_json.cpython-311-x86_64-linux-gnu.so"
    ext.write_bytes(b"\x7fELF" + b"\0" * 100)
    ext.chmod(0o755)                                   # as many wheels ship them
    return bundle


def test_stage_lays_out_opt_launcher_menu_entry_icons_and_scripts(tmp_path):
    root = tmp_path / "root"
    control = debian.stage(_fake_bundle(tmp_path), root, version="0.9.1", architecture="arm64")

    opt = root / "opt/isengard-desktop"
    assert (opt / "Isengard Desktop").stat().st_mode & 0o777 == 0o755
    assert (opt / "_internal/libpython3.11.so.1.0").stat().st_mode & 0o777 == 0o644
    # shared libraries lose the execute bit (lintian: shared-library-is-executable)
    assert (opt / "_internal/_json.cpython-311-x86_64-linux-gnu.so").stat().st_mode & 0o777 == 0o644
    launcher = root / "usr/bin/isengard-desktop"
    assert launcher.is_symlink()
    assert os.readlink(launcher) == "/opt/isengard-desktop/Isengard Desktop"
    entry = root / "usr/share/applications/isengard-desktop.desktop"
    assert _desktop_entry(entry)["Icon"] == "isengard-desktop"
    for size in (16, 32, 48, 64, 128, 256, 512):
        png = root / f"usr/share/icons/hicolor/{size}x{size}/apps/isengard-desktop.png"
        assert _png_size(png) == (size, size)
    assert (root / "usr/share/icons/hicolor/scalable/apps/isengard-desktop.svg").read_text(
        ).lstrip().startswith("<?xml")
    assert (root / "usr/share/doc/isengard-desktop/copyright").is_file()
    changelog = gzip.decompress((root / "usr/share/doc/isengard-desktop/changelog.gz").read_bytes())
    assert changelog.decode().startswith("isengard-desktop (0.9.1) unstable; urgency=medium\n")
    assert re.search(r"\n -- .+ <.+>  \w{3}, \d{2} \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}\n$",
                     changelog.decode()), "the trailer line of a Debian changelog"

    text = control.read_text()
    assert "Version: 0.9.1\n" in text and "Architecture: arm64\n" in text
    size_kib = int(text.split("Installed-Size: ", 1)[1].split("\n", 1)[0])
    assert size_kib >= 3       # the executable + a 2 KB library + icons, in KiB
    for name in ("postinst", "postrm"):
        script = root / "DEBIAN" / name
        assert script.stat().st_mode & 0o777 == 0o755
        body = script.read_text()
        assert body.startswith("#!/bin/sh\nset -e\n")
        assert "update-desktop-database" in body and "gtk-update-icon-cache" in body
        # uninstall never touches user data: no home folders, no recursive deletes
        commands = "\n".join(line for line in body.splitlines()
                             if not line.lstrip().startswith("#"))
        for forbidden in ("$HOME", "~", ".local/share", "rm ", "ISENGARD_HOME"):
            assert forbidden not in commands, f"{name} runs a command with {forbidden!r}"
    # only the documented top-level folders
    assert sorted(p.name for p in root.iterdir()) == ["DEBIAN", "opt", "usr"]


def test_maintainer_scripts_are_valid_sh_and_survive_missing_tools(tmp_path):
    """Each script runs under sh with the cache tools absent (a minimal system) and exits 0."""
    scripts = debian.install_scripts()
    env = {"PATH": str(tmp_path)}           # no update-desktop-database, no gtk-update-icon-cache
    for name, arg in (("postinst", "configure"), ("postrm", "remove"), ("postrm", "purge")):
        path = tmp_path / name
        path.write_text(scripts[name])
        done = subprocess.run(["/bin/sh", "-n", str(path)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        done = subprocess.run(["/bin/sh", str(path), arg], capture_output=True, text=True,
                              env=env)
        assert done.returncode == 0, (name, arg, done.stderr)


def test_stage_names_a_missing_bundle(tmp_path):
    with pytest.raises(SystemExit, match=r"Isengard Desktop: the bundle's executable is missing"):
        debian.stage(tmp_path / "nothing", tmp_path / "root")


def test_inno_setup_script_installs_per_user_with_the_icon():
    iss = (PACKAGING / "windows" / "isengard.iss").read_text(encoding="utf-8")
    assert "{localappdata}\\Programs\\Isengard Desktop" in iss
    assert "PrivilegesRequired=lowest" in iss
    icon = REPO / "resources" / "icons" / "isengard.ico"
    assert "resources\\icons\\isengard.ico" in iss and icon.is_file()
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert f'#define AppVersion "{version}"' in iss
    # uninstall removes only what the installer wrote: no extra deletions (the data folder)
    assert "[UninstallDelete]" not in iss and "[UninstallRun]" not in iss


def test_committed_icons_match_the_svg(qapp):
    """The PNGs, .ico and .icns are what packaging/make_icons.py renders from the SVG now."""
    from io import BytesIO

    from PIL import Image, ImageChops

    rendered = make_icons.render_all()
    icons = REPO / "resources" / "icons"
    for size in make_icons.PNG_SIZES:
        name = make_icons.png_name(size)
        with Image.open(icons / name) as png:
            committed = png.convert("RGBA")
        fresh = Image.open(BytesIO(rendered[name])).convert("RGBA")
        assert committed.size == fresh.size == (size, size)
        # same picture (a rounding step of difference allowed); not blank
        assert max(ImageChops.difference(committed, fresh).getextrema()[c][1]
                   for c in range(4)) <= 2, f"{name} is stale: run packaging/make_icons.py"
        assert committed.getextrema()[3] == (0, 255), f"{name}: expected a tile on transparency"
    with Image.open(icons / "isengard.ico") as ico:
        assert {(16, 16), (32, 32), (48, 48), (256, 256)} <= ico.info["sizes"]
    with Image.open(icons / "isengard.icns") as icns:
        assert (512, 512, 1) in icns.info["sizes"] and (16, 16, 2) in icns.info["sizes"]
