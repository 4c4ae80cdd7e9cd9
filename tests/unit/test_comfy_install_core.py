"""The managed ComfyUI's release file, safe unpacking and folder states (no child process)."""

from __future__ import annotations

import io
import stat
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

from isengard_desktop.core.comfy_install.archive import ArchiveError, safe_extract
from isengard_desktop.core.comfy_install.layout import (
    ComfyInstallInfo, ComfyVerify, comfy_dir, inspect_install, install_folder,
    write_install_info)
from isengard_desktop.core.comfy_install.release import ReleaseError, load_release
from isengard_desktop.core.paths import resolve_paths
from isengard_desktop.core.runtime.layout import clear_marker, venv_python, write_marker
from isengard_desktop.core.runtime.locks import lock_sha256
from isengard_desktop.core.runtime.status import RuntimeDevice, RuntimeState


def test_committed_release_file_parses_with_a_pinned_commit_and_node_packs():
    release = load_release()
    assert release.tag.startswith("v") and len(release.commit) == 40
    assert release.url.endswith(f"/archive/refs/tags/{release.tag}.zip")
    assert {p.name for p in release.node_packs} >= {"ComfyUI-Impact-Pack",
                                                     "ComfyUI_IPAdapter_plus"}


def test_release_file_errors_name_the_field(tmp_path):
    bad = tmp_path / "release.toml"
    bad.write_text('format = 1\n[release]\ntag = "../x"\ncommit = "abc1234"\nurl = "u"\n'
                   'archive = "a.zip"\nsha256 = ""\n')
    with pytest.raises(ReleaseError, match="release.tag"):
        load_release(bad)
    bad.write_text('format = 1\n[release]\ntag = "v1"\ncommit = "abc1234"\nurl = "u"\n'
                   'archive = "a.zip"\nsha256 = "xyz"\n')
    with pytest.raises(ReleaseError, match="release.sha256"):
        load_release(bad)
    with pytest.raises(ReleaseError, match="missing"):
        load_release(tmp_path / "nope.toml")


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_zip_top_folder_is_stripped(tmp_path):
    archive = _zip(tmp_path / "r.zip", {"ComfyUI-0.8.1/main.py": b"print(1)\n",
                                        "ComfyUI-0.8.1/comfy/__init__.py": b""})
    dest = safe_extract(archive, tmp_path / "out" / "ComfyUI")
    assert (dest / "main.py").read_bytes() == b"print(1)\n"
    assert (dest / "comfy" / "__init__.py").is_file()
    assert not (tmp_path / "out" / "ComfyUI.partial").exists()


@pytest.mark.parametrize("evil", ["ComfyUI/../../evil.py", "/etc/evil.py", "C:/evil.py",
                                  "ComfyUI\\..\\..\\evil.py"])
def test_zip_traversal_is_refused_and_nothing_is_written(tmp_path, evil):
    archive = _zip(tmp_path / "r.zip", {"ComfyUI/main.py": b"x", evil: b"boom"})
    with pytest.raises(ArchiveError, match="outside"):
        safe_extract(archive, tmp_path / "out" / "ComfyUI")
    assert not (tmp_path / "evil.py").exists()
    assert not (tmp_path / "out" / "ComfyUI").exists()
    assert not (tmp_path / "out" / "ComfyUI.partial").exists()


def test_zip_symlink_member_is_refused(tmp_path):
    archive = tmp_path / "r.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ComfyUI/main.py", b"x")
        link = zipfile.ZipInfo("ComfyUI/link")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
    with pytest.raises(ArchiveError, match="link"):
        safe_extract(archive, tmp_path / "ComfyUI")


def test_tar_traversal_and_links_are_refused(tmp_path):
    def tar(members: list[tarfile.TarInfo]) -> Path:
        path = tmp_path / "r.tar.gz"
        with tarfile.open(path, "w:gz") as tf:
            for info in members:
                tf.addfile(info, io.BytesIO(b"x") if info.isfile() else None)
        return path

    ok = tarfile.TarInfo("ComfyUI/main.py")
    ok.size = 1
    evil = tarfile.TarInfo("ComfyUI/../../evil")
    evil.size = 1
    with pytest.raises(ArchiveError, match="outside"):
        safe_extract(tar([ok, evil]), tmp_path / "a")
    link = tarfile.TarInfo("ComfyUI/l")
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc/passwd"
    with pytest.raises(ArchiveError, match="link"):
        safe_extract(tar([ok, link]), tmp_path / "b")
    assert (safe_extract(tar([ok]), tmp_path / "c") / "main.py").read_bytes() == b"x"


def test_not_an_archive_is_named(tmp_path):
    junk = tmp_path / "cut.zip"
    junk.write_bytes(b"PK\x03\x04 cut short")
    with pytest.raises(ArchiveError, match="cut.zip"):
        safe_extract(junk, tmp_path / "ComfyUI")


def _ready(paths, release, lock: Path, tag: str | None = None, ok: bool = True) -> Path:
    folder = install_folder(paths, tag or release.tag)
    python = venv_python(folder)
    python.parent.mkdir(parents=True)
    python.write_text("")
    (comfy_dir(folder)).mkdir(parents=True)
    (comfy_dir(folder) / "main.py").write_text("")
    write_install_info(folder, ComfyInstallInfo(
        tag=tag or release.tag, commit=release.commit, device=RuntimeDevice.CPU,
        lock_sha256=lock_sha256(lock), installed=time.time(),
        verify=ComfyVerify(ok=ok, problem="" if ok else "KSampler missing")))
    return folder


def test_states_follow_the_runtime_rules(tmp_path):
    paths = resolve_paths({"ISENGARD_HOME": str(tmp_path / "home")}).ensure()
    release = load_release()
    lock = tmp_path / "cpu.txt"
    lock.write_text("tiny==1.0\n")
    status = inspect_install(paths, release, RuntimeDevice.CPU, lock)
    assert status.state == RuntimeState.MISSING and "Install ComfyUI for me" in status.problem

    folder = _ready(paths, release, lock)
    assert inspect_install(paths, release, RuntimeDevice.CPU, lock).state == RuntimeState.READY
    write_marker(folder, "cancelled")
    status = inspect_install(paths, release, RuntimeDevice.CPU, lock)
    assert status.state == RuntimeState.INCOMPLETE and "cancelled" in status.problem
    clear_marker(folder)
    lock.write_text("tiny==2.0\n")
    assert inspect_install(paths, release, RuntimeDevice.CPU, lock).state == RuntimeState.OUTDATED
    assert inspect_install(paths, release, RuntimeDevice.CUDA13,
                           lock).state == RuntimeState.OUTDATED
    lock.write_text("tiny==1.0\n")
    (comfy_dir(folder) / "main.py").unlink()
    status = inspect_install(paths, release, RuntimeDevice.CPU, lock)
    assert status.state == RuntimeState.BROKEN and "main.py" in status.problem


def test_an_older_release_reads_outdated_and_stays_usable(tmp_path):
    paths = resolve_paths({"ISENGARD_HOME": str(tmp_path / "home")}).ensure()
    release = load_release()
    lock = tmp_path / "cpu.txt"
    lock.write_text("tiny==1.0\n")
    old = _ready(paths, release, lock, tag="v0.0.1")
    status = inspect_install(paths, release, RuntimeDevice.CPU, lock)
    assert status.state == RuntimeState.OUTDATED
    assert status.installed_tag == "v0.0.1" and status.comfy == comfy_dir(old)


def test_recorded_comfyui_object_info_has_every_core_node_we_require():
    """The node classes the install check requires exist in what a real ComfyUI 0.3.64 said
    (tests/fixtures/comfyui/object_info/object_info_full.json): a fresh install passes."""
    import json

    from isengard_desktop.services.generation.comfy_check import (check_object_info,
                                                                  required_node_classes)

    recorded = Path(__file__).resolve().parents[1] / "fixtures" / "comfyui" / "object_info"
    info = json.loads((recorded / "object_info_full.json").read_text(encoding="utf-8"))
    result = check_object_info(info)
    assert result.ok, result.problem
    assert {"KSampler", "CheckpointLoaderSimple", "LoraLoader"} <= set(required_node_classes())
    # with the Impact Pack ticked, its FaceDetailer is required and a plain ComfyUI lacks it
    ticked = check_object_info(info, ["ComfyUI-Impact-Pack"])
    assert not ticked.ok and ticked.missing_nodes == ("FaceDetailer",)
    assert "FaceDetailer" in ticked.problem
