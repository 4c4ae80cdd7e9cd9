"""One managed ComfyUI per GPU, with the fake ComfyUI (tests/helpers/fake_comfyui_main.py)
started as several real processes on a simulated machine (``FAKE_COMFY_GPUS``): each sees
only the card named by its ``CUDA_VISIBLE_DEVICES`` / ``HIP_VISIBLE_DEVICES``, as torch does,
and reports it in /system_stats — which is what these tests check."""

from __future__ import annotations

import json
import os
import signal
import sys
from dataclasses import replace

import pytest

from isengard_desktop.core.comfy.jobs import GenerationRequest
from isengard_desktop.core.hardware.machine import GpuInfo, GpuVendor
from isengard_desktop.services.generation.service import GenerationService
from isengard_desktop.services.settings_service import SettingsService
from tests.helpers.service_harness import close_generation_service, start_library
from tests.integration.test_comfy_supervision import FAKE_MAIN, SD15, WAIT

GIB = 1024 ** 3
CARDS = [("NVIDIA GeForce RTX 4090", 24), ("NVIDIA GeForce RTX 3060", 12),
         ("NVIDIA GeForce GTX 1070", 8)]


@pytest.fixture
def qloop(qt_asyncio_loop):
    return qt_asyncio_loop


@pytest.fixture
def comfy_folder(tmp_path):
    folder = tmp_path / "ComfyUI"
    folder.mkdir()
    (folder / "main.py").write_text(
        f"import runpy\nrunpy.run_path({str(FAKE_MAIN)!r}, run_name='__main__')\n")
    return folder


class Machine:
    """Library + settings + generation service on a simulated machine with ``cards``."""

    def __init__(self, qtbot, runner, folder, monkeypatch, cards, vendor=GpuVendor.NVIDIA,
                 tiers=None) -> None:
        for name in ("FAKE_COMFY_CRASH_AFTER", "FAKE_COMFY_FAIL_START", "CUDA_VISIBLE_DEVICES",
                     "HIP_VISIBLE_DEVICES"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("FAKE_COMFY_MODELS", json.dumps({"checkpoints": [SD15]}))
        monkeypatch.setenv("FAKE_COMFY_GPUS", json.dumps(
            [{"name": n, "vram": gb * GIB, "vendor": str(vendor)} for n, gb in cards]))
        self.qtbot, self.runner = qtbot, runner
        self.paths, self.library = start_library(qtbot, WAIT)
        self.settings = SettingsService(self.paths)
        self.settings.settings = replace(self.settings.settings, comfyui_folder=str(folder),
                                         comfyui_python=sys.executable,
                                         server_tiers=dict(tiers or {}))
        self.service = GenerationService(self.paths, self.settings, self.library)
        self.service.pool.poll_interval_s = 0.2
        self.service.set_gpus([GpuInfo(vendor, n, vram_mb=gb * 1024, index=i)
                               for i, (n, gb) in enumerate(cards)])
        for sup in self.service.pool.supervisors.values():
            sup.restart_delays = (0.3, 0.6)
            sup.probe_interval_s = 0.1

    def start(self, count: int) -> None:
        self.service.start()
        pool = self.service.pool
        for sup in pool.supervisors.values():
            sup.restart_delays = (0.3, 0.6)
            sup.probe_interval_s = 0.1
        self.qtbot.waitUntil(lambda: len(pool.healthy()) == count
                             and all(s.gpu_name for s in pool.healthy()), timeout=WAIT)

    def status(self, key: str):
        return next(s for s in self.service.servers() if s.key == key)

    def close(self) -> None:
        close_generation_service(self.qtbot, self.service, WAIT, self.runner)
        self.library.shutdown()
        self.settings.shutdown()


def test_one_managed_comfyui_per_gpu_each_pinned_to_its_card(qtbot, qloop, comfy_folder,
                                                           monkeypatch):
    m = Machine(qtbot, qloop, comfy_folder, monkeypatch, CARDS)
    try:
        m.start(3)
        pool = m.service.pool
        assert [s.key for s in m.service.servers()] == ["gpu0", "gpu1", "gpu2"]
        for index, (name, _gb) in enumerate(CARDS):
            status = m.status(f"gpu{index}")
            # the process saw only its own card, renumbered cuda:0 (from /system_stats)
            assert status.gpu_name == f"cuda:0 {name} : cudaMallocAsync", status
            assert status.vram_total == CARDS[index][1] * GIB
            assert status.kind == "managed" and f"GPU {index}" in status.label
            assert pool.supervisors[f"gpu{index}"].extra_env == {
                "CUDA_VISIBLE_DEVICES": str(index)}
            log = m.paths.logs / "comfyui" / f"gpu{index}.log"
            qtbot.waitUntil(lambda log=log, name=name: log.exists()
                            and f"Device: cuda:0 {name}" in log.read_text(), timeout=WAIT)
        assert m.service.log_path("gpu1") == str(m.paths.logs / "comfyui" / "gpu1.log")
        assert m.service.local_log_path == m.service.log_path("gpu0")
        # own ports; every one reads the same models folder (the same YAML content)
        urls = {m.status(f"gpu{i}").url for i in range(3)}
        assert len(urls) == 3
        yamls = {pool.supervisors[f"gpu{i}"].config_path.read_text() for i in range(3)}
        assert len(yamls) == 1 and str(m.paths.loras) in yamls.pop()
        # default tiers from the cards: most VRAM final, >= half standard, smaller draft
        assert [m.status(f"gpu{i}").tier for i in range(3)] == ["final", "standard", "draft"]
        done: list = []
        m.service.job_finished.connect(lambda j, items: done.append(items))
        m.service.job_failed.connect(lambda j, msg: done.append(msg))
        m.service.submit(GenerationRequest("a cat", family="sd15", model=SD15, tier="Draft",
                                           batch=2, seed=7))
        qtbot.waitUntil(lambda: bool(done), timeout=WAIT)
        assert not isinstance(done[0], str), done[0]
        assert {i.server for i in done[0]} == {m.status("gpu2").url}
        # one card's ComfyUI dies: only that one is restarted, by its own supervisor
        pids = {k: s.pid for k, s in pool.supervisors.items() if k.startswith("gpu")}
        os.kill(pids["gpu1"], signal.SIGKILL)
        qtbot.waitUntil(lambda: pool.supervisors["gpu1"].state == "ready"
                        and pool.supervisors["gpu1"].pid not in (None, pids["gpu1"]),
                        timeout=WAIT)
        assert pool.supervisors["gpu0"].pid == pids["gpu0"]
        assert pool.supervisors["gpu2"].pid == pids["gpu2"]
        qtbot.waitUntil(lambda: m.status("gpu1").healthy, timeout=WAIT)
        assert m.status("gpu1").gpu_name.startswith(f"cuda:0 {CARDS[1][0]}")
    finally:
        m.close()


def test_amd_cards_are_pinned_with_hip_and_settings_tiers_win(qtbot, qloop, comfy_folder,
                                                            monkeypatch):
    cards = [("AMD Radeon RX 7900 XTX", 24), ("AMD Radeon RX 7600", 8)]
    m = Machine(qtbot, qloop, comfy_folder, monkeypatch, cards, vendor=GpuVendor.AMD,
                tiers={"gpu0": "draft"})
    try:
        m.start(2)
        for index, (name, _gb) in enumerate(cards):
            assert m.status(f"gpu{index}").gpu_name.startswith(f"cuda:0 {name}")
            assert m.service.pool.supervisors[f"gpu{index}"].extra_env == {
                "HIP_VISIBLE_DEVICES": str(index)}
        assert [m.status(f"gpu{i}").tier for i in range(2)] == ["draft", "draft"]
    finally:
        m.close()


def test_one_gpu_keeps_the_single_managed_server(qtbot, qloop, comfy_folder, monkeypatch):
    m = Machine(qtbot, qloop, comfy_folder, monkeypatch, CARDS[:1])
    try:
        m.start(1)
        status = m.status("local")
        assert status.tier == "final" and m.service.pool.managed.extra_env == {}
        assert status.gpu_name.startswith(f"cuda:0 {CARDS[0][0]}")
    finally:
        m.close()


def test_a_cards_comfyui_dying_mid_batch_moves_its_pictures(qtbot, qloop, comfy_folder,
                                                           monkeypatch):
    monkeypatch.setenv("FAKE_COMFY_IMAGE_DELAY", "0.6")
    m = Machine(qtbot, qloop, comfy_folder, monkeypatch, CARDS,
                tiers={"gpu1": "draft", "gpu2": "draft"})
    try:
        m.start(3)
        pool = m.service.pool
        notices: list = []
        done: list = []
        m.service.job_notice.connect(lambda j, text: notices.append(text))
        m.service.job_finished.connect(lambda j, items: done.append(items))
        m.service.job_failed.connect(lambda j, msg: done.append(msg))
        job = m.service.submit(GenerationRequest("a cat", family="sd15", model=SD15,
                                                 tier="Draft", batch=4, seed=100))
        qtbot.waitUntil(lambda: any(k == "gpu1" for _i, k in m.service.job_assignments(job)),
                        timeout=WAIT)
        pid = pool.supervisors["gpu1"].pid
        os.kill(pid, signal.SIGKILL)
        qtbot.waitUntil(lambda: bool(done), timeout=WAIT)
        items = done[0]
        assert not isinstance(items, str), items
        assert [i.seed for i in items] == [100, 101, 102, 103]
        gpu2 = m.status("gpu2").url
        assert all(i.server == gpu2 for i in items)          # the final card was not used
        moved = [n for n in notices if "goes to another server" in n]
        assert moved and "GPU 1" in moved[0]
        # its supervisor brings it back
        qtbot.waitUntil(lambda: pool.supervisors["gpu1"].state == "ready"
                        and pool.supervisors["gpu1"].pid != pid, timeout=WAIT)
    finally:
        m.close()
