"""The managed ComfyUI installed for real, offline: a local "release" zip whose ``main.py`` runs
the ComfyUI test double (tests/helpers/fake_comfyui_main.py), a tiny device lock and a local
wheelhouse of two wheels built here, real ``uv`` children with ``--no-index``, and the check
that starts the installed ComfyUI and reads ``/object_info`` (tests/helpers/comfy_release.py
builds the release and says how the double's imports are provided).
"""

from __future__ import annotations

import os
import signal
import zipfile
from pathlib import Path

import pytest

from tests.helpers.comfy_release import (ARCHIVE, TAG, make_world, release_zip, serve_online,
                                         wheel)
from PySide6.QtCore import QTimer

from isengard_desktop.core.comfy_install.layout import (comfy_dir, install_folder,
                                                       read_install_info)
from isengard_desktop.core.runtime.layout import read_marker, venv_python
from isengard_desktop.core.runtime.status import RuntimeState
from isengard_desktop.services.generation.comfy_install import (ComfyInstallService,
                                                                required_node_classes)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

WAIT = 120_000


@pytest.fixture
def world(tmp_path, monkeypatch):
    return make_world(tmp_path, monkeypatch)


@pytest.fixture
def service(world, qt_asyncio_loop):
    svc = ComfyInstallService(world["paths"])
    svc.verify_timeout_s = 90.0
    yield svc
    svc.shutdown()


def _install(qtbot, svc, payload, packs=()):
    with qtbot.waitSignal(svc.finished, timeout=WAIT) as blocker:
        svc.install(payload, packs)
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
    release_zip(archive, {"ComfyUI-test/../../../escaped.py": "boom"})
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


def test_online_install_downloads_the_release_resuming_after_a_drop(qtbot, world, service):
    serve_online(world, {"drop_after": 300})
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
    serve_online(world, {})
    try:
        status = _install(qtbot, service, None)
        assert status.state == RuntimeState.MISSING
        assert "Downloading ComfyUI" in status.problem and "SHA-256" in status.problem
        assert not (world["paths"].data / "comfyui" / "archives" / ARCHIVE).exists()
    finally:
        world["host"].__exit__(None, None, None)


def test_offline_payload_builder_carries_comfyui_and_the_install_uses_it(qtbot, world, service,
                                                                        tmp_path):
    import importlib.util

    from isengard_desktop.core.runtime.manifest import read_manifest, verify_manifest

    spec = importlib.util.spec_from_file_location(
        "offline_payload", Path(__file__).resolve().parents[2] / "packaging" /
        "offline_payload.py")
    assert spec is not None and spec.loader is not None
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    source = world["payload"] / "wheels"
    torch_only = tmp_path / "torch-wheels"
    torch_only.mkdir()
    for built in source.glob("isengard_fake_torch-*.whl"):
        (torch_only / built.name).write_bytes(built.read_bytes())
    app_wheel = tmp_path / "isengard_desktop-0.0.0-py3-none-any.whl"
    app_wheel.write_bytes(b"not used by the ComfyUI install")
    out = builder.build_payload("cpu", world["locks"] / "cpu.txt", tmp_path / "usb",
                                wheelhouse=torch_only, app_wheel=app_wheel,
                                python_url="")   # no Python build: this test is about ComfyUI
    assert not list((out / "wheels").glob("isengard_comfy_dep-*"))
    _with_pack(world, '"FaceDetailer": object')
    pack_zip = world["payload"] / "comfyui" / "nodes" / f"ComfyUI-Impact-Pack-{PACK_COMMIT[:12]}.zip"
    builder.add_comfyui(out, world["payload"] / "comfyui" / ARCHIVE, world["locks"] / "cpu.txt",
                        find_links=source, packs={"ComfyUI-Impact-Pack": pack_zip})
    # the release's and the pack's requirements were fetched into wheels/, and the manifest
    # covers everything
    assert list((out / "wheels").glob("isengard_comfy_dep-*.whl"))
    assert list((out / "wheels").glob("isengard_pack_dep-*.whl"))
    listed = {f.path for f in read_manifest(out).files}
    assert f"comfyui/{ARCHIVE}" in listed and verify_manifest(out) == []
    assert f"comfyui/nodes/{pack_zip.name}" in listed
    status = _install(qtbot, service, out, packs=["ComfyUI-Impact-Pack"])
    assert status.state == RuntimeState.READY, status.problem
    info = read_install_info(install_folder(world["paths"], TAG))
    assert info is not None and info.source == str(out)


def test_offline_archive_that_differs_from_the_manifest_is_named(qtbot, world, service):
    from isengard_desktop.core.runtime.manifest import write_manifest

    write_manifest(world["payload"], device="cpu", lock_name="cpu.txt")
    archive = world["payload"] / "comfyui" / ARCHIVE
    archive.write_bytes(archive.read_bytes()[:-10])        # a bad copy
    status = _install(qtbot, service, world["payload"])
    assert status.state != RuntimeState.READY
    assert "manifest.json" in status.problem and ARCHIVE in status.problem


PACK_COMMIT = "a9440d63ec9c0a0db8e8374e9f50e9c440c68ec2"


def _with_pack(world, nodes: str) -> None:
    """The release file lists the Impact Pack; the payload carries its pinned archive (an
    ``__init__.py`` whose NODE_CLASS_MAPPINGS names ``nodes``, and a requirement)."""
    wheel(world["payload"] / "wheels", "isengard_pack_dep")
    text = world["release"].read_text()
    world["release"].write_text(
        text + '\n[[custom_nodes]]\nname = "ComfyUI-Impact-Pack"\n'
        'repo = "https://github.com/ltdrdata/ComfyUI-Impact-Pack"\n'
        f'commit = "{PACK_COMMIT}"\nfor = "FaceDetailer"\n')
    nodes_dir = world["payload"] / "comfyui" / "nodes"
    nodes_dir.mkdir()
    top = f"ComfyUI-Impact-Pack-{PACK_COMMIT}"
    with zipfile.ZipFile(nodes_dir / f"ComfyUI-Impact-Pack-{PACK_COMMIT[:12]}.zip", "w") as zf:
        zf.writestr(f"{top}/__init__.py", "import isengard_pack_dep\n"
                                          f"NODE_CLASS_MAPPINGS = {{{nodes}}}\n")
        zf.writestr(f"{top}/requirements.txt", "isengard_pack_dep\n")


def test_a_ticked_node_pack_is_installed_and_its_nodes_are_required(qtbot, world, service):
    _with_pack(world, '"FaceDetailer": object, "SAMLoader": object')
    status = _install(qtbot, service, world["payload"], packs=["ComfyUI-Impact-Pack"])
    assert status.state == RuntimeState.READY, status.problem
    folder = install_folder(world["paths"], TAG)
    pack = comfy_dir(folder) / "custom_nodes" / "ComfyUI-Impact-Pack"
    assert (pack / "__init__.py").is_file()
    assert (pack / ".isengard-pack").read_text() == PACK_COMMIT
    info = read_install_info(folder)
    assert info is not None and info.packs == (f"ComfyUI-Impact-Pack@{PACK_COMMIT}",)


def test_a_pack_without_the_node_we_need_fails_the_check_naming_it(qtbot, world, service):
    _with_pack(world, '"SAMLoader": object')
    status = _install(qtbot, service, world["payload"], packs=["ComfyUI-Impact-Pack"])
    assert status.state == RuntimeState.BROKEN
    assert "FaceDetailer" in status.problem
    info = read_install_info(install_folder(world["paths"], TAG))
    assert info is not None and info.verify.missing_nodes == ("FaceDetailer",)


def test_an_unknown_pack_is_refused_by_name(qtbot, world, service):
    status = _install(qtbot, service, world["payload"], packs=["NoSuchPack"])
    assert "NoSuchPack" in status.problem and "unknown" in status.problem
    assert not service.busy


def test_cancelled_download_resumes_from_the_part_file(qtbot, world, service):
    # a release archive big enough to take several pieces (256 KiB each) from the slow host
    archive = world["payload"] / "comfyui" / ARCHIVE
    release_zip(archive, {"ComfyUI-test/big.bin": os.urandom(1536 * 1024).hex()[:1536 * 1024]})
    serve_online(world, {"piece_delay_s": 0.2})
    try:
        def cancel_once(p) -> None:
            if p.label == "downloading" and p.done > 0:
                service.progress.disconnect(cancel_once)
                service.cancel()

        service.progress.connect(cancel_once)
        status = _install(qtbot, service, None)
        assert status.state == RuntimeState.INCOMPLETE and "cancelled" in status.problem
        part = world["paths"].data / "comfyui" / "archives" / (ARCHIVE + ".part")
        assert part.is_file() and part.stat().st_size > 0
        status = _install(qtbot, service, None)
        assert status.state == RuntimeState.READY, status.problem
        starts = [r.range_start for r in world["host"].requests if r.path.endswith(".zip")]
        assert starts[0] is None and starts[-1] and starts[-1] > 0   # resumed, not from 0
    finally:
        world["host"].__exit__(None, None, None)
