"""Supervision of the managed local ComfyUI with a fake ComfyUI process
(tests/helpers/fake_comfyui_main.py serving the ComfyUI double), real QProcess children."""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import shiboken6
import yaml

from isengard_desktop.core.comfy.jobs import GenerationRequest
from isengard_desktop.core.paths import resolve_paths
from isengard_desktop.services.generation.comfy_server import READY_MARKER, ComfyServer
from isengard_desktop.services.generation.service import GenerationService
from isengard_desktop.services.generation.servers import MANAGED_KEY
from isengard_desktop.services.ops import init_main_thread_bridge
from isengard_desktop.services.settings_service import SettingsService
from isengard_desktop.services.process_group import pid_alive
from tests.helpers.service_harness import close_generation_service, start_library

WAIT = 60_000
FAKE_MAIN = Path(__file__).resolve().parents[1] / "helpers" / "fake_comfyui_main.py"
SD15 = "sd15-base.safetensors"


@pytest.fixture
def comfy_folder(tmp_path) -> Path:
    folder = tmp_path / "ComfyUI"
    folder.mkdir()
    (folder / "main.py").write_text(
        f"import runpy\nrunpy.run_path({str(FAKE_MAIN)!r}, run_name='__main__')\n")
    return folder


@pytest.fixture
def qloop(qt_asyncio_loop):
    return qt_asyncio_loop


class Managed:
    """Library + settings + generation service whose settings point at the fake ComfyUI."""

    def __init__(self, qtbot, folder: Path, runner) -> None:
        self.qtbot = qtbot
        self.runner = runner          # the qt_asyncio_loop fixture's value
        self.paths, self.library = start_library(qtbot, WAIT)
        self.settings = SettingsService(self.paths)
        self.settings.settings = replace(self.settings.settings, comfyui_folder=str(folder),
                                         comfyui_python=sys.executable)
        self.service = GenerationService(self.paths, self.settings, self.library)
        self.server: ComfyServer = self.service.pool.managed
        self.server.restart_delays = (0.3, 0.6)
        self.server.stop_grace_s = 5.0
        self.server.probe_interval_s = 0.1
        self.states: list[tuple[str, str]] = []
        self.server.state_changed.connect(lambda s, m: self.states.append((s, m)))
        self.closed = False

    def start(self) -> None:
        self.service.start()

    def status(self):
        return next(s for s in self.service.servers() if s.key == MANAGED_KEY)

    def wait_state(self, state: str, timeout: int = WAIT) -> None:
        self.qtbot.waitUntil(lambda: self.server.state == state, timeout=timeout)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            close_generation_service(self.qtbot, self.service, WAIT, self.runner)
        self.library.shutdown()
        self.settings.shutdown()


@pytest.fixture
def managed(qtbot, qloop, comfy_folder, monkeypatch):
    for name in ("FAKE_COMFY_CRASH_AFTER", "FAKE_COMFY_FAIL_START", "FAKE_COMFY_SPAWN_CHILD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FAKE_COMFY_MODELS", f'{{"checkpoints": ["{SD15}"]}}')
    m = Managed(qtbot, comfy_folder, qloop)
    yield m
    m.close()


def test_ready_lists_our_loras_and_runs_a_job(managed):
    (managed.paths.loras / "bob.safetensors").write_bytes(b"x")
    managed.start()
    assert managed.status().kind == "managed"
    managed.wait_state("ready")
    managed.qtbot.waitUntil(lambda: managed.status().state == "ready", timeout=WAIT)
    status = managed.status()
    assert status.url.startswith("http://127.0.0.1:") and status.label
    local = managed.service.pool.get(MANAGED_KEY)
    assert "bob.safetensors" in local.models["loras"]
    assert SD15 in managed.service.model_choices("sd15")
    # the YAML names our LoRA folder; the log holds ComfyUI's output
    config = yaml.safe_load(managed.server.config_path.read_text())
    assert config["isengard"]["loras"] == str(managed.paths.loras)
    log = managed.server.log_path
    assert log == managed.paths.logs / "comfyui" / "local.log"
    managed.qtbot.waitUntil(lambda: READY_MARKER in log.read_text(), timeout=WAIT)
    assert [s for s, _ in managed.states][:2] == ["starting", "starting"]
    # a LoRA trained later shows up: the library's change triggers a refresh
    made: list = []
    managed.library.create_character("Bob", "bxb", on_created=made.append)
    managed.qtbot.waitUntil(lambda: bool(made), timeout=WAIT)
    (managed.paths.loras / "carol.safetensors").write_bytes(b"x")
    managed.library.add_lora(made[0].id, str(managed.paths.loras / "carol.safetensors"),
                             "sd15", 10)
    managed.qtbot.waitUntil(lambda: "carol.safetensors" in local.models["loras"], timeout=WAIT)
    # and a job runs on it
    results: list = []
    managed.service.job_finished.connect(lambda j, items: results.append(items))
    managed.service.job_failed.connect(lambda j, m: results.append(m))
    managed.service.submit(GenerationRequest("a cat", family="sd15", model=SD15, tier="Draft"))
    managed.qtbot.waitUntil(lambda: bool(results), timeout=WAIT)
    assert not isinstance(results[0], str), results[0]
    assert results[0][0].server == status.url


def test_crash_after_healthy_restarts_with_backoff(managed, monkeypatch):
    monkeypatch.setenv("FAKE_COMFY_CRASH_AFTER", "1.0")
    managed.start()
    managed.wait_state("ready")
    first_pid = managed.server.pid
    managed.qtbot.waitUntil(lambda: any(s == "starting" and "restarting in" in m
                                        for s, m in managed.states), timeout=WAIT)
    restart = next(m for s, m in managed.states if s == "starting" and "restarting in" in m)
    assert "exited with code 1" in restart and "illegal memory access" in restart
    managed.qtbot.waitUntil(lambda: managed.server.state == "ready"
                            and managed.server.pid not in (None, first_pid), timeout=WAIT)
    assert [s for s, _ in managed.states].count("ready") >= 2
    assert not pid_alive(first_pid)
    # it crashes again: the next delay is longer (backoff)
    managed.qtbot.waitUntil(lambda: any("restarting in 0.6 s" in m for _, m in managed.states),
                            timeout=WAIT)
    assert "restarting in 0.3 s" in restart


def test_fail_at_start_stays_in_error_without_restart_loop(managed, monkeypatch):
    monkeypatch.setenv("FAKE_COMFY_FAIL_START", "1")
    managed.start()
    managed.wait_state("error")
    message = managed.server.message
    assert "exited with code 1 before it was ready" in message
    assert "No module named 'torch'" in message and str(managed.server.log_path) in message
    managed.qtbot.wait(1500)
    assert managed.server.state == "error" and managed.server.pid is None
    assert [s for s, _ in managed.states].count("error") == 1
    assert managed.status().state == "error" and "torch" in managed.status().message


def test_app_quit_ends_the_whole_process_tree(managed, tmp_path, monkeypatch):
    pidfile = tmp_path / "grandchild.pid"
    monkeypatch.setenv("FAKE_COMFY_SPAWN_CHILD", str(pidfile))
    managed.start()
    managed.wait_state("ready")
    leader = managed.server.pid
    managed.qtbot.waitUntil(lambda: pidfile.exists() and pidfile.read_text().strip() != "",
                            timeout=WAIT)
    grandchild = int(pidfile.read_text())
    assert pid_alive(leader) and pid_alive(grandchild)
    started = time.monotonic()
    managed.service.shutdown()               # what app quit calls (blocks briefly)
    assert time.monotonic() - started < 10
    deadline = time.monotonic() + 5
    while (pid_alive(leader) or pid_alive(grandchild)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(leader)
    assert not pid_alive(grandchild)
    assert managed.server.state == "stopped"


@pytest.mark.parametrize("case", ["no-folder", "no-main", "no-python", "not-executable"])
def test_unusable_folder_or_python_is_named(qtbot, qloop, tmp_path, case):
    paths = resolve_paths().ensure()
    init_main_thread_bridge()
    folder = tmp_path / "ComfyUI"
    python = sys.executable
    if case != "no-folder":
        folder.mkdir()
    if case in ("no-python", "not-executable"):
        (folder / "main.py").write_text("print('hi')\n")
    if case == "no-python":
        python = str(tmp_path / "missing" / "python")
    if case == "not-executable":
        python = str(tmp_path / "python.txt")
        Path(python).write_text("not a program")
    server = ComfyServer(paths)
    server.configure(str(folder), python)
    server.start()
    qtbot.waitUntil(lambda: server.state == "error", timeout=WAIT)
    expected = {"no-folder": f"The ComfyUI folder {folder} does not exist",
                "no-main": "has no main.py",
                "no-python": "does not exist. Choose the Python",
                "not-executable": "is not a Python program that can be run"}[case]
    assert expected in server.message and "Settings → ComfyUI" in server.message
    assert server.pid is None
    server.shutdown()
    shiboken6.delete(server)


def test_log_is_size_capped_and_rotated(tmp_path):
    from isengard_desktop.services.generation.comfy_launch import RotatingLog

    log = RotatingLog(tmp_path / "logs" / "local.log", max_bytes=1000, backups=2)
    for i in range(100):
        log.write(f"line {i:03d} " + "x" * 40 + "\n")
    log.close()
    files = sorted(p.name for p in (tmp_path / "logs").iterdir())
    assert files == ["local.log", "local.log.1", "local.log.2"]
    assert all((tmp_path / "logs" / f).stat().st_size <= 1000 for f in files)
    assert "line 099" in (tmp_path / "logs" / "local.log").read_text()
