"""The trainer runtime made for real, offline: a wheelhouse from a CPU lock (built once and
cached under ``~/.cache/isengard-test-wheelhouse/<lock sha256>/``; ``ISENGARD_TEST_WHEELHOUSE``
moves it), an offline payload with the app's wheel and manifest, then real ``uv`` installs with
``--no-index``: cancelled at each phase and continued, killed midway and finished by the next
install, repaired after damage, and the self-test training a LoRA through the runtime's Python.

The lock is ``resources/runtime/cpu.txt`` when the repository has one; otherwise the test
compiles one from the pins below with ``uv pip compile --find-links /opt/wheels`` (also cached,
keyed by the pins), the same way the committed locks are made.

Cold (empty cache) the wheelhouse takes about 20-40 s to download here; the module then runs in
about 3-4 minutes on this 2-core machine, most of it the self-test's tiny training run.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from isengard_desktop.core.paths import resolve_paths
from isengard_desktop.core.runtime.install import uv_binary
from isengard_desktop.core.runtime.layout import (
    RuntimeInfo, VerifyResult, cache_dir, read_info, read_marker, remove_runtime,
    runtime_folder, venv_python, write_info)
from isengard_desktop.core.runtime.locks import lock_sha256
from isengard_desktop.core.runtime.python import trainer_python
from isengard_desktop.core.runtime.status import InstallPhase, RuntimeDevice, RuntimeState

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]
WHEELHOUSE_ROOT = Path(os.environ.get("ISENGARD_TEST_WHEELHOUSE")
                       or Path.home() / ".cache" / "isengard-test-wheelhouse")
# What the trainer child imports (training_runtime + the core modules it uses), at our pins.
PINS = """\
torch==2.13.0+cpu
diffusers==0.42.1
peft==0.21.2
transformers==5.23.0
accelerate==1.15.0
sentencepiece==0.2.3
protobuf==7.36.2
torchao==0.18.0
safetensors==0.8.0
numpy==2.4.6
pillow==13.0.0
pi-heif==1.4.0
platformdirs==4.14.7
"""


def _load_payload_builder():
    spec = importlib.util.spec_from_file_location("offline_payload",
                                                  REPO / "packaging" / "offline_payload.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cpu_lock() -> Path:
    committed = REPO / "resources" / "runtime" / "cpu.txt"
    if committed.is_file():
        return committed
    key = hashlib.sha256(PINS.encode()).hexdigest()[:16]
    cached = WHEELHOUSE_ROOT / f"lock-{key}.txt"
    if not cached.is_file():
        WHEELHOUSE_ROOT.mkdir(parents=True, exist_ok=True)
        req = WHEELHOUSE_ROOT / f"lock-{key}.in"
        req.write_text(PINS)
        argv = [str(uv_binary()), "pip", "compile", "-q", str(req), "--generate-hashes",
                "--python-version", "3.11", "-o", str(cached) + ".tmp"]
        if Path("/opt/wheels").is_dir():
            argv += ["--find-links", "/opt/wheels"]
        subprocess.run(argv, check=True, timeout=300)
        os.replace(str(cached) + ".tmp", cached)
    return cached


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The lock (as the app's cpu lock), the cached wheelhouse, a payload, and one data folder
    shared by the module's tests (so uv's cache in it is warm after the first install)."""
    builder = _load_payload_builder()
    root = tmp_path_factory.mktemp("runtime")
    lock = _cpu_lock()
    locks = root / "locks"
    locks.mkdir()
    shutil.copy2(lock, locks / "cpu.txt")
    wheelhouse = WHEELHOUSE_ROOT / lock_sha256(lock)
    if not (wheelhouse / ".complete").exists():
        began = time.monotonic()
        partial = wheelhouse.with_name(wheelhouse.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        builder.download_wheels(lock, partial)
        (partial / ".complete").write_text(f"{time.monotonic() - began:.1f} s\n")
        shutil.rmtree(wheelhouse, ignore_errors=True)
        partial.rename(wheelhouse)
        print(f"wheelhouse built in {time.monotonic() - began:.1f} s")
    app_wheel = builder.build_app_wheel(root / "app-wheel")
    payload = builder.build_payload("cpu", locks / "cpu.txt", root / "payload",
                                    wheelhouse=wheelhouse, app_wheel=app_wheel,
                                    python_url="")   # this machine cannot reach uv's Python host
    home = root / "home"
    env = {"ISENGARD_HOME": str(home), "ISENGARD_RUNTIME_LOCKS": str(locks)}
    return {"payload": payload, "home": home, "env": env, "locks": locks}


def _paths(world):
    return resolve_paths({"ISENGARD_HOME": str(world["home"])}).ensure()


def _cli_env(world, **extra: str) -> dict[str, str]:
    env = dict(os.environ, **world["env"], OMP_NUM_THREADS="1", **extra)
    env.pop("QT_QPA_PLATFORM", None)
    env["PYTHONPATH"] = str(REPO)
    return env


def _cli(world, *args: str, timeout: float = 300) -> tuple[int, dict, str]:
    done = subprocess.run([sys.executable, "-m", "isengard_desktop", "runtime", *args, "--json"],
                          capture_output=True, text=True, env=_cli_env(world), cwd=REPO,
                          timeout=timeout)
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, done.stdout + done.stderr[-3000:]
    return done.returncode, json.loads(lines[0]), done.stderr


def _old_runtime(paths) -> Path:
    """A ready runtime of an older app version, as an upgrade finds it."""
    old = runtime_folder(paths, RuntimeDevice.CPU, version="0.0.9")
    venv_python(old).parent.mkdir(parents=True, exist_ok=True)
    venv_python(old).write_text("")
    write_info(old, RuntimeInfo("0.0.9", RuntimeDevice.CPU, "0" * 64, 1.0,
                                VerifyResult(ok=True)))
    return old


def test_install_cancelled_at_each_phase_is_continued_by_the_next(qtbot, world, monkeypatch):
    """Also an upgrade: the old version's runtime trains until the new one verifies, then it
    is removed."""
    from isengard_desktop.services.runtime import RuntimeService

    for key, value in world["env"].items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("ISENGARD_USE_RUNTIME", "1")
    paths = _paths(world)
    folder = runtime_folder(paths, RuntimeDevice.CPU)
    old = _old_runtime(paths)
    service = RuntimeService(paths)
    # (phase, words of the detail) where the user presses Cancel
    stops = [(InstallPhase.PREPARING, "checking the offline files"),
             (InstallPhase.PREPARING, "creating the Python environment"),
             (InstallPhase.INSTALLING, "starting"),
             (InstallPhase.INSTALLING, "Isengard Desktop's trainer"),
             (InstallPhase.VERIFYING, "loading PyTorch")]
    seen: list[tuple[str, str]] = []
    service.progress.connect(lambda p: seen.append((p.label, p.detail)))
    try:
        for phase, words in stops:
            def at_stop(progress, phase=phase, words=words) -> bool:
                if progress.label == phase.value and words in progress.detail:
                    service.cancel()
                return True

            service.progress.connect(at_stop)
            with qtbot.waitSignal(service.finished, timeout=300_000) as ended:
                service.install(RuntimeDevice.CPU, world["payload"])
            service.progress.disconnect(at_stop)
            status = ended.args[0]
            assert any(label == phase.value and words in d for label, d in seen), seen
            if words == "checking the offline files":
                # nothing was written yet: no new folder; the old version's is "outdated"
                assert status.state == RuntimeState.OUTDATED and not folder.exists()
                assert "0.0.9-cpu" in status.problem
                continue
            assert status.state == RuntimeState.INCOMPLETE, (words, status)
            assert "cancelled" in status.problem and read_marker(folder) is not None
            assert service.status(RuntimeDevice.CPU).state == RuntimeState.INCOMPLETE
            assert any(cache_dir(paths).iterdir())      # the downloads are kept
            assert trainer_python(paths).folder == old  # the old one still trains

        seen.clear()
        with qtbot.waitSignal(service.finished, timeout=300_000) as ended:
            service.install(RuntimeDevice.CPU, world["payload"])
        status = ended.args[0]
        assert status.state == RuntimeState.READY, status
        assert status.python == venv_python(folder) and read_marker(folder) is None
        info = read_info(folder)
        assert info is not None and info.verify.ok and info.verify.torch.startswith("2.13.0")
        assert info.lock_sha256 == lock_sha256(world["locks"] / "cpu.txt")
        labels = [label for label, _ in seen]
        assert labels[0] == "preparing" and labels[-1] == "verifying"
        assert not old.exists() and trainer_python(paths).folder == folder   # upgraded
        assert "installing" in labels
        # "package k of n" with the lock's real n
        counts = [d for label, d in seen if label == "installing" and d.startswith("package ")]
        assert counts and counts[-1].endswith(f"of {counts[-1].split()[-1]}")
        n = int(counts[-1].split()[-1])
        assert n == sum(1 for line in (world["locks"] / "cpu.txt").read_text().splitlines()
                        if line and line[0].isalpha() and "==" in line)
    finally:
        service.shutdown()


def test_failed_install_removes_the_half_venv_and_keeps_the_cache(world, tmp_path):
    """A payload whose wheel was damaged before its manifest was written (so the manifest
    check passes and only uv can catch it): the install fails naming the package, the half
    venv is removed, the marker keeps the error, uv's cache stays."""
    from isengard_desktop.core.runtime.manifest import read_manifest, write_manifest

    paths = _paths(world)
    folder = runtime_folder(paths, RuntimeDevice.CPU)
    remove_runtime(folder)
    old = _old_runtime(paths)                        # a failed upgrade keeps the old one
    bad = tmp_path / "bad-payload"
    shutil.copytree(world["payload"], bad, copy_function=os.link)
    wheel = next((bad / "wheels").glob("zipp-*.whl"))
    data = wheel.read_bytes()
    wheel.unlink()                                   # a new file, not the linked original
    wheel.write_bytes(data[:-100] + b"\0" * 100)
    manifest = read_manifest(world["payload"])
    write_manifest(bad, device="cpu", lock_name=manifest.lock, app_wheel=manifest.app_wheel)

    code, out, stderr = _cli(world, "install", "--offline", str(bad))
    assert code == 1 and out["state"] == "incomplete", stderr[-3000:]
    assert "Installing the trainer runtime's packages failed" in out["problem"]
    assert "zipp==" in out["problem"], out["problem"]
    assert not (folder / "venv").exists()
    marker = read_marker(folder)
    assert marker is not None and "zipp" in marker["error"]
    assert any(cache_dir(paths).iterdir())
    assert old.exists()
    remove_runtime(old)


def test_killed_install_is_finished_by_the_next_install(world):
    paths = _paths(world)
    folder = runtime_folder(paths, RuntimeDevice.CPU)
    remove_runtime(folder)                     # start over; uv's cache stays
    with subprocess.Popen([sys.executable, "-m", "isengard_desktop", "runtime", "install",
                           "--offline", str(world["payload"])], stderr=subprocess.PIPE,
                          stdout=subprocess.DEVNULL, text=True, env=_cli_env(world),
                          cwd=REPO) as proc:
        assert proc.stderr is not None
        try:
            for line in proc.stderr:
                if line.startswith("installing:"):
                    break
            proc.kill()                        # no clean-up at all: like a power cut
        finally:
            proc.wait(30)
    assert read_marker(folder) is not None
    code, out, _ = _cli(world, "status")
    assert code == 1 and out["state"] == "incomplete", out

    code, out, stderr = _cli(world, "install", "--offline", str(world["payload"]))
    assert code == 0 and out["state"] == "ready", stderr[-3000:]
    assert out["python"] == str(venv_python(folder)) and read_marker(folder) is None


def _record_ok(site: Path, rel: str, record: Path) -> bool:
    for line in record.read_text().splitlines():
        path, digest, _ = line.rsplit(",", 2)
        if path == rel:
            data = (site / rel).read_bytes()
            return digest == "sha256=" + base64.urlsafe_b64encode(
                hashlib.sha256(data).digest()).rstrip(b"=").decode()
    raise AssertionError(f"{rel} not in {record}")


def test_repair_reinstalls_only_the_damaged_packages(world):
    paths = _paths(world)
    folder = runtime_folder(paths, RuntimeDevice.CPU)
    if read_marker(folder) is not None or not venv_python(folder).exists():
        code, out, stderr = _cli(world, "install", "--offline", str(world["payload"]))
        assert code == 0, stderr[-3000:]
    site = next((folder / "venv" / "lib").glob("python3*/site-packages"))
    damaged = site / "peft" / "__init__.py"
    damaged.write_text("garbage\n")                     # same inode as uv's cache copy
    for gone in [site / "zipp", *site.glob("zipp-*.dist-info")]:
        shutil.rmtree(gone) if gone.is_dir() else gone.unlink()

    code, out, stderr = _cli(world, "repair")
    assert code == 0 and out["state"] == "ready", stderr[-3000:]
    assert "broken: peft (peft/__init__.py)" in stderr
    assert "broken: zipp (not installed)" in stderr
    changed = sorted(line.split()[1].split("==")[0] for line in stderr.splitlines()
                     if line.strip().startswith(("+ ", "~ ", "- ")))
    assert changed == ["peft", "zipp"], stderr[-3000:]
    record = next(site.glob("peft-*.dist-info")) / "RECORD"
    assert _record_ok(site, "peft/__init__.py", record)
    assert (site / "zipp").is_dir()


def test_selftest_trains_a_lora_through_the_runtime(world):
    paths = _paths(world)
    folder = runtime_folder(paths, RuntimeDevice.CPU)
    if read_marker(folder) is not None or not venv_python(folder).exists():
        code, out, stderr = _cli(world, "install", "--offline", str(world["payload"]))
        assert code == 0, stderr[-3000:]
    env = _cli_env(world, ISENGARD_USE_RUNTIME="1")
    done = subprocess.run([sys.executable, "-m", "isengard_desktop", "selftest", "--json",
                           "--steps", "6"], capture_output=True, text=True, env=env,
                          cwd=world["home"].parent, timeout=400)
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout
    out = json.loads(lines[-1])
    assert out["ok"] is True, out["checks"]
    checks = {c["name"]: c for c in out["checks"]}
    # the trainer's Python was the runtime's, not this checkout's
    assert str(venv_python(folder)) in checks["python"]["detail"]
    assert out["torch"].startswith("2.13.0") and out["steps"] == 6
    lora = Path(out["lora"])
    assert lora.is_file() and lora.suffix == ".safetensors" and lora.stat().st_size > 1000


def test_the_wizard_alone_installs_the_runtime_from_a_usb_folder(qtbot, world, tmp_path,
                                                                  monkeypatch):
    """Issue 12's path for a person with no network: the set-up assistant's "Install from a
    folder" with the real RuntimeService and the offline payload gives a runtime the trainer
    then uses (no stand-in for the service, uv or the payload)."""
    from PySide6.QtWidgets import QFileDialog

    from isengard_desktop.core.discovery import discover
    from isengard_desktop.services.runtime import RuntimeService
    from isengard_desktop.ui.wizard import FirstRunWizard
    from tests.helpers.wizard_fakes import SettingsStore, lock_for, machine

    monkeypatch.setenv("ISENGARD_RUNTIME_LOCKS", str(world["locks"]))
    monkeypatch.setenv("ISENGARD_USE_RUNTIME", "1")     # a checkout would use its own .venv
    paths = resolve_paths({"ISENGARD_HOME": str(tmp_path / "home")}).ensure()
    service = RuntimeService(paths)
    store = SettingsStore()
    home = tmp_path / "empty-home"
    home.mkdir()
    info = machine()                                     # no GPU: the CPU build
    wizard = FirstRunWizard(paths, store.get, store.update, service,
                            lambda: (info, lock_for(info)), lambda: trainer_python(paths),
                            lambda: discover(home, env={}, os_name="Linux"), None)
    qtbot.addWidget(wizard)
    wizard.show()
    wizard.go_to("runtime")
    page = wizard.runtime
    qtbot.waitUntil(lambda: page.state == "choose", timeout=10_000)
    assert trainer_python(paths).executable is None
    page.folder_choice.setChecked(True)
    monkeypatch.setattr(QFileDialog, "getExistingDirectory",
                        staticmethod(lambda *a, **k: str(world["payload"])))
    page.choose_folder()
    phases = []
    service.progress.connect(lambda p: phases.append(p.label))
    page.install()
    qtbot.waitUntil(lambda: page.state in ("ready", "failed"), timeout=300_000)
    assert page.state == "ready", page.problem.text()
    assert {"installing", "verifying"} <= set(phases)
    python = trainer_python(paths)
    assert python.executable is not None and python.executable.is_file()
    assert paths.data / "runtime" in python.executable.parents
    service.shutdown()
