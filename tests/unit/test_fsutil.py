from __future__ import annotations

import pytest

from isengard_desktop.core.fsutil import atomic_copy, atomic_output, atomic_write_text


def test_atomic_write_replaces_whole_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "a" / "caption.txt"
    atomic_write_text(target, "first")
    atomic_write_text(target, "second")
    assert target.read_text() == "second"
    assert sorted(p.name for p in target.parent.iterdir()) == ["caption.txt"]


def test_failure_keeps_the_old_file_and_removes_the_temp(tmp_path):
    target = tmp_path / "cfg" / "settings.json"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_output(target) as fh:
            fh.write(b"half")
            raise RuntimeError("disk pulled")
    assert target.read_text() == "old"
    assert sorted(p.name for p in target.parent.iterdir()) == ["settings.json"]


def test_atomic_copy(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(bytes(range(256)) * 5000)
    atomic_copy(src, tmp_path / "out" / "dst.bin", chunk=4096)
    assert (tmp_path / "out" / "dst.bin").read_bytes() == src.read_bytes()
