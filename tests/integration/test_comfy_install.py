"""The managed ComfyUI installed for real, offline: a local "release" zip whose ``main.py`` runs
the ComfyUI test double (tests/helpers/fake_comfyui_main.py), a tiny device lock and a local
wheelhouse of two wheels built here, real ``uv`` children with ``--no-index``, and the check
that starts the installed ComfyUI and reads ``/object_info``.

The double's imports (aiohttp, yaml) come from the test's own environment: the release's
``main.py`` puts that site-packages folder on ``sys.path`` (a real ComfyUI gets them from its
requirements); what the install itself must provide — the lock's package and the release's
requirement — are imported from the new venv before the double starts, so a missing step
fails the check.
"""

from __future__ import annotations

import base64
import hashlib
import os
import signal
import sysconfig
import zipfile
from pathlib import Path

import pytest
from PySide6.QtCore import QTimer

from isengard_desktop.core.comfy_install.layout import (comfy_dir, install_folder,
                                                       read_install_info)
from isengard_desktop.core.paths import resolve_paths
from isengard_desktop.core.runtime.layout import read_marker, venv_python
from isengard_desktop.core.runtime.status import RuntimeState
from tests.helpers.download_host import DownloadHost, HostedFile
from isengard_desktop.services.generation.comfy_install import (ComfyInstallService,
                                                                required_node_classes)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

REPO = Path(__file__).resolve().parents[2]
FAKE_MAIN = REPO / "tests" / "helpers" / "fake_comfyui_main.py"
TAG = "v0.0.99-test"
ARCHIVE = "ComfyUI-test.zip"
WAIT = 120_000


def _wheel(folder: Path, dist: str, version: str = "1.0") -> tuple[Path, str]:
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


def _release_zip(path: Path, extra: dict[str, str] | None = None) -> Path:
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


@pytest.fixture
def world(tmp_path, monkeypatch):
    payload = tmp_path / "payload"
    (payload / "wheels").mkdir(parents=True)
    (payload / "comfyui").mkdir()
    _torch, torch_sha = _wheel(payload / "wheels", "isengard_fake_torch")
    _wheel(payload / "wheels", "isengard_comfy_dep")
    locks = tmp_path / "locks"
    locks.mkdir()
    (locks / "cpu.txt").write_text(f"isengard-fake-torch==1.0 \\\n    --hash=sha256:{torch_sha}\n")
    _release_zip(payload / "comfyui" / ARCHIVE)
    release = tmp_path / "release.toml"
    release.write_text(f'format = 1\n[release]\ntag = "{TAG}"\n'
                       'commit = "0123456789abcdef0123456789abcdef01234567"\n'
                       f'url = "http://127.0.0.1:9/{ARCHIVE}"\narchive = "{ARCHIVE}"\n'
                       'sha256 = ""\n')
    monkeypatch.setenv("ISENGARD_RUNTIME_LOCKS", str(locks))
    monkeypatch.setenv("ISENGARD_COMFY_RELEASE", str(release))
    paths = resolve_paths({"ISENGARD_HOME": str(tmp_path / "home")}).ensure()
    return {"paths": paths, "payload": payload, "locks": locks, "release": release}


@pytest.fixture
def service(world, qt_asyncio_loop):
    svc = ComfyInstallService(world["paths"])
    svc.verify_timeout_s = 90.0
    yield svc
    svc.shutdown()


def _install(qtbot, svc, payload):
    with qtbot.waitSignal(svc.finished, timeout=WAIT) as blocker:
        svc.install(payload)
    return blocker.args[0]


def test_offline_install_is_ready_and_its_comfyui_answers(qtbot, world, service):
    progress = []
    service.progress.connect(progress.append)
    status = _install(qtbot, service, world["payload"])
    assert status.state == RuntimeState.READY, status.problem
    folder = install_folder(world["paths"], TAG)
    assert status.comfy == comfy_dir(folder) and status.python == venv_python(folder)
    assert read_marker(folder) is None
    info = read_install_info(folder)
    assert info is not None and info.verify.ok and info.commit.startswith("0123456789")
    assert info.verify.node_count > len(required_node_classes()) > 5
    # our upload node was put into the managed ComfyUI
    assert (comfy_dir(folder) / "custom_nodes" / "isengard_lora_upload").is_dir()
    assert {p.label for p in progress} >= {"preparing", "installing", "verifying"}
    assert service.status().state == RuntimeState.READY


def _slow_uv(tmp_path, monkeypatch) -> None:
    """uv behind a wrapper that waits 60 s before installing the release's requirements, so
    the test can kill that step while it runs (the real uv does the work)."""
    from isengard_desktop.core.runtime import install

    real = install.uv_binary()
    assert real is not None
    wrapper = tmp_path / "uv"
    wrapper.write_text('#!/bin/sh\ncase "$*" in *requirements.txt*) sleep 60;; esac\n'
                       f'exec {real} "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setattr(install, "uv_binary", lambda: wrapper)


def test_killed_midway_reads_incomplete_and_the_retry_finishes(qtbot, world, service,
                                                               tmp_path, monkeypatch):
    _slow_uv(tmp_path, monkeypatch)
    killed: list[int] = []

    def kill_when_running() -> None:
        child = service._child
        if child is None or not child.pid:
            QTimer.singleShot(50, kill_when_running)
            return
        killed.append(child.pid)
        os.killpg(child.pid, signal.SIGKILL)     # as if the process died mid-install

    def on_progress(p) -> None:
        if "requirements" in p.detail and not killed and p.done == 0:
            QTimer.singleShot(50, kill_when_running)

    service.progress.connect(on_progress)
    status = _install(qtbot, service, world["payload"])
    service.progress.disconnect(on_progress)
    assert killed
    assert status.state == RuntimeState.INCOMPLETE, status
    assert "requirements" in status.problem and "signal" in status.problem
    folder = install_folder(world["paths"], TAG)
    assert read_marker(folder) is not None
    assert (comfy_dir(folder) / "main.py").is_file()       # kept: not unpacked twice
    assert not (folder / "venv").exists()                  # the half-made venv went
    monkeypatch.undo()          # plain uv again (the env switches are set again below)
    monkeypatch.setenv("ISENGARD_RUNTIME_LOCKS", str(world["locks"]))
    monkeypatch.setenv("ISENGARD_COMFY_RELEASE", str(world["release"]))
    status = _install(qtbot, service, world["payload"])
    assert status.state == RuntimeState.READY, status.problem
    assert read_marker(folder) is None


def test_cancel_leaves_incomplete_and_install_continues(qtbot, world, service):
    service.progress.connect(lambda p: service.cancel() if p.label == "verifying" else None)
    status = _install(qtbot, service, world["payload"])
    assert status.state == RuntimeState.INCOMPLETE
    assert "cancelled" in status.problem
    service.progress.disconnect()
    assert _install(qtbot, service, world["payload"]).state == RuntimeState.READY


def test_traversal_in_the_release_zip_is_refused(qtbot, world, service, tmp_path):
    archive = world["payload"] / "comfyui" / ARCHIVE
    _release_zip(archive, {"ComfyUI-test/../../../escaped.py": "boom"})
    status = _install(qtbot, service, world["payload"])
    assert status.state == RuntimeState.INCOMPLETE
    assert "outside the ComfyUI folder" in status.problem and ARCHIVE in status.problem
    assert not list(tmp_path.rglob("escaped.py"))
    assert not (comfy_dir(install_folder(world["paths"], TAG)) / "main.py").exists()


def test_missing_release_in_the_offline_folder_is_named(qtbot, world, service):
    (world["payload"] / "comfyui" / ARCHIVE).unlink()
    status = _install(qtbot, service, world["payload"])
    assert status.state == RuntimeState.MISSING
    assert ARCHIVE in status.problem and "offline folder" in status.problem


def _online(world, host_file) -> str:
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


def test_online_install_downloads_the_release_resuming_after_a_drop(qtbot, world, service):
    _online(world, {"drop_after": 300})
    try:
        labels = []
        service.progress.connect(lambda p: labels.append(p.label))
        status = _install(qtbot, service, None)
        assert status.state == RuntimeState.READY, status.problem
        assert "downloading" in labels
        ranges = [r.range_start for r in world["host"].requests if r.path.endswith(".zip")]
        assert ranges[0] is None and ranges[-1] == 300      # resumed from the drop, not 0
        info = read_install_info(install_folder(world["paths"], TAG))
        assert info is not None and info.source == "online"
    finally:
        world["host"].__exit__(None, None, None)


def test_online_archive_with_the_wrong_hash_is_refused(qtbot, world, service):
    world["sha"] = "0" * 64
    _online(world, {})
    try:
        status = _install(qtbot, service, None)
        assert status.state == RuntimeState.MISSING
        assert "Downloading ComfyUI" in status.problem and "SHA-256" in status.problem
        assert not (world["paths"].data / "comfyui" / "archives" / ARCHIVE).exists()
    finally:
        world["host"].__exit__(None, None, None)
