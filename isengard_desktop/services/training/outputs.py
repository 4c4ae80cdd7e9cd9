"""What a training job leaves for the user: its events, a debug bundle, its LoRA in the library.

:class:`JobOutputs` serves the training service, off the UI thread with results on the main
thread:

* :meth:`~JobOutputs.events`: ``events.jsonl`` parsed (history, chart reload) and
  :meth:`~JobOutputs.export_debug_bundle`: the redacted debug-bundle zip written, both on its
  own reader executor (two threads);
* :meth:`~JobOutputs.register_lora`: a completed job's LoRA hard-linked or copied into the
  app's LoRA folder (:func:`~..core.training.job_files.publish_lora`, on the service's file
  executor) and recorded for its character (``LibraryService.add_lora``);
* :meth:`~JobOutputs.checkpoint_grid` / :meth:`~JobOutputs.use_checkpoint`: the checkpoint
  comparison's grid (:mod:`~..core.training.checkpoint_grid`) and "Use this checkpoint": the
  step's LoRA placed beside the job's own as ``<name>-step<N>`` and registered like a
  finished job's, so it becomes the character's newest LoRA.

The service flushes a running job's process first, so what is read includes everything
received so far.
"""

from __future__ import annotations

from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any
from collections.abc import Callable

from loguru import logger

from ...core import logging as applog
from ...core.fsutil import link_or_copy
from ...core.paths import AppPaths
from ...core.dataset.captions import sample_prompt
from ...core.training.checkpoint_grid import COMPARE_EVENTS, CheckpointGrid, build_grid
from ...core.training.job_files import publish_lora, read_events, write_debug_bundle
from ...core.training.protocol import DoneEvent, Event
from ...core.training.spec import stopped_lora_name
from ..library import LibraryService
from ..ops import run_in_executor
from .records import JobRecord

__all__ = ["JobOutputs", "secret_values"]


def secret_values(secrets_env: Callable[[], dict[str, str]]) -> list[str]:
    """The non-empty secret values to mask (none when the keyring cannot be read)."""
    try:
        return [v for v in secrets_env().values() if v]
    except Exception as exc:
        logger.warning("secrets unavailable for redaction: {}", exc)
        return []


class JobOutputs:
    """A job's events, debug bundle and LoRA; callbacks run on the main thread."""

    def __init__(self, paths: AppPaths, library: LibraryService, files: Executor) -> None:
        self.paths = paths
        self.library = library
        self._files = files
        self._reader = ThreadPoolExecutor(2, thread_name_prefix="training-read")
        # Settings' "ComfyUI models folder": finished LoRAs are also placed in its loras/
        self.comfy_models_folder = ""
        self.pending = 0   # LoRAs being published, not yet handed to the library

    def events(self, record: JobRecord | None,
               on_loaded: Callable[[list[Event]], None]) -> None:
        """Every protocol event of the job's ``events.jsonl`` (no job: none)."""
        if record is None:
            on_loaded([])
            return
        path = record.paths.events
        run_in_executor(self._reader, lambda: read_events(path), on_loaded)

    def export_debug_bundle(self, job_id: str, record: JobRecord | None, dest: Path,
                            secrets_env: Callable[[], dict[str, str]], probe_torch: bool,
                            on_done: Callable[[Path], None],
                            on_failure: Callable[[BaseException], None] | None) -> None:
        """Zip spec, events, logs, configs, samples and environment (redacted) to ``dest``.
        No such job: KeyError, to ``on_failure`` when given, else raised."""
        if record is None:
            error = KeyError(f"There is no job {job_id}.")
            if on_failure:
                on_failure(error)
            else:
                raise error
            return
        secrets = list(secret_values(secrets_env))
        info: dict[str, Any] = {k: v for k, v in asdict(record).items() if k != "spec"}
        info["job_dir"] = str(record.job_dir)
        with applog.correlation():
            logger.info("exporting a debug bundle of job {}", job_id)
            run_in_executor(self._reader, lambda: write_debug_bundle(
                record.paths, Path(dest), info, secrets, probe_torch), on_done, on_failure)

    def register_lora(self, record: JobRecord, done: DoneEvent | None) -> None:
        """Publish a completed job's LoRA into the app's LoRA folder (what a managed ComfyUI
        lists through extra_model_paths) and record it for the job's character. When it
        cannot be linked or copied there, the job's own file is recorded."""
        if done is None or record.character_id is None:
            return
        if self.library.character(record.character_id) is None:
            logger.warning("job {}: character {} no longer exists; the LoRA stays in {}",
                           record.job_id, record.character_id, done.lora)
            return
        job_id, character_id, family, steps = (record.job_id, record.character_id,
                                               record.family, done.steps)
        source, loras = Path(done.lora), self.paths.loras

        def recorded() -> None:
            self.pending -= 1

        def register(path: Path) -> None:
            # pending drops when the library has the row (what "settled" waits for at quit)
            try:
                self.library.add_lora(character_id, str(path), family, steps,
                                      on_done=recorded)
            except RuntimeError as exc:   # the app is quitting; the file is already in place
                logger.warning("job {}: LoRA {} not recorded: {}", job_id, path, exc)
                recorded()

        def failed(exc: BaseException) -> None:
            logger.warning("job {}: LoRA not copied to {} ({}); using {}", job_id, loras, exc,
                           source)
            register(source)

        comfy_models = self.comfy_models_folder

        def publish() -> Path:
            published = publish_lora(loras, source, job_id)
            if comfy_models:   # the user's own ComfyUI lists <models>/loras (Settings → Folders)
                try:
                    if not Path(comfy_models).is_dir():
                        raise FileNotFoundError(f"{comfy_models} is not a folder")
                    target = Path(comfy_models) / "loras"
                    target.mkdir(exist_ok=True)
                    publish_lora(target, source, job_id)
                except OSError as exc:
                    logger.warning("job {}: LoRA not placed in the ComfyUI models folder: {}",
                                   job_id, exc)
            return published

        self.pending += 1
        run_in_executor(self._files, publish, register, failed)

    def checkpoint_grid(self, record: JobRecord | None,
                        on_loaded: Callable[[CheckpointGrid], None],
                        on_failure: Callable[[BaseException], None] | None = None) -> None:
        """The job's checkpoint grid from its events (no job: an empty grid)."""
        if record is None:
            on_loaded(CheckpointGrid(()))
            return
        path, extra = record.paths.events, record.paths.root / COMPARE_EVENTS
        trigger = record.spec.trigger_word
        prompts = [sample_prompt(p, trigger) for p in record.spec.sample_prompts if p.strip()]
        run_in_executor(self._reader,
                        lambda: build_grid(read_events(path) + read_events(extra),
                                           prompts=prompts),
                        on_loaded, on_failure)

    def use_checkpoint(self, record: JobRecord, step: int, lora: Path,
                       on_done: Callable[[Path], None],
                       on_failure: Callable[[BaseException], None]) -> None:
        """Make the LoRA ``lora`` of step ``step`` the character's: linked (or copied) into
        the job folder as ``<output name>-step<N>.safetensors`` (a file already there is
        used as it is), then published and recorded like a finished job's LoRA."""
        job_dir, name = Path(record.job_dir), record.spec.output_name

        def place() -> Path:
            source = Path(lora)
            if not source.is_file():
                raise FileNotFoundError(f"The LoRA of step {step} is gone: {source}")
            if source.parent == job_dir:
                return source
            target = job_dir / f"{stopped_lora_name(name, step)}.safetensors"
            if not target.is_file():
                link_or_copy(source, target)
            return target

        def placed(path: Path) -> None:
            self.register_lora(record, DoneEvent(str(path), step))
            on_done(path)

        run_in_executor(self._files, place, placed, on_failure)

    def shutdown(self) -> None:
        """App quit: pending reads are dropped, a running one is not waited for."""
        self._reader.shutdown(wait=False, cancel_futures=True)
