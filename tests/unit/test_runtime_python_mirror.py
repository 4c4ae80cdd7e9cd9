"""The ``uv venv`` command that makes a runtime's venv (``install.venv_command``, pure) and
where an offline payload keeps uv's Python build (``install.mirror_relpath``)."""

from __future__ import annotations

import pytest

from isengard_desktop.core.runtime.install import (
    PYTHON_MIRROR_DIR, mirror_relpath, venv_command)

URL = ("https://releases.astral.sh/github/python-build-standalone/releases/download/20261110/"
       "cpython-3.11.18%2B20261110-x86_64-unknown-linux-gnu-install_only_stripped.tar.gz")
BASE_ENV = {"UV_CACHE_DIR": "/c", "UV_PYTHON_INSTALL_DIR": "/data/runtime/python"}


def test_mirror_path_is_the_part_after_releases_download_decoded():
    assert mirror_relpath(URL) == ("20261110/cpython-3.11.18+20261110-x86_64-unknown-linux-gnu-"
                                   "install_only_stripped.tar.gz")
    old_host = URL.replace("releases.astral.sh/github", "github.com/astral-sh")
    assert mirror_relpath(old_host) == mirror_relpath(URL)
    with pytest.raises(ValueError, match="not a python-build-standalone release"):
        mirror_relpath("https://downloads.python.org/pypy/pypy3.11-v8.0.1-linux64.tar.gz")
    with pytest.raises(ValueError, match="<release tag>/<file>"):
        mirror_relpath("https://x/releases/download/only-a-file.tar.gz")
    with pytest.raises(ValueError):
        mirror_relpath("https://x/releases/download/../../etc/passwd")


def test_frozen_offline_with_mirror_uses_only_the_payloads_python(tmp_path):
    mirror = tmp_path / "usb stick" / PYTHON_MIRROR_DIR
    argv, env = venv_command("uv", tmp_path / "venv", BASE_ENV, managed=True, offline=True,
                             mirror=mirror, own_python="/app/python")
    assert argv == ["uv", "venv", "--clear", "--no-project", "--python", "3.11",
                    "--python-preference", "only-managed", str(tmp_path / "venv")]
    assert "--no-python-downloads" not in argv
    assert env["UV_PYTHON_INSTALL_MIRROR"] == mirror.as_uri()
    assert env["UV_PYTHON_INSTALL_MIRROR"].startswith("file://")
    assert "usb%20stick" in env["UV_PYTHON_INSTALL_MIRROR"]
    assert env["UV_PYTHON_DOWNLOADS"] == "automatic"
    assert env["UV_PYTHON_INSTALL_DIR"] == "/data/runtime/python"
    assert "UV_PYTHON_INSTALL_MIRROR" not in BASE_ENV      # the caller's mapping is untouched


def test_frozen_offline_without_mirror_keeps_todays_command(tmp_path):
    argv, env = venv_command("uv", tmp_path / "venv", BASE_ENV, managed=True, offline=True,
                             mirror=None, own_python="/app/python")
    assert argv == ["uv", "venv", "--clear", "--no-project", "--python", "3.11",
                    "--python-preference", "managed", "--no-python-downloads",
                    str(tmp_path / "venv")]
    assert env == BASE_ENV
    online, _ = venv_command("uv", tmp_path / "venv", BASE_ENV, managed=True, offline=False,
                             mirror=None, own_python="/app/python")
    assert "--no-python-downloads" not in online and "managed" in online


def test_checkout_lends_its_own_python_even_with_a_mirror(tmp_path):
    argv, env = venv_command("uv", tmp_path / "venv", BASE_ENV, managed=False, offline=True,
                             mirror=tmp_path / "python", own_python="/app/python")
    assert argv == ["uv", "venv", "--clear", "--no-project", "--python", "/app/python",
                    str(tmp_path / "venv")]
    assert "UV_PYTHON_INSTALL_MIRROR" not in env


def test_manifest_python_field_must_stay_under_python(tmp_path):
    from isengard_desktop.core.runtime.manifest import read_manifest, verify_manifest, \
        write_manifest

    (tmp_path / "cpu.txt").write_text("x==1\n")
    write_manifest(tmp_path, device="cpu", lock_name="cpu.txt", python="python/t/cp.tar.gz")
    # named in the manifest but not there when it was written: not listed, so it is named
    assert verify_manifest(tmp_path) == [
        "the manifest does not list its Python build python/t/cp.tar.gz"]
    (tmp_path / "python" / "t").mkdir(parents=True)
    (tmp_path / "python" / "t" / "cp.tar.gz").write_bytes(b"py")
    write_manifest(tmp_path, device="cpu", lock_name="cpu.txt", python="python/t/cp.tar.gz")
    assert read_manifest(tmp_path).python == "python/t/cp.tar.gz"
    assert verify_manifest(tmp_path) == []
    write_manifest(tmp_path, device="cpu", lock_name="cpu.txt", python="wheels/x.tar.gz")
    [problem] = verify_manifest(tmp_path)
    assert "manifest.json" in problem and "'python'" in problem and "python/" in problem
