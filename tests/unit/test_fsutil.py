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
    with pytest.raises(RuntimeError), atomic_output(target) as fh:
        fh.write(b"half")
        raise RuntimeError("disk pulled")
    assert target.read_text() == "old"
    assert sorted(p.name for p in target.parent.iterdir()) == ["settings.json"]


def test_atomic_copy(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(bytes(range(256)) * 5000)
    atomic_copy(src, tmp_path / "out" / "dst.bin", chunk=4096)
    assert (tmp_path / "out" / "dst.bin").read_bytes() == src.read_bytes()


def test_new_files_honour_the_umask_like_a_normal_write_unless_private(tmp_path):
    """Issue 10, item 14: files were 0600 whatever the umask (mkstemp), so a ComfyUI running
    as another user could not read a generated picture or a LoRA copied into its folder."""
    import os
    import stat

    from isengard_desktop.core.fsutil import PRIVATE_MODE, atomic_write_bytes

    src = tmp_path / "src.bin"
    src.write_bytes(b"lora")
    mask = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "picture.png", b"x")
        atomic_copy(src, tmp_path / "other-disk" / "lora.safetensors")
        atomic_write_bytes(tmp_path / "private.bin", b"x", mode=PRIVATE_MODE)
    finally:
        os.umask(mask)
    if os.name == "posix":
        assert stat.S_IMODE((tmp_path / "picture.png").stat().st_mode) == 0o644
        assert stat.S_IMODE((tmp_path / "other-disk" / "lora.safetensors").stat().st_mode) == 0o644
        assert stat.S_IMODE((tmp_path / "private.bin").stat().st_mode) == 0o600


def test_the_trainer_runtime_writes_loras_through_the_same_writer(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    from isengard_desktop.core import fsutil
    from isengard_desktop.training_runtime import lora_file

    calls = []
    real = fsutil.atomic_write_bytes
    monkeypatch.setattr(lora_file, "atomic_write_bytes",
                        lambda path, data, **kw: calls.append(path) or real(path, data, **kw))
    out = lora_file.write_lora(tmp_path / "l" / "a.safetensors", {"w": torch.ones(2, 2)},
                               {"ss_network_dim": "4"})
    assert calls == [out]
    assert lora_file.read_metadata(out) == {"ss_network_dim": "4"}
    assert sorted(p.name for p in out.parent.iterdir()) == ["a.safetensors"]


def test_link_or_copy_links_on_one_disk_and_copies_atomically_otherwise(tmp_path, monkeypatch):
    import os

    from isengard_desktop.core import fsutil

    src = tmp_path / "a.jpg"
    src.write_bytes(b"photo")
    os.utime(src, (1_000_000, 1_000_000))
    linked = tmp_path / "staged" / "a.jpg"
    linked.parent.mkdir()
    linked.write_bytes(b"old")                       # replaced, never appended to
    fsutil.link_or_copy(src, linked)
    assert os.path.samefile(src, linked)

    def no_link(*_a, **_k):
        raise OSError("cross-device link")

    monkeypatch.setattr(fsutil.os, "link", no_link)
    copied = tmp_path / "other" / "a.jpg"
    fsutil.link_or_copy(src, copied)
    assert copied.read_bytes() == b"photo" and not os.path.samefile(src, copied)
    assert copied.stat().st_mtime == 1_000_000       # like shutil.copy2
    assert sorted(p.name for p in copied.parent.iterdir()) == ["a.jpg"]
