"""A GenerationService on a test's ISENGARD_HOME, with its library and settings, for the
integration tests in ``tests/integration/test_generation_service.py`` (pytest-qt + the app's
qasync loop, as the ``qt_asyncio_loop`` fixture gives)."""

from __future__ import annotations

from dataclasses import replace

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

    def __init__(self, qtbot, runner) -> None:
        self.qtbot = qtbot
        self.runner = runner          # the qt_asyncio_loop fixture's value
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
            close_generation_service(self.qtbot, self.service, WAIT, self.runner)
        self.library.shutdown()
        self.settings.shutdown()


def request(**changes) -> GenerationRequest:
    values: dict = {"prompt": "a portrait in the rain", "negative": "blurry", "family": "sd15",
                    "model": SD15, "aspect": "1:1", "tier": "Draft", "seed": 1234, "batch": 1}
    values.update(changes)
    return GenerationRequest(**values)
