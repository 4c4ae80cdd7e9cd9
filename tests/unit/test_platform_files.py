"""Windows file semantics driven on Linux through fsutil's platform seam (issue 13, items 1, 8).

Windows' FlushFileBuffers refuses a read-only handle (EBADF) and os.replace fails with
PermissionError while another program holds the target open. Both are simulated here by
wrapping the real os functions; the code under test takes its Windows branch through
``fsutil._WINDOWS``.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os

import pytest

from isengard_desktop.core import fsutil
from isengard_desktop.training_runtime import checkpoints

_real_fsync = os.fsync
_real_replace = os.replace


def _windows_fsync(fd: int) -> None:
    """fsync as Windows does it: a handle without write access is refused."""
    if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY:
        raise OSError(errno.EBADF, "Bad file descriptor")
    _real_fsync(fd)


@pytest.fixture
def windows_fsync(monkeypatch):
    monkeypatch.setattr(os, "fsync", _windows_fsync)


def _write(text: str):
    def writer(path):
        path.write_text(text, encoding="utf-8")
    return writer


def test_checkpoint_save_fsyncs_through_a_write_handle_on_windows(tmp_path, monkeypatch,
                                                                   windows_fsync):
    monkeypatch.setattr(fsutil, "_WINDOWS", True)
    ckpt = checkpoints.save(tmp_path / "ckpts", 5, {"state.bin": _write("weights")})
    assert ckpt.path.name == "checkpoint-5"
    assert (ckpt.path / "state.bin").read_text() == "weights"
    assert checkpoints.verify(ckpt.path) == (True, "")
    assert json.loads((ckpt.path / checkpoints.MANIFEST).read_text())["step"] == 5


def test_a_read_only_fsync_is_what_windows_refuses(tmp_path, monkeypatch, windows_fsync):
    """The simulation bites: the POSIX branch (read-only handle) fails under it."""
    monkeypatch.setattr(fsutil, "_WINDOWS", False)
    with pytest.raises(OSError) as info:
        checkpoints.save(tmp_path / "ckpts", 5, {"state.bin": _write("weights")})
    assert info.value.errno == errno.EBADF
    assert not (tmp_path / "ckpts" / "checkpoint-5").exists()


def test_atomic_writer_fsyncs_its_write_handle(tmp_path, windows_fsync):
    target = tmp_path / "lora.safetensors"
    fsutil.atomic_write_bytes(target, b"abc")
    assert target.read_bytes() == b"abc"


def test_fsync_dir_is_skipped_on_windows(tmp_path, monkeypatch):
    opened: list[object] = []
    monkeypatch.setattr(os, "open", lambda *a, **k: opened.append(a) or 0)
    fsutil.fsync_dir(tmp_path, windows=True)
    assert opened == []


def _flaky_replace(fails: int, calls: list[str]):
    def replace(src, dest):
        calls.append(str(dest))
        if len(calls) <= fails:
            raise PermissionError(errno.EACCES, "The process cannot access the file", str(dest))
        _real_replace(src, dest)
    return replace


def test_replace_retries_a_held_target_on_windows(tmp_path, monkeypatch):
    src, dest = tmp_path / "new", tmp_path / "old"
    src.write_text("new")
    dest.write_text("old")
    calls: list[str] = []
    waits: list[float] = []
    monkeypatch.setattr(os, "replace", _flaky_replace(2, calls))
    fsutil.replace(src, dest, windows=True, sleep=waits.append)
    assert dest.read_text() == "new"
    assert len(calls) == 3
    assert waits == list(fsutil.REPLACE_RETRY_DELAYS_S[:2])


def test_replace_gives_up_after_the_last_wait_on_windows(tmp_path, monkeypatch):
    src, dest = tmp_path / "new", tmp_path / "old"
    src.write_text("new")
    calls: list[str] = []
    waits: list[float] = []
    monkeypatch.setattr(os, "replace", _flaky_replace(100, calls))
    with pytest.raises(PermissionError):
        fsutil.replace(src, dest, windows=True, sleep=waits.append)
    assert waits == list(fsutil.REPLACE_RETRY_DELAYS_S)
    assert len(calls) == len(fsutil.REPLACE_RETRY_DELAYS_S) + 1


def test_replace_does_not_retry_on_posix(tmp_path, monkeypatch):
    src, dest = tmp_path / "new", tmp_path / "old"
    src.write_text("new")
    calls: list[str] = []
    waits: list[float] = []
    monkeypatch.setattr(os, "replace", _flaky_replace(1, calls))
    with pytest.raises(PermissionError):
        fsutil.replace(src, dest, windows=False, sleep=waits.append)
    assert (calls, waits) == ([str(dest)], [])


def test_atomic_writer_and_checkpoints_survive_a_held_target_on_windows(tmp_path, monkeypatch):
    monkeypatch.setattr(fsutil, "_WINDOWS", True)
    monkeypatch.setattr(fsutil.time, "sleep", lambda s: None)
    calls: list[str] = []
    monkeypatch.setattr(os, "replace", _flaky_replace(1, calls))
    target = tmp_path / "settings.json"
    fsutil.atomic_write_text(target, "{}")
    assert target.read_text() == "{}"
    calls.clear()
    ckpt = checkpoints.save(tmp_path / "ckpts", 1, {"a.bin": _write("x")})
    assert checkpoints.verify(ckpt.path) == (True, "")
