"""The trainer runtime's folder states (``core/runtime/layout.inspect``), which Python trains
(``trainer_python``), the offline manifest check and the RECORD check that repair relies on.
Real files in tmp folders; no process is started."""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from pathlib import Path

import pytest

from isengard_desktop import __version__
from isengard_desktop.core.paths import resolve_paths
from isengard_desktop.core.runtime import install
from isengard_desktop.core.runtime.layout import (
    RuntimeInfo, VerifyResult, clear_marker, inspect, runtime_folder, venv_python, write_info,
    write_marker)
from isengard_desktop.core.runtime.locks import lock_file, lock_packages, lock_sha256
from isengard_desktop.core.runtime.manifest import (
    read_manifest, verify_manifest, write_manifest)
from isengard_desktop.core.runtime.python import PythonSource, trainer_python
from isengard_desktop.core.runtime.status import RuntimeDevice, RuntimeState

LOCK = """\
# made by a test
numpy==2.4.6 \\
    --hash=sha256:aaaa
torch==2.13.0+cpu \\
    --hash=sha256:bbbb
    # via -r req.in
"""


@pytest.fixture
def paths(tmp_path, monkeypatch):
    monkeypatch.setenv("ISENGARD_HOME", str(tmp_path / "home"))
    locks = tmp_path / "locks"
    locks.mkdir()
    (locks / "cpu.txt").write_text(LOCK)
    monkeypatch.setenv("ISENGARD_RUNTIME_LOCKS", str(locks))
    monkeypatch.setenv("ISENGARD_USE_RUNTIME", "1")
    return resolve_paths().ensure()


def make_runtime(paths, device=RuntimeDevice.CPU, version=__version__, ok=True,
                 lock_sha=None, installed=1.0, problem=""):
    """A runtime folder as an install leaves it (the interpreter is a stand-in file)."""
    folder = runtime_folder(paths, device, version)
    python = venv_python(folder)
    python.parent.mkdir(parents=True)
    python.write_text("")
    write_info(folder, RuntimeInfo(
        app_version=version, device=device,
        lock_sha256=lock_sha256(lock_file(device)) if lock_sha is None else lock_sha,
        installed=installed, verify=VerifyResult(ok=ok, problem=problem)))
    return folder


def test_lock_file_reads_pins(paths):
    assert lock_file("cpu").name == "cpu.txt"
    assert lock_packages(lock_file("cpu")) == [("numpy", "2.4.6"), ("torch", "2.13.0+cpu")]


def test_missing_then_ready(paths):
    status = inspect(paths, RuntimeDevice.CPU)
    assert status.state == RuntimeState.MISSING and "install" in status.problem
    folder = make_runtime(paths)
    status = inspect(paths, RuntimeDevice.CPU)
    assert status.state == RuntimeState.READY and status.problem == ""
    assert status.python == venv_python(folder) and status.folder == folder


def test_marker_present_means_incomplete_whatever_else_is_there(paths):
    folder = make_runtime(paths)
    write_marker(folder, "uv exited with code 2")
    status = inspect(paths, RuntimeDevice.CPU)
    assert status.state == RuntimeState.INCOMPLETE
    assert "uv exited with code 2" in status.problem and status.python is None
    clear_marker(folder)
    assert inspect(paths, RuntimeDevice.CPU).state == RuntimeState.READY


def test_other_app_version_or_lock_is_outdated(paths):
    make_runtime(paths, version="0.0.9")
    status = inspect(paths, RuntimeDevice.CPU)
    assert status.state == RuntimeState.OUTDATED and "0.0.9" in status.problem

    make_runtime(paths, lock_sha="0" * 64)    # this version, an older lock
    status = inspect(paths, RuntimeDevice.CPU)
    assert status.state == RuntimeState.OUTDATED and "lock" in status.problem


def test_failed_verify_or_missing_python_is_broken(paths):
    folder = make_runtime(paths, ok=False, problem="PyTorch cannot be imported in the runtime.")
    status = inspect(paths, RuntimeDevice.CPU)
    assert status.state == RuntimeState.BROKEN and "PyTorch" in status.problem
    venv_python(folder).unlink()
    write_info(folder, RuntimeInfo(__version__, RuntimeDevice.CPU,
                                   lock_sha256(lock_file("cpu")), 1.0, VerifyResult(ok=True)))
    status = inspect(paths, RuntimeDevice.CPU)
    assert status.state == RuntimeState.BROKEN and str(venv_python(folder)) in status.problem
    (folder / "runtime.json").unlink()
    assert inspect(paths, RuntimeDevice.CPU).state == RuntimeState.BROKEN


def test_trainer_python_without_runtime_says_install_not_reinstall(paths):
    python = trainer_python(paths)
    assert python.source == PythonSource.NONE and python.executable is None
    assert "install" in python.problem.lower() and "reinstall" not in python.problem.lower()
    assert "Trainer runtime" in python.problem


def test_trainer_python_uses_ready_runtime(paths):
    folder = make_runtime(paths)
    python = trainer_python(paths)
    assert python.source == PythonSource.RUNTIME
    assert python.executable == venv_python(folder) and python.folder == folder
    env = python.child_env({"PYTHONPATH": "/somewhere", "PATH": "/bin"})
    assert "PYTHONPATH" not in env and env["PATH"] == "/bin"


def test_upgrade_keeps_old_runtime_until_new_one_verifies(paths):
    old = make_runtime(paths, version="0.0.9")
    new = runtime_folder(paths, RuntimeDevice.CPU)
    write_marker(new)                           # the upgrade's install is under way
    assert trainer_python(paths).executable == venv_python(old)
    clear_marker(new)
    make_runtime(paths, ok=False)               # installed, verify failed
    assert trainer_python(paths).executable == venv_python(old)
    write_info(new, RuntimeInfo(__version__, RuntimeDevice.CPU,
                                lock_sha256(lock_file("cpu")), 2.0, VerifyResult(ok=True)))
    assert trainer_python(paths).executable == venv_python(new)


def test_device_override_picks_that_runtime(paths):
    make_runtime(paths, RuntimeDevice.CPU, installed=5.0)
    cuda = make_runtime(paths, RuntimeDevice.CUDA126, lock_sha="", installed=1.0)
    assert trainer_python(paths).executable == venv_python(
        runtime_folder(paths, RuntimeDevice.CPU))
    paths.settings_file.write_text(json.dumps({"version": 1, "runtime_device_override": "cu126"}))
    assert trainer_python(paths).executable == venv_python(cuda)


def test_checkout_with_torch_uses_its_own_python(paths, monkeypatch):
    monkeypatch.delenv("ISENGARD_USE_RUNTIME")
    python = trainer_python(paths)
    assert python.source == PythonSource.CHECKOUT and python.executable == Path(sys.executable)
    root = str(Path(__file__).resolve().parents[2])
    assert python.child_env({"PYTHONPATH": "/x"})["PYTHONPATH"].split(":")[:2] == [root, "/x"]


# -- manifest -----------------------------------------------------------------------------------
@pytest.fixture
def payload(tmp_path):
    folder = tmp_path / "payload"
    (folder / "wheels").mkdir(parents=True)
    (folder / "wheels" / "a-1.0-py3-none-any.whl").write_bytes(b"A" * 5000)
    (folder / "wheels" / "isengard_desktop-0.1.0-py3-none-any.whl").write_bytes(b"app")
    (folder / "cpu.txt").write_text(LOCK)
    write_manifest(folder, device="cpu", lock_name="cpu.txt",
                   app_wheel="wheels/isengard_desktop-0.1.0-py3-none-any.whl")
    return folder


def test_manifest_lists_every_file_with_size_and_hash(payload):
    manifest = read_manifest(payload)
    assert manifest.device == RuntimeDevice.CPU and manifest.lock == "cpu.txt"
    assert manifest.app_version == __version__
    by_path = {f.path: f for f in manifest.files}
    assert set(by_path) == {"cpu.txt", "wheels/a-1.0-py3-none-any.whl",
                            "wheels/isengard_desktop-0.1.0-py3-none-any.whl"}
    wheel = by_path["wheels/a-1.0-py3-none-any.whl"]
    assert wheel.size == 5000 and wheel.sha256 == hashlib.sha256(b"A" * 5000).hexdigest()
    seen = []
    assert verify_manifest(payload, lambda done, total: seen.append((done, total))) == []
    assert seen and seen[-1][0] == seen[-1][1] == manifest.total_bytes


def test_manifest_names_missing_truncated_and_corrupt_files(payload):
    (payload / "wheels" / "isengard_desktop-0.1.0-py3-none-any.whl").unlink()
    (payload / "wheels" / "a-1.0-py3-none-any.whl").write_bytes(b"A" * 4000)
    (payload / "cpu.txt").write_text(LOCK.replace("aaaa", "aaab"))
    problems = verify_manifest(payload)
    assert len(problems) == 3, problems
    assert any("isengard_desktop-0.1.0-py3-none-any.whl is missing" in p for p in problems)
    assert any("a-1.0-py3-none-any.whl is truncated (4,000 of 5,000 bytes)" in p
               for p in problems)
    assert any("cpu.txt is corrupt" in p for p in problems)


def test_bad_manifest_names_file_and_field(payload, tmp_path):
    assert "manifest.json is missing" in verify_manifest(tmp_path)[0]
    data = json.loads((payload / "manifest.json").read_text())
    data["device"] = "tpu"
    (payload / "manifest.json").write_text(json.dumps(data))
    [problem] = verify_manifest(payload)
    assert "manifest.json" in problem and "'device'" in problem and "tpu" in problem


# -- RECORD check (repair) ---------------------------------------------------------------------
def _record_line(rel: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{rel},sha256={digest},{len(data)}"


def test_record_check_finds_damaged_and_missing_packages(tmp_path):
    site = tmp_path / "site-packages"
    for name, files in {"good": {"good/__init__.py": b"x = 1\n"},
                        "hurt": {"hurt/__init__.py": b"y = 2\n", "hurt/core.py": b"z = 3\n"}
                        }.items():
        info = site / f"{name}-1.0.dist-info"
        info.mkdir(parents=True)
        lines = []
        for rel, data in files.items():
            (site / rel).parent.mkdir(parents=True, exist_ok=True)
            (site / rel).write_bytes(data)
            lines.append(_record_line(rel, data))
        lines.append(f"{name}-1.0.dist-info/RECORD,,")
        (info / "RECORD").write_text("\n".join(lines) + "\n")
    assert install.broken_packages(site, ["good", "hurt"]) == {}
    (site / "hurt" / "core.py").write_bytes(b"z = 4\n")        # same size, other bytes
    (site / "hurt" / "__init__.py").unlink()
    broken = install.broken_packages(site, ["good", "hurt", "Gone_Pkg"])
    assert broken == {"hurt": ["hurt/__init__.py", "hurt/core.py"], "gone-pkg": []}


def test_uv_output_and_transfer_text():
    out = install.UvOutput()
    for line in ["Using Python 3.11.7 environment at: v", "Resolved 53 packages in 31ms",
                 "Prepared 53 packages in 9.1s", "Installed 53 packages in 887ms"]:
        out.feed(line)
    assert out.resolved == 53 and out.prepared and out.installed
    out.feed("Downloading torch (191.2MiB)")
    out.feed("Downloading numpy (16.1MiB)")
    out.feed(" Downloaded numpy")
    assert out.download_total == int(191.2 * 1024 ** 2) + int(16.1 * 1024 ** 2)
    assert out.download_done == int(16.1 * 1024 ** 2)
    out.feed("error: No solution found when resolving dependencies")
    out.feed("  cause: Because zipp==4.1.2 has an invalid package format")
    assert out.last_error == ("No solution found when resolving dependencies: Because "
                              "zipp==4.1.2 has an invalid package format")
    mb = 1024 * 1024
    assert install.format_transfer(312 * mb, 2400 * mb, 24 * mb) == \
        "312 of 2,400 MB · 24.0 MB/s · about 87 s left"
    assert install.format_transfer(1000 * mb, 2400 * mb, 10 * mb) == \
        "1,000 of 2,400 MB · 10.0 MB/s · about 2 min left"
    assert install.format_transfer(50 * mb, 0, 0) == "50 MB"


def test_committed_locks_are_read_per_device_and_platform(monkeypatch):
    """locks.toml's [devices.<device>] (and its .windows table) decide the file and the indexes;
    PyTorch's own index comes first for the CPU build, PyPI after it, best-match across both."""
    from isengard_desktop.core.runtime.locks import ENV_LOCKS, lock_note, lock_sources

    monkeypatch.delenv(ENV_LOCKS, raising=False)
    assert lock_file("cpu", windows=False).name == "cpu.txt"
    assert lock_file("cpu", windows=True).name == "cpu-windows.txt"
    assert lock_file("cu126", windows=True).name == "cu126-windows.txt"
    cpu = lock_sources("cpu", windows=False)
    assert cpu.index_url == "https://download.pytorch.org/whl/cpu"
    assert cpu.extra_index_urls == ("https://pypi.org/simple",)
    assert cpu.uv_args()[-2:] == ["--index-strategy", "unsafe-best-match"]
    assert lock_sources("cu130", windows=False).uv_args() == ["--index-url",
                                                              "https://pypi.org/simple"]
    assert not lock_file("cu126", windows=False).exists()
    assert "not compiled here" in lock_note("cu126", windows=False)
