"""A local ComfyUI "release" for the managed-install tests: a zip whose ``main.py`` runs the
ComfyUI test double (tests/helpers/fake_comfyui_main.py), a tiny device lock and a wheelhouse
of two small wheels built here (no network, no build backend), and a release file.

The double's imports (aiohttp, yaml) come from the test's own environment: the release's
``main.py`` puts that site-packages folder on ``sys.path`` (a real ComfyUI gets them from its
requirements); what the install itself must provide — the lock's package and the release's
requirement — are imported from the new venv before the double starts, so a missing install
step fails the check.

:func:`make_world` sets ``ISENGARD_RUNTIME_LOCKS`` and ``ISENGARD_COMFY_RELEASE`` (through the
given monkeypatch); :func:`serve_online` serves the zip from a local :class:`DownloadHost` and
points the release file and the lock's sources at it.
"""

from __future__ import annotations

import base64
import hashlib
import sysconfig
import zipfile
from pathlib import Path
from typing import Any

from isengard_desktop.core.paths import resolve_paths
from tests.helpers.download_host import DownloadHost, HostedFile

__all__ = ["ARCHIVE", "TAG", "make_world", "release_zip", "serve_online"]

REPO = Path(__file__).resolve().parents[2]
FAKE_MAIN = REPO / "tests" / "helpers" / "fake_comfyui_main.py"
TAG = "v0.0.99-test"
ARCHIVE = "ComfyUI-test.zip"


def wheel(folder: Path, dist: str, version: str = "1.0") -> tuple[Path, str]:
    """A minimal pure-Python wheel (module ``dist`` with ``VERSION``); returns (path, sha256)."""
    files = {f"{dist}/__init__.py": f"VERSION = {version!r}\n".encode(),
             f"{dist}-{version}.dist-info/METADATA":
                 f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n".encode(),
             f"{dist}-{version}.dist-info/WHEEL":
                 b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                 b"Tag: py3-none-any\n"}
    record = "".join(
        f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},{len(data)}\n"
        for name, data in files.items()) + f"{dist}-{version}.dist-info/RECORD,,\n"
    path = folder / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        zf.writestr(f"{dist}-{version}.dist-info/RECORD", record)
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def release_zip(path: Path, extra: dict[str, str] | None = None) -> Path:
    site = sysconfig.get_paths()["purelib"]
    main = (
        "import runpy, sys\n"
        "import isengard_fake_torch, isengard_comfy_dep  # from the install's own venv\n"
        f"sys.path.append({site!r})\n"
        f"runpy.run_path({str(FAKE_MAIN)!r}, run_name='__main__')\n")
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ComfyUI-test/main.py", main)
        zf.writestr("ComfyUI-test/requirements.txt", "isengard_comfy_dep\n")
        zf.writestr("ComfyUI-test/custom_nodes/example_node.py.example", "# ComfyUI ships it\n")
        for name, text in (extra or {}).items():
            zf.writestr(name, text)
    return path


def make_world(tmp_path: Path, monkeypatch: Any) -> dict[str, Any]:
    """Payload (wheels + release zip), locks folder, release file and a data folder."""
    payload = tmp_path / "payload"
    (payload / "wheels").mkdir(parents=True)
    (payload / "comfyui").mkdir()
    _torch, torch_sha = wheel(payload / "wheels", "isengard_fake_torch")
    wheel(payload / "wheels", "isengard_comfy_dep")
    locks = tmp_path / "locks"
    locks.mkdir()
    (locks / "cpu.txt").write_text(f"isengard-fake-torch==1.0 \\\n    --hash=sha256:{torch_sha}\n")
    release_zip(payload / "comfyui" / ARCHIVE)
    release = tmp_path / "release.toml"
    release.write_text(f'format = 1\n[release]\ntag = "{TAG}"\n'
                       'commit = "0123456789abcdef0123456789abcdef01234567"\n'
                       f'url = "http://127.0.0.1:9/{ARCHIVE}"\narchive = "{ARCHIVE}"\n'
                       'sha256 = ""\n')
    monkeypatch.setenv("ISENGARD_RUNTIME_LOCKS", str(locks))
    monkeypatch.setenv("ISENGARD_COMFY_RELEASE", str(release))
    paths = resolve_paths({"ISENGARD_HOME": str(tmp_path / "home")}).ensure()
    return {"paths": paths, "payload": payload, "locks": locks, "release": release}



def serve_online(world: dict[str, Any], host_file: dict[str, Any]) -> str:
    """Serve the release zip from a local download host and point the release file and the
    lock's sources at it (an index that knows nothing, plus the wheel folder as find-links)."""
    data = (world["payload"] / "comfyui" / ARCHIVE).read_bytes()
    host = DownloadHost()
    host.__enter__()
    hosted = host.add(f"/archive/refs/tags/{TAG}.zip", HostedFile(data=data, **host_file))
    world["release"].write_text(
        f'format = 1\n[release]\ntag = "{TAG}"\n'
        'commit = "0123456789abcdef0123456789abcdef01234567"\n'
        f'url = "{host.url(f"/archive/refs/tags/{TAG}.zip")}"\narchive = "{ARCHIVE}"\n'
        f'sha256 = "{world.get("sha") or hosted.sha256}"\n')
    (world["locks"] / "locks.toml").write_text(
        f'version = 1\n[devices.cpu]\nfile = "cpu.txt"\n'
        f'index_urls = ["{host.url("/simple")}"]\n'
        f'find_links = ["{world["payload"] / "wheels"}"]\n')
    world["host"] = host
    return hosted.sha256


