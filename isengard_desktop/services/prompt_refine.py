"""Local prompt refinement on the app's loop (:class:`PromptRefineService`).

Runs :mod:`isengard_desktop.core.prompt_refine`'s three stages against the Ollama server of the
settings (``ollama_url``, ``ollama_model``) in a :class:`~.tasks.TaskOwner` task; nothing here
blocks the UI thread, and nothing contacts the network until :meth:`check` or :meth:`start`.

Signals:
* ``availability(bool, str)``: after :meth:`check`: whether ``/api/tags`` answered, and the
  message (the models installed, or why not);
* ``chunk(str, str)``: (stage, text) as the LLM streams it;
* ``retrying(str)``: the structure stage's first answer was unusable (the error), retrying;
* ``stage_done(str, str)``: (stage, its result: text, the concept as JSON, the prompt);
* ``failed(str)``: a clear message (Ollama down, model missing, unusable answers);
* ``finished(bool)``: the run ended (True: all asked stages done; False: failed or cancelled).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from loguru import logger
from PySide6.QtCore import QObject, Signal

from ..core.ollama import OllamaClient, OllamaError
from ..core.prompt_refine import STAGES, RefineError, expand, final_prompt, structure, \
    validate_concept
from ..core.settings import Settings
from .tasks import NoRunningLoop, OwnerClosed, TaskOwner, cancel_once

__all__ = ["PromptRefineService"]


class PromptRefineService(QObject):
    availability = Signal(bool, str)
    chunk = Signal(str, str)
    retrying = Signal(str)
    stage_done = Signal(str, str)
    failed = Signal(str)
    finished = Signal(bool)

    def __init__(self, settings: Callable[[], Settings], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._settings = settings
        self._owner = TaskOwner("prompt refinement")
        self._run: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._run is not None and not self._run.done()

    # -- detection ---------------------------------------------------------------------------
    def check(self) -> None:
        """Ask ``/api/tags`` (off the UI thread); answers through ``availability``. Where no
        asyncio loop runs (a widget shown in a test without the app's loop) it answers
        "not checked" at once."""
        try:
            self._owner.spawn(self._check(), name="Ollama check")
        except (NoRunningLoop, OwnerClosed) as exc:
            logger.debug("Ollama not checked: {}", exc)
            self.availability.emit(False, "Not checked: the app's event loop is not running.")

    async def _check(self) -> None:
        s = self._settings()
        # (an httpx client takes 40-70 ms to build, its TLS context: not on the UI thread)
        client = await asyncio.to_thread(OllamaClient, s.ollama_url, timeout=5.0,
                                         connect_timeout=2.0)
        try:
            models = await client.tags()
        except OllamaError as exc:
            self.availability.emit(False, str(exc))
            return
        finally:
            await client.aclose()
        installed = {m.removesuffix(":latest") for m in models} | set(models)
        if s.ollama_model in installed:
            self.availability.emit(True, f"Ollama at {s.ollama_url}, model {s.ollama_model}.")
        else:
            self.availability.emit(True, (
                f"Ollama at {s.ollama_url} has no model {s.ollama_model} (installed: "
                f"{', '.join(models) or 'none'}): run `ollama pull {s.ollama_model}` or pick "
                "another in Settings → ComfyUI."))

    # -- a run -------------------------------------------------------------------------------
    def start(self, idea: str, *, family: str, trigger: str = "", first: str = "expand",
              inputs: Mapping[str, str] | None = None) -> None:
        """Run the stages from ``first`` on (``inputs``: the earlier stages' edited results,
        by stage name). A run still going is cancelled first."""
        if first not in STAGES:
            raise ValueError(f"unknown stage {first!r} (known: {', '.join(STAGES)})")
        self.cancel()
        self._run = self._owner.spawn(
            self._stages(idea, family, trigger, STAGES[STAGES.index(first):], dict(inputs or {})),
            name="prompt refinement")

    def cancel(self) -> None:
        if self._run is not None:
            cancel_once(self._run)

    async def _stages(self, idea: str, family: str, trigger: str, stages: Sequence[str],
                      inputs: dict[str, str]) -> None:
        s = self._settings()
        ok = False
        try:
            client = await asyncio.to_thread(OllamaClient, s.ollama_url)
        except asyncio.CancelledError:
            self.finished.emit(False)
            raise

        def chat(messages: Sequence[Mapping[str, str]], *,
                 format: str | Mapping[str, Any] | None = None) -> Any:
            return client.chat(s.ollama_model, messages, format=format)

        def emitter(stage: str) -> Callable[[str], None]:
            return lambda text: self.chunk.emit(stage, text)

        try:
            for stage in stages:
                if stage == "expand":
                    result = await expand(chat, idea, trigger=trigger, emit=emitter(stage))
                elif stage == "structure":
                    concept = await structure(chat, inputs.get("expand", idea), trigger=trigger,
                                              emit=emitter(stage),
                                              on_retry=self.retrying.emit)
                    result = json.dumps(concept, indent=2, ensure_ascii=False)
                else:
                    try:
                        concept = validate_concept(inputs.get("structure", ""))
                    except ValueError as exc:
                        raise RefineError(f"The concept fields cannot be read: {exc}.") from None
                    result = await final_prompt(chat, concept, family=family, trigger=trigger,
                                                emit=emitter(stage))
                inputs[stage] = result
                self.stage_done.emit(stage, result)
            ok = True
        except (OllamaError, RefineError) as exc:
            self.failed.emit(str(exc))
        finally:
            try:
                await client.aclose()
            finally:
                self.finished.emit(ok)

    async def aclose(self) -> None:
        await self._owner.aclose()
