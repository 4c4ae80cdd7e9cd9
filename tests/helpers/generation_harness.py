"""A GenerationService on a test's ISENGARD_HOME, with its library and settings, for the
integration tests in ``tests/integration/test_generation_service.py`` (pytest-qt + a qasync
loop marked running, as the ``qt_asyncio_loop`` fixture or :func:`own_qasync_loop` gives)."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import shiboken6

from isengard_desktop.core.comfy.jobs import GenerationRequest, LoraChoice
from isengard_desktop.services.generation.service import GenerationService
from isengard_desktop.services.settings_service import SettingsService
from tests.helpers.characters import add_character
from tests.helpers.service_harness import (
    close_generation_service,
    start_library,
)

WAIT = 30_000
SD15 = "sd15-base.safetensors"
OTHER = "other-sd15.safetensors"
LORA = "alice-ohwx.safetensors"


class Harness:
    """Library + settings + generation service on this test's ISENGARD_HOME."""

    def __init__(self, qtbot, loop) -> None:
        self.qtbot = qtbot
        self.loop = loop
        self.paths, self.library = start_library(qtbot, WAIT)
        self.character = add_character(qtbot, self.library, "Alice", trigger="ohwx", timeout=WAIT)
        self.settings = SettingsService(self.paths)
        self.service: GenerationService | None = None
        self.events: list[tuple] = []

    def start(self, urls: list[str], poll_interval: float = 0.2) -> GenerationService:
        self.settings.settings = replace(self.settings.settings, remote_servers=list(urls))
        service = GenerationService(self.paths, self.settings, self.library)
        pool = service.pool
        pool.poll_interval_s = poll_interval
        pool.poll_timeout_s = 2.0
        pool.client_timeout_s = 5.0
        pool.client_liveness_s = 0.5
        pool.client_reconnect_delays = (0.05, 0.1)
        service.job_started.connect(lambda j: self.events.append(("started", j)))
        service.job_progress.connect(lambda p: self.events.append(("progress", p)))
        service.job_finished.connect(lambda j, items: self.events.append(("finished", j, items)))
        service.job_failed.connect(lambda j, m: self.events.append(("failed", j, m)))
        service.start()
        self.service = service
        self.qtbot.waitUntil(lambda: service.is_ready, timeout=WAIT)
        self.qtbot.waitUntil(lambda: len(service.pool.healthy()) == len(urls), timeout=WAIT)
        return service

    def outcome(self, job_id: str, timeout: int = WAIT) -> tuple:
        def ended() -> bool:
            return any(e[0] in ("finished", "failed") and e[1] == job_id for e in self.events)

        self.qtbot.waitUntil(ended, timeout=timeout)
        return next(e for e in self.events if e[0] in ("finished", "failed") and e[1] == job_id)

    def progress(self, job_id: str) -> list:
        return [e[1] for e in self.events if e[0] == "progress" and e[1].job_id == job_id]

    def lora(self, strength: float = 0.8) -> LoraChoice:
        path = self.paths.loras / LORA
        path.write_bytes(b"not really a lora")
        return LoraChoice(self.character.id, str(path), strength, "ohwx")

    def close(self) -> None:
        if self.service is not None:
            close_generation_service(self.qtbot, self.service, WAIT)
        self.library.shutdown()
        self.settings.shutdown()


def request(**changes) -> GenerationRequest:
    values: dict = {"prompt": "a portrait in the rain", "negative": "blurry", "family": "sd15",
                    "model": SD15, "aspect": "1:1", "tier": "Draft", "seed": 1234, "batch": 1}
    values.update(changes)
    return GenerationRequest(**values)


class OwnQasyncLoop:
    """A qasync loop marked running, like the ``qt_asyncio_loop`` fixture, that a test can
    stop (:meth:`stop`: not running any more) and close (:meth:`close`) itself, e.g. to see
    what a service does when the app's loop has ended before its shutdown."""

    def __init__(self, qapp) -> None:
        import qasync

        self.qapp = qapp
        self.loop = qasync.QEventLoop(qapp)
        asyncio.set_event_loop(self.loop)
        asyncio.events._set_running_loop(self.loop)

    def stop(self) -> None:
        """Cancel what runs on it (as the fixture's teardown does), then mark it stopped."""
        if asyncio.events._get_running_loop() is not self.loop:
            return
        pending = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
        for task in pending:
            task.cancel()
        for _ in range(200):
            if all(t.done() for t in pending):
                break
            self.qapp.processEvents()
        asyncio.events._set_running_loop(None)

    def close(self) -> None:
        self.stop()
        if not self.loop.is_closed():
            self.loop.close()
        asyncio.set_event_loop(None)
        timer = getattr(self.loop, "_timer", None)
        if timer is not None and shiboken6.isValid(timer):
            shiboken6.delete(timer)
