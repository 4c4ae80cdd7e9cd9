"""The checkpoint comparison's "fill the gaps" through ComfyUI (issue 16, item 4).

:class:`CheckpointFiller` is what the Training tab asks (the app gives it the generation
service): which ready server lists a job's base model (:meth:`~CheckpointFiller.server_for`)
and a run for a grid's missing cells (:meth:`~CheckpointFiller.fill`).

:class:`ComfyCheckpointFill` is one run. Each checkpoint LoRA is linked (or copied) into the
app's LoRA folder under ``compare/`` with a unique name
(:func:`~...core.training.fill_cells.staged_lora_name`) — the folder every managed or linked
ComfyUI lists, and Settings' ComfyUI models folder too — and the servers' lists are re-read.
Then each missing cell is one ordinary generation job (``target="compare"``): the family's
txt2img LoRA workflow, the cell's prompt (``[trigger]`` replaced by the trigger word, as the
trainers do) and seed, the job's sample size, and the steps, CFG/guidance, sampler and
scheduler the job's trainer samples with
(:func:`~...core.training.fill_cells.trainer_sampling`; the Standard preset's where they are
unknown), the step's LoRA at strength 1.0. The generation service routes it and pushes the LoRA
to a remote server with our upload node exactly as for Generate. The picture is written where
the grid reads it (``samples/step<N:06d>_<column>.png``, with the generation's PNG metadata)
and its ``sample`` event appended to ``compare_events.jsonl`` as soon as it is there, so a
cancel keeps every finished picture. One job at a time, in row order.

Signals (of :class:`ComfyCheckpointFill`, as the trainer's ``SampleRender``):
    progressed(int done, int total): pictures made so far of ``total``.
    finished(bool ok, str message): once; ``message`` says why when not ok.
"""

from __future__ import annotations

import asyncio
import os
from functools import partial
from pathlib import Path
from typing import Any

from loguru import logger
from PySide6.QtCore import QObject, Signal

from ...core.comfy.jobs import GenerationRequest, LoraChoice
from ...core.dataset.captions import sample_prompt
from ...core.fsutil import link_or_copy
from ...core.training.checkpoint_grid import COMPARE_EVENTS, CheckpointGrid
from ...core.training.fill_cells import (FillCell, compare_lines, missing_cells,
                                         staged_lora_name, trainer_sampling)
from ...core.training.spec import TrainingJob
from ..tasks import TaskOwner

__all__ = ["STAGED_FOLDER", "CheckpointFiller", "ComfyCheckpointFill"]

STAGED_FOLDER = "compare"        # under the app's LoRA folder
CANCELLED_TEXT = "Stopped: the pictures made so far are kept."


class _Failed(Exception):
    """The run cannot go on; ``str(e)`` is the message for the user."""


class CheckpointFiller:
    """Routes "fill the gaps" to ComfyUI. ``generation``: the app's GenerationService."""

    def __init__(self, generation: Any) -> None:
        self.generation = generation
        self.runs: list[ComfyCheckpointFill] = []

    @property
    def servers_changed(self) -> Any:
        """The generation service's ``servers_changed`` signal (every server update: state,
        queue, VRAM, model lists), after which :meth:`server_for` may answer differently; a
        listener compares the answer (it is read from memory) and acts only on a change."""
        return self.generation.servers_changed

    def server_for(self, spec: TrainingJob) -> str | None:
        """The label of a ready server that lists the job's base model (None: none)."""
        found = self.generation.base_model_server(spec.family, spec.base_model)
        return found[0] if found is not None else None

    def fill(self, job_dir: Path, spec: TrainingJob, grid: CheckpointGrid
             ) -> ComfyCheckpointFill:
        """A run for ``grid``'s missing cells (the caller connects and starts it)."""
        cells = missing_cells(grid, int(spec.seed), Path(job_dir) / "samples")
        run = ComfyCheckpointFill(self.generation, Path(job_dir), spec, cells)
        self.runs.append(run)
        run.finished.connect(lambda _ok, _msg: self.runs.remove(run)
                             if run in self.runs else None)
        return run

    def shutdown(self) -> None:
        """App quit: cancel the runs (what they made is kept)."""
        for run in list(self.runs):
            run.stop_and_wait()


class ComfyCheckpointFill(QObject):
    """One "fill the gaps" run through ComfyUI; see the module docstring."""

    progressed = Signal(int, int)
    finished = Signal(bool, str)

    def __init__(self, generation: Any, job_dir: Path, spec: TrainingJob,
                 cells: list[FillCell], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.generation = generation
        self.job_dir = Path(job_dir)
        self.spec = spec
        self.cells = list(cells)
        self.total = len(self.cells)
        self.done = 0
        self._current = ""
        self._waiter: asyncio.Future[tuple[bool, str]] | None = None
        self._cancelled = False
        self._ended = False
        self._tasks = TaskOwner("checkpoint fill")
        generation.job_finished.connect(self._on_job_finished)
        generation.job_failed.connect(self._on_job_failed)

    @property
    def is_running(self) -> bool:
        """Whether the run's task is still going (also after a quiet stop, until it ended)."""
        return bool(self._tasks.tasks())

    # -- control -------------------------------------------------------------------------
    def start(self) -> None:
        self._tasks.spawn(self._run(), name=f"fill the gaps of {self.spec.job_id}")

    def cancel(self) -> None:
        """Stop after the picture being made (it is dropped); the finished ones stay."""
        if self._ended or self._cancelled:
            return
        self._cancelled = True
        if self._current:
            self.generation.cancel(self._current)
        elif self._waiter is None:
            self._tasks.cancel_all()

    def stop_and_wait(self) -> None:
        """App quit: cancel the job being made and end quietly (never blocks, emits nothing:
        the widgets are going away; the generation service ends its jobs itself)."""
        if self._ended:
            return
        self.cancel()
        self._ended = True
        self._disconnect()
        self._tasks.cancel_all(close=True)

    # -- the run -------------------------------------------------------------------------
    async def _run(self) -> None:
        try:
            if not self.cells:
                self._end(True, "")
                return
            loras = await asyncio.get_running_loop().run_in_executor(None, self._stage)
            await self.generation.pool.refresh()        # so the servers list the LoRAs
            found = self.generation.base_model_server(self.spec.family, self.spec.base_model)
            if found is None:
                raise _Failed(f"No ready ComfyUI lists {Path(self.spec.base_model).name} "
                              "any more; the missing pictures were not made.")
            model = found[1]
            for cell in self.cells:
                if self._cancelled:
                    break
                ok, message = await self._one(cell, model, loras[cell.step])
                if not ok:
                    if self._cancelled:
                        break
                    raise _Failed(f"The picture of step {cell.step} ({cell.prompt!r}) could "
                                  f"not be made: {message}")
                await asyncio.get_running_loop().run_in_executor(
                    None, partial(self._record, cell))
                self.done += 1
                self.progressed.emit(self.done, self.total)
            if self._cancelled:
                self._end(False, CANCELLED_TEXT)
            else:
                self._end(True, "")
        except asyncio.CancelledError:
            self._end(False, CANCELLED_TEXT)
            raise
        except _Failed as exc:
            self._end(False, str(exc))
        except OSError as exc:
            self._end(False, f"The missing pictures could not be made: {exc}")
        except Exception as exc:     # a bug: the dialog is told, the excepthook shows it
            self._end(False, f"Making the missing pictures stopped because of an unexpected "
                             f"error ({type(exc).__name__}: {exc}).")
            raise

    def _stage(self) -> dict[int, Path]:
        """Each step's LoRA under a unique name in the folders ComfyUI lists (blocking)."""
        paths = self.generation.paths
        settings = getattr(self.generation.settings_service, "settings", None)
        comfy_models = str(getattr(settings, "comfyui_models_folder", "") or "")
        out: dict[int, Path] = {}
        for step, source in {c.step: c.lora for c in self.cells}.items():
            name = staged_lora_name(self.spec.output_name, self.spec.job_id, step,
                                    source.suffix)
            if not source.is_file():
                raise _Failed(f"The LoRA of step {step} is gone: {source}")
            target = paths.loras / STAGED_FOLDER / name
            if not target.is_file() or target.stat().st_size != source.stat().st_size:
                link_or_copy(source, target)
            if comfy_models and Path(comfy_models).is_dir():   # a user-run ComfyUI's folder
                try:
                    extra = Path(comfy_models) / "loras" / STAGED_FOLDER / name
                    if not extra.is_file():
                        link_or_copy(source, extra)
                except OSError as exc:
                    logger.warning("fill the gaps: {} not placed in {}: {}", name,
                                   comfy_models, exc)
            out[step] = target
        return out

    async def _one(self, cell: FillCell, model: str, lora: Path) -> tuple[bool, str]:
        spec = self.spec
        sampling = trainer_sampling(spec)
        request = GenerationRequest(
            prompt=sample_prompt(cell.prompt, spec.trigger_word), negative=sampling.negative,
            family=spec.family, model=model, tier="Standard", seed=cell.seed, batch=1,
            lora=LoraChoice(int(spec.character_id), str(lora), 1.0, spec.trigger_word),
            target="compare", character_id=spec.character_id, width=int(spec.resolution),
            height=int(spec.resolution), steps=sampling.steps, cfg=sampling.cfg,
            guidance=sampling.guidance, sampler=sampling.sampler,
            scheduler=sampling.scheduler, output_path=str(cell.path))
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        try:
            self._current = self.generation.submit(request)
            return await waiter
        finally:
            self._current = ""
            self._waiter = None

    def _record(self, cell: FillCell) -> None:
        """Append the picture's ``sample`` event to ``compare_events.jsonl`` (blocking)."""
        if not cell.path.is_file():
            raise _Failed(f"ComfyUI's picture was not written to {cell.path}.")
        with open(self.job_dir / COMPARE_EVENTS, "a", encoding="utf-8") as fh:
            fh.write(compare_lines([cell]))
            fh.flush()
            os.fsync(fh.fileno())

    def _on_job_finished(self, job_id: str, _items: Any) -> None:
        if job_id == self._current and self._waiter is not None and not self._waiter.done():
            self._waiter.set_result((True, ""))

    def _on_job_failed(self, job_id: str, message: str) -> None:
        if job_id == self._current and self._waiter is not None and not self._waiter.done():
            self._waiter.set_result((False, message))

    def _disconnect(self) -> None:
        try:
            self.generation.job_finished.disconnect(self._on_job_finished)
            self.generation.job_failed.disconnect(self._on_job_failed)
        except (RuntimeError, TypeError):      # already gone (app quitting)
            pass

    def _end(self, ok: bool, message: str) -> None:
        if self._ended:
            return
        self._ended = True
        self._disconnect()
        logger.info("fill the gaps of job {}: {} of {} pictures{}", self.spec.job_id,
                    self.done, self.total, "" if ok else f" ({message})")
        self.finished.emit(ok, message)
