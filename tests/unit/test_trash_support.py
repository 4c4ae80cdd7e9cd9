"""The trash where there is none (issue 13, item 5), the Windows branch driven on Linux
through trash_support's ``windows``/``drive_type`` seams; the delete paths' confirm."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from isengard_desktop.services import trash_support
from isengard_desktop.services.trash_support import (DRIVE_FIXED, DRIVE_REMOTE,
                                                     DRIVE_REMOVABLE, NoRecycleBin,
                                                     has_recycle_bin, to_trash)

ROOT = Path(__file__).resolve().parents[2]


def _drives(types: dict[str, int]):
    asked: list[str] = []

    def drive_type(root: str) -> int:
        asked.append(root)
        return types[root]
    return drive_type, asked


def test_which_windows_drives_have_a_recycle_bin():
    drive_type, asked = _drives({"C:\\": DRIVE_FIXED, "E:\\": DRIVE_REMOVABLE,
                                 "Z:\\": DRIVE_REMOTE})
    assert has_recycle_bin(r"C:\Users\ann\Isengard\characters", windows=True,
                           drive_type=drive_type)
    assert not has_recycle_bin(r"E:\photos\a.jpg", windows=True, drive_type=drive_type)
    assert not has_recycle_bin(r"Z:\share\a.jpg", windows=True, drive_type=drive_type)
    assert asked == ["C:\\", "E:\\", "Z:\\"]
    assert not has_recycle_bin(r"\\nas\photos\a.jpg", windows=True, drive_type=drive_type)
    assert asked == ["C:\\", "E:\\", "Z:\\"]        # a UNC path needs no question
    assert has_recycle_bin("/media/usb/a.jpg", windows=False, drive_type=drive_type)


def test_no_recycle_bin_refuses_unless_the_user_agreed(tmp_path, monkeypatch):
    trashed: list[str] = []
    monkeypatch.setattr(trash_support, "send2trash", trashed.append)
    usb = {"E:\\": DRIVE_REMOVABLE}
    photo = tmp_path / "a.jpg"
    photo.write_bytes(b"x")
    folder = tmp_path / "anna"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "b.jpg").write_bytes(b"y")
    # the Windows branch sees these paths as on drive E: (a USB stick)
    monkeypatch.setattr(trash_support, "has_recycle_bin",
                        lambda path, **_: has_recycle_bin(r"E:\x", windows=True,
                                                          drive_type=usb.__getitem__))
    with pytest.raises(NoRecycleBin, match="without a Recycle Bin.*left in place"):
        to_trash(photo)
    assert photo.exists() and trashed == []
    to_trash(photo, allow_permanent=True)
    to_trash(folder, allow_permanent=True)
    assert not photo.exists() and not folder.exists() and trashed == []


def test_with_a_recycle_bin_the_trash_is_used(tmp_path, monkeypatch):
    trashed: list[str] = []
    monkeypatch.setattr(trash_support, "send2trash", trashed.append)
    photo = tmp_path / "a.jpg"
    photo.write_bytes(b"x")
    to_trash(photo, windows=True, drive_type=lambda root: DRIVE_FIXED)
    to_trash(photo, allow_permanent=True)          # Linux: the trash, never a real delete
    assert trashed == [str(photo), str(photo)] and photo.exists()


def test_confirm_says_when_photos_are_deleted_for_good(qtbot, monkeypatch):
    from PySide6.QtWidgets import QMessageBox

    from isengard_desktop.ui.dialogs import confirm as confirm_module

    asked: list[tuple[str, str]] = []

    def question(parent, title, text, *args):
        asked.append((title, text))
        return QMessageBox.StandardButton.Yes

    monkeypatch.setattr(QMessageBox, "question", question)
    assert confirm_module.confirm_trash_photos(None, 2, permanent=True)
    assert confirm_module.confirm_trash_photos(None, 1)
    (title, text), (title2, text2) = asked
    assert title == "Delete photos for good" and "cannot be restored" in text
    assert "2 photos" in text
    assert title2 == "Delete photos" and "restore the files from the trash" in text2


def test_macos_gets_the_cocoa_bridge_send2trash_needs():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    cocoa = [d for d in deps if d.lower().startswith("pyobjc-framework-cocoa")]
    assert len(cocoa) == 1
    requirement, marker = (part.strip() for part in cocoa[0].split(";"))
    assert "==" in requirement                     # pinned like everything else
    assert marker.replace('"', "'") == "sys_platform == 'darwin'"
    assert any(d.startswith("psutil==") for d in deps)


def test_tests_on_windows_and_macos_never_reach_the_real_trash(tmp_path, monkeypatch):
    """What tests/conftest.py installs there: moves go to a folder of the test's own."""
    from tests.helpers.trash import install_private_trash, trashed_names

    folder = install_private_trash(monkeypatch, tmp_path / "bin")
    for name in ("a.jpg", "a.jpg"):            # the same name twice: both kept
        photo = tmp_path / name
        photo.write_bytes(b"x")
        to_trash(photo)
        assert not photo.exists()
    (tmp_path / "anna").mkdir()
    to_trash(tmp_path / "anna")
    assert trashed_names() == {"a.jpg", "anna"}
    assert len(list(folder.glob("*/*"))) == 3
