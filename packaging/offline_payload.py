"""Build an offline trainer-runtime payload: a folder to copy to a USB stick.

    python packaging/offline_payload.py --device cpu [--lock FILE] [--out dist/offline-cpu]
    make offline-payload DEVICE=cpu

The folder holds ``wheels/`` (every wheel the lock names, hash-checked by pip, plus the app's
own wheel), ``python/`` (uv's own CPython 3.11 build for this platform, laid out as a uv
``python-install-mirror``: ``python/<release tag>/<archive>``; ``--without-python`` leaves it
out), the lock itself and ``manifest.json`` (sizes and SHA-256 of every file, see
``isengard_desktop/core/runtime/manifest.py``). The app's "Install from a folder" checks the
manifest and installs with ``--no-index``: no network at all. The frozen app has no Python of
its own, so without ``python/`` an offline install needs a Python 3.11 already on the target.

The Python build is the one the bundled ``uv`` (our pin) would install here
(``uv python list 3.11 --show-urls --only-downloads``); uv accepts it only if its SHA-256 is in
uv's own table, so the payload must be made with the same uv version the app bundles. After the
download the builder makes a throwaway venv from the copy, exactly as the app will.

With ``--comfyui ARCHIVE`` (the release archive named in ``resources/comfyui/release.toml``, a
file or its URL) the folder also carries the managed ComfyUI: the archive as
``comfyui/<archive name>`` and the wheels of its ``requirements.txt`` (resolved with the lock's
pins as constraints, so torch & co. are the lock's) in the same ``wheels/``; the app's "Install
ComfyUI for me" then installs it with ``--no-index`` too.

Needs a network connection (or pip's find-links) for the wheels: run it on a connected machine
with the same operating system and CPU architecture as the target (wheels are per platform).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from isengard_desktop.core.runtime.install import (  # noqa: E402
    PYTHON_MIRROR_DIR, RUNTIME_PYTHON, mirror_relpath, uv_binary, uv_env, venv_command)
from isengard_desktop.core.runtime.locks import lock_file, lock_packages  # noqa: E402
from isengard_desktop.core.runtime.manifest import write_manifest  # noqa: E402
from isengard_desktop.core.runtime.status import RuntimeDevice  # noqa: E402

__all__ = ["PythonFetchError", "add_comfyui", "build_app_wheel", "build_payload", "check_python_mirror",
           "download_wheels", "fetch_python", "python_download_url"]

DOWNLOAD_TIMEOUT_S = 60.0


class PythonFetchError(RuntimeError):
    """The Python build could not be found, downloaded or used (the message says which)."""


def _uv() -> str:
    uv = uv_binary()
    if uv is None or not uv.exists():
        raise PythonFetchError("uv is not installed (the 'uv' package pinned in "
                               "pyproject.toml): run make bootstrap, or pass --without-python")
    return str(uv)


def python_download_url(uv: str | None = None) -> tuple[str, str]:
    """``(key, url)`` of the CPython 3.11 build uv would install on this platform (uv's own
    table; no network)."""
    uv = uv or _uv()
    done = subprocess.run([uv, "python", "list", RUNTIME_PYTHON, "--show-urls",
                           "--only-downloads", "--output-format", "json"],
                          capture_output=True, text=True, env=uv_env(ROOT / "build" / "uv-cache",
                                                                     ROOT / "build" / "uv-python"))
    if done.returncode != 0:
        raise PythonFetchError(f"uv python list failed: {done.stderr.strip()[-500:]}")
    try:
        entries = json.loads(done.stdout)
    except ValueError as exc:
        raise PythonFetchError(f"uv python list printed no JSON ({exc})") from None
    for entry in entries:
        if (entry.get("implementation") == "cpython" and entry.get("variant") == "default"
                and entry.get("url")):
            return str(entry.get("key") or ""), str(entry["url"])
    raise PythonFetchError(f"uv {uv} offers no CPython {RUNTIME_PYTHON} download for this "
                           "platform; pass --without-python")


def fetch_python(url: str, out: Path, timeout: float = DOWNLOAD_TIMEOUT_S) -> Path:
    """Download ``url`` to ``out/python/<tag>/<file>`` (the path uv reads from a mirror);
    returns the file. :class:`PythonFetchError` when it cannot be fetched."""
    try:
        rel = mirror_relpath(url)
    except ValueError as exc:
        raise PythonFetchError(str(exc)) from None
    target = out / PYTHON_MIRROR_DIR / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(part, "wb") as fh:
            shutil.copyfileobj(response, fh, 1 << 20)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        part.unlink(missing_ok=True)
        reason = getattr(exc, "reason", None) or exc
        raise PythonFetchError(
            f"cannot download the Python {RUNTIME_PYTHON} build {url}: {reason}. Build the "
            "payload on a machine that can reach it, or pass --without-python (the target "
            f"then needs Python {RUNTIME_PYTHON} installed)") from None
    os.replace(part, target)
    return target


def check_python_mirror(mirror: Path, work: Path, uv: str | None = None) -> None:
    """Make a venv from ``mirror`` with the app's own ``uv venv`` command (only-managed, the
    mirror as the only source) into ``work``: proves uv finds the archive and accepts its
    SHA-256. :class:`PythonFetchError` with uv's reason otherwise."""
    uv = uv or _uv()
    argv, env = venv_command(uv, work / "venv", uv_env(work / "cache", work / "python"),
                             managed=True, offline=True, mirror=mirror, own_python="")
    done = subprocess.run(argv, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise PythonFetchError(f"uv does not accept the Python build in {mirror}: "
                               f"{done.stderr.strip()[-800:]}")


# Packages PyPI has only as a source archive: face-recognition-models (dlib's face model
# files, CC0; nothing to compile). They travel as that archive, hash-checked by the lock, with
# the build backend uv needs to build them offline (uv does not hash-check build requirements;
# checked with uv 0.13.9: `uv pip install --require-hashes --no-index --find-links <folder>`
# builds the archive from a folder holding it and the setuptools and wheel wheels).
SOURCE_ONLY = ("face-recognition-models",)
BUILD_BACKEND = ("setuptools", "wheel")


def download_wheels(lock: Path, dest: Path) -> None:
    """``pip download`` every file of ``lock`` (binary only but for :data:`SOURCE_ONLY`, no
    dependency resolution: the lock is complete; pip checks each file against the lock's
    hashes), plus the build backend of the source archives when the lock has any."""
    dest.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
            "--disable-pip-version-check", "-q", "-r", str(lock), "-d", str(dest)]
    names = {name for name, _version in lock_packages(lock)}
    sources = [n for n in SOURCE_ONLY if n in names]
    argv += [f"--no-binary={n}" for n in sources]
    subprocess.run(argv, check=True)
    if sources:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps",
                        "--only-binary=:all:", "--disable-pip-version-check", "-q",
                        *BUILD_BACKEND, "-d", str(dest)], check=True)


def build_app_wheel(dest: Path) -> Path:
    """The app's own wheel (no dependencies), built from this checkout into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    before = set(dest.glob("isengard_desktop-*.whl"))
    for old in before:
        old.unlink()
    build = ROOT / "build" / "app-wheel"
    shutil.rmtree(build, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", "-q", "-w", str(build), str(ROOT)],
                   check=True, cwd=ROOT)
    wheel = next(build.glob("isengard_desktop-*.whl"))
    target = dest / wheel.name
    shutil.move(str(wheel), target)
    return target


def _link(src: Path, dest: Path) -> None:
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)


def build_payload(device: RuntimeDevice | str, lock: Path, out: Path,
                  wheelhouse: Path | None = None, app_wheel: Path | None = None, *,
                  python_url: str | None = None, check_python: bool = True) -> Path:
    """Make ``out`` an offline payload for ``lock``. ``wheelhouse``: a folder already holding
    the lock's wheels (linked instead of downloaded); ``app_wheel``: a prebuilt app wheel;
    ``python_url``: the Python build to carry ("" for none; None: the one uv would install
    here), checked with uv unless ``check_python`` is false. The Python comes first: it is the
    step most likely to fail, and it fails before the long wheel downloads."""
    device = RuntimeDevice(device)
    if out.exists():
        shutil.rmtree(out)
    python_rel = ""
    if python_url != "":
        try:
            url = python_url or python_download_url()[1]
            archive = fetch_python(url, out)
            python_rel = archive.relative_to(out).as_posix()
            if check_python:
                with tempfile.TemporaryDirectory(prefix="isengard-python-check-") as work:
                    check_python_mirror(out / PYTHON_MIRROR_DIR, Path(work))
        except PythonFetchError:
            shutil.rmtree(out, ignore_errors=True)   # no half payload left behind
            raise
    wheels = out / "wheels"
    wheels.mkdir(parents=True)
    if wheelhouse is not None:
        for wheel in [*wheelhouse.glob("*.whl"), *wheelhouse.glob("*.tar.gz")]:
            if not wheel.name.startswith("isengard_desktop-"):
                _link(wheel, wheels / wheel.name)
    else:
        download_wheels(lock, wheels)
    if app_wheel is not None:
        _link(app_wheel, wheels / app_wheel.name)
        built = wheels / app_wheel.name
    else:
        built = build_app_wheel(wheels)
    shutil.copy2(lock, out / lock.name)
    write_manifest(out, device=device, lock_name=lock.name,
                   app_wheel=built.relative_to(out).as_posix(), python=python_rel)
    return out


def _get(source: Path | str, target: Path) -> None:
    import urllib.request

    target.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(source, str) and source.startswith(("http://", "https://")):
        with urllib.request.urlopen(source) as answer, open(target, "wb") as fh:  # noqa: S310
            shutil.copyfileobj(answer, fh)
    else:
        shutil.copy2(Path(source), target)


def _requirements(archive: Path) -> str:
    """The top-level requirements.txt of a GitHub-style archive ("" when it has none)."""
    import zipfile

    with zipfile.ZipFile(archive) as zf:
        names = [n for n in zf.namelist() if n.count("/") <= 1
                 and n.rsplit("/", 1)[-1] == "requirements.txt"]
        return zf.read(names[0]).decode("utf-8") if names else ""


def add_comfyui(out: Path, archive: Path | str, lock: Path, find_links: Path | None = None,
                packs: Mapping[str, Path | str] | None = None) -> Path:
    """Put the ComfyUI release ``archive`` (a file, or an http(s) URL to fetch) into the payload
    ``out`` with the wheels of its requirements, then rewrite the manifest. ``packs``: custom-
    node packs of release.toml to carry too, name → their archive (file or URL; "" = the
    pinned GitHub archive), as ``comfyui/nodes/<name>-<commit 12>.zip`` with their wheels.
    ``find_links``: a local wheel folder used instead of PyPI (``--no-index``). Returns the
    release archive's place."""
    from isengard_desktop.core.comfy_install.release import load_release
    from isengard_desktop.core.runtime.locks import lock_packages
    from isengard_desktop.core.runtime.manifest import read_manifest

    release = load_release()
    target = out / "comfyui" / release.archive
    _get(archive, target)
    requirements = _requirements(target)
    known = {p.name: p for p in release.node_packs}
    for name, source in (packs or {}).items():
        pack = known.get(name)
        if pack is None or not pack.commit:
            raise SystemExit(f"{name} is not a pinned custom-node pack of release.toml")
        place = out / "comfyui" / "nodes" / pack.archive_name
        _get(source or pack.archive_url, place)
        requirements += "\n" + _requirements(place)
    build = out.parent / f".{out.name}-comfyui"
    build.mkdir(parents=True, exist_ok=True)
    (build / "requirements.txt").write_text(requirements, encoding="utf-8")
    (build / "constraints.txt").write_text(
        "".join(f"{n}=={v}\n" for n, v in lock_packages(lock)), encoding="utf-8")
    if requirements.strip():
        argv = [sys.executable, "-m", "pip", "download", "--only-binary=:all:",
                "--disable-pip-version-check", "-q", "-r", str(build / "requirements.txt"),
                "-c", str(build / "constraints.txt"), "-d", str(out / "wheels")]
        if find_links is not None:
            argv += ["--no-index", "--find-links", str(find_links)]
        subprocess.run(argv, check=True)
    shutil.rmtree(build, ignore_errors=True)
    manifest = read_manifest(out)
    write_manifest(out, device=manifest.device, lock_name=manifest.lock,
                   app_wheel=manifest.app_wheel, python=manifest.python)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", required=True, choices=[d.value for d in RuntimeDevice],
                        help="which lock (resources/runtime/<device>.txt)")
    parser.add_argument("--lock", type=Path, help="another lock file (default: the device's)")
    parser.add_argument("--out", type=Path, help="the folder to make (default: "
                                                 "dist/offline-<device>)")
    parser.add_argument("--with-python", dest="python", action="store_true", default=True,
                        help=f"carry uv's CPython {RUNTIME_PYTHON} build for this platform "
                             "(default; needs releases.astral.sh)")
    parser.add_argument("--without-python", dest="python", action="store_false",
                        help=f"leave it out: the target then needs Python {RUNTIME_PYTHON}")
    parser.add_argument("--python-url", help="another download URL of the Python build "
                                             "(…/releases/download/<tag>/<file>)")
    parser.add_argument("--comfyui", metavar="ARCHIVE",
                        help="also carry the managed ComfyUI: its release archive (file or "
                             "URL, see resources/comfyui/release.toml) and its wheels")
    parser.add_argument("--comfyui-pack", action="append", default=[], metavar="NAME",
                        help="with --comfyui: also carry this pinned custom-node pack "
                             "(its GitHub archive at the pinned commit); repeatable")
    args = parser.parse_args(argv)
    lock = args.lock or lock_file(args.device)
    if not lock.is_file():
        print(f"no lock file {lock}: see packaging/README.md (trainer runtime locks)",
              file=sys.stderr)
        return 2
    out = args.out or ROOT / "dist" / f"offline-{args.device}"
    began = time.monotonic()
    try:
        build_payload(args.device, lock, out,
                      python_url=(args.python_url or None) if args.python else "")
    except PythonFetchError as exc:
        print(f"offline payload: {exc}", file=sys.stderr)
        return 3
    if args.comfyui:
        add_comfyui(out, args.comfyui, lock, packs={n: "" for n in args.comfyui_pack})
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"{out}: {size / 1e6:,.0f} MB in {time.monotonic() - began:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
