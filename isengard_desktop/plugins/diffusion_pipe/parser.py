"""Turns diffusion-pipe's output into protocol events (Qt-free, torch-free).

diffusion-pipe (through DeepSpeed) prints, on stdout::

    [2025-06-01 10:00:00,123] [INFO] [logging.py:128:log_dist] [Rank 0] step=120, ...
        skipped=0, lr=[2e-05], mom=[(0.9, 0.99)]          (one line)
    steps: 120 loss: 0.0812 iter time (s): 3.412 samples/sec: 0.293
    Started new epoch: 3
    Saving model to directory epoch3
    [INFO] [torch_checkpoint_engine.py:..:commit] [Torch] Checkpoint global_step120 is ready now!
    Resuming training from checkpoint. Resuming at epoch: 2, step: 121
    Manually quitting
    TRAINING COMPLETE!

and Python tracebacks (OOM, missing files, bad config) on stderr. It never prints a total or
an ETA: the backend computes the total (epochs × steps per epoch, or max_steps) and hands it
over in a :class:`ParserContext`; the parser refines steps per epoch from the first epoch
boundary it sees, so the bar and ETA stay right even when bucketing dropped images.

Saved LoRAs (``<run>/epochN/`` or ``stepN/``) become non-resumable checkpoint events once the
save has finished (the next line after ``Saving model to directory``); DeepSpeed checkpoints
(``<run>/global_stepN/``) become resumable ones. ``TRAINING COMPLETE!`` becomes the ``done``
event: the final LoRA is hard-linked as ``<job>/<output_name>.safetensors`` (the one file
operation the parser does, at the very end; if linking fails the run folder's file is used).
Each complete DeepSpeed checkpoint is also recorded as a pointer in ``<job>/checkpoints/``
(``external.files.record_checkpoint``): that is how the training service knows the job can
be resumed.

The output layout helpers live here too: :func:`run_dirs`, :func:`lora_file` and
:func:`find_checkpoint` (the run folder and DeepSpeed checkpoint Resume continues from).
"""

from __future__ import annotations

import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from ...core.training.checkpoints import CheckpointInfo
from ...core.training.protocol import (CheckpointEvent, DoneEvent, ErrorEvent, Event, LogEvent,
                                      PhaseEvent, StepEvent, StoppedEvent)
from ..external.files import export_stopped_lora, record_checkpoint
from ...core.console_text import LineSplitter, Stream

__all__ = ["DeepSpeedParser", "ParserContext", "find_checkpoint", "lora_file", "run_dirs"]

_DS_PREFIX = re.compile(r"^\[[^\]]*\]\s*\[(?:DEBUG|INFO|WARNING|ERROR|CRITICAL)\]\s*\[[^\]]*\]\s*")
_RANK = re.compile(r"^\[Rank \d+\]\s*")
_STEPS = re.compile(r"^steps:\s*(?P<step>\d+)\s+loss:\s*(?P<loss>[-+\w.]+)\s+"
                    r"iter time \(s\):\s*(?P<it>[-+\d.eE]+)"
                    r"(?:\s+samples/sec:\s*(?P<sps>[-+\d.eE]+))?")
_LR = re.compile(r"^step=(?P<step>\d+),\s*skipped=\d+,\s*lr=\[?\s*(?P<lr>[-+\d.eE]+)")
_EPOCH = re.compile(r"^Started new epoch:\s*(?P<epoch>\d+)")
_RESUMED = re.compile(r"Resuming training from checkpoint\. Resuming at epoch:\s*(?P<epoch>\d+),"
                      r"\s*step:\s*(?P<step>\d+)")
_SAVE_MODEL = re.compile(r"^Saving model to directory\s+(?P<name>\S+)")
_CKPT_BEGIN = re.compile(r"Checkpoint (?P<tag>global_step(?P<step>\d+)) is "
                         r"(?:about to be saved|begin to save)")
_CKPT_PATH = re.compile(r"(?:Saving model checkpoint:|\[Torch\] Saved)\s*(?P<path>\S+?)"
                        r"[/\\](?P<tag>global_step\d+)[/\\]")
_CKPT_READY = re.compile(r"Checkpoint (?P<tag>global_step(?P<step>\d+)) is ready now")
_TQDM = re.compile(r"^(?P<desc>[^|]*?):?\s*(?P<pct>\d+)%\|[^|]*\|\s*(?P<n>\d+)/(?P<total>\d+)")
_OOM = re.compile(r"OutOfMemoryError|CUDA out of memory|CUDA error: out of memory")
_DISK = re.compile(r"No space left on device")
_MISSING_FILE = re.compile(r"^(?:FileNotFoundError|OSError|EnvironmentError|ValueError): .*("
                           r"No such file or directory|does not exist|no file named|"
                           r"not found)", re.IGNORECASE)
_KEYERROR = re.compile(r"^KeyError: '(?P<key>[^']+)'")
_MODEL_TYPE = re.compile(r"^NotImplementedError: Model type (?P<type>\S+) is not implemented")
_NO_MODULE = re.compile(r"^ModuleNotFoundError: No module named '(?P<name>[^']+)'")


def run_dirs(output_dir: Path) -> list[Path]:
    """The run folders in ``output_dir``, oldest first (diffusion-pipe names them by UTC
    time, so name order is time order, as its own ``get_most_recent_run_dir`` assumes)."""
    try:
        return sorted((p for p in Path(output_dir).iterdir() if p.is_dir()),
                      key=lambda p: p.name)
    except OSError:
        return []


def lora_file(save_dir: Path) -> Path | None:
    """The LoRA file diffusion-pipe saved in ``save_dir`` (``adapter_model.safetensors``;
    Diffusers-format models use another name, SDXL the kohya one), or None."""
    preferred = save_dir / "adapter_model.safetensors"
    if preferred.is_file():
        return preferred
    try:
        found = sorted(p for p in save_dir.glob("*.safetensors") if p.is_file())
    except OSError:
        return None
    return found[0] if found else None


def find_checkpoint(output_dir: Path, *, deep: bool = False
                    ) -> tuple[Path, CheckpointInfo] | None:
    """The newest run folder whose ``latest`` names a complete DeepSpeed checkpoint, and
    that checkpoint; None when there is none. ``deep`` also checks that every file in the
    checkpoint folder is non-empty and readable."""
    for run in reversed(run_dirs(output_dir)):
        try:
            tag = (run / "latest").read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            continue
        folder = run / tag
        step = tag.removeprefix("global_step")
        if not tag.startswith("global_step") or not step.isdigit() or not folder.is_dir():
            continue
        try:
            files = [p for p in folder.rglob("*") if p.is_file()]
        except OSError:
            continue
        if not files:
            continue
        if deep:
            try:
                if any(p.stat().st_size == 0 for p in files):
                    continue
                for p in files:
                    with open(p, "rb") as fh:
                        fh.read(1)
            except OSError:
                continue
        return run, CheckpointInfo(int(step), folder, True)
    return None


@dataclass
class ParserContext:
    """What the backend knew at launch (the tool prints none of it)."""

    total: int = 0                # planned steps (0: unknown)
    steps_per_epoch: int = 0      # estimate from the dataset; refined at epoch boundaries
    epochs: int = 0               # epochs mode (0: max_steps mode)
    max_steps: int = 0
    output_dir: Path | None = None
    job_dir: Path | None = None
    output_name: str = ""
    start_step: int = 0           # resume: the step of the checkpoint resumed from
    run_dir: Path | None = None   # resume: the run folder resumed


@dataclass
class _PendingSave:
    name: str
    step: int


@dataclass
class _State:
    step: int = 0
    lr: float = 0.0
    sec_per_step: float = 0.0
    epoch: int = 1
    epoch_started_at_step: dict[int, int] = field(default_factory=dict)
    phase: str = ""
    caching: tuple[str, int, int] | None = None
    pending_save: _PendingSave | None = None
    pending_checkpoint: tuple[int, str] | None = None   # (step, tag)
    checkpoint_committed: bool = False                  # DeepSpeed said "ready now"
    last_model: tuple[int, str] | None = None           # (step, save dir name)
    last_checkpoint: tuple[int, Path] | None = None
    error_sent: bool = False
    nan_warned: bool = False
    finished: bool = False


class DeepSpeedParser:
    """Parser for one diffusion-pipe process run (see the module docstring)."""

    def __init__(self, context: ParserContext | None = None) -> None:
        self.ctx = context or ParserContext()
        self._split = {"stdout": LineSplitter(), "stderr": LineSplitter()}
        self._s = _State(step=self.ctx.start_step)
        self._run_dir = self.ctx.run_dir
        self._started = time.monotonic()

    # -- public --------------------------------------------------------------------------
    @property
    def total(self) -> int:
        return self.ctx.total

    def feed(self, stream: Stream, text: str) -> list[Event]:
        events: list[Event] = []
        if not self._s.phase:
            self._s.phase = "loading_model"
            events.append(PhaseEvent("loading_model", 0, 0, "diffusion-pipe is starting"))
        for line, redraw in self._split[stream].feed_marked(text):
            events.extend(self._line(line.strip(), redraw))
        return events

    # -- lines ---------------------------------------------------------------------------
    def _line(self, line: str, redraw: bool) -> list[Event]:
        line = _RANK.sub("", _DS_PREFIX.sub("", line))
        if not line:
            return []
        out: list[Event] = []
        if self._s.checkpoint_committed and self._latest_is_pending():
            out += self._finish_checkpoint()   # DeepSpeed wrote `latest` after "ready now"
        bar = _TQDM.match(line)
        if bar:
            return out + self._bar(bar)
        if redraw:
            return out
        return out + self._dispatch(line)

    def _dispatch(self, line: str) -> list[Event]:
        s = self._s
        match = _STEPS.match(line)
        if match:
            return self._finish_saves() + self._step(match)
        match = _LR.match(line)
        if match:
            s.lr = _number(match.group("lr"), s.lr)
            return []
        match = _EPOCH.match(line)
        if match:
            out = self._finish_saves()
            self._epoch(int(match.group("epoch")))
            return out
        match = _SAVE_MODEL.match(line)
        if match:
            out = self._finish_saves()
            s.pending_save = _PendingSave(match.group("name"), s.step)
            return out + [PhaseEvent("saving", 0, 0,
                                     f"saving the LoRA ({match.group('name')})")]
        match = _CKPT_PATH.search(line)
        if match:
            self._run_dir = Path(match.group("path"))
        match = _CKPT_BEGIN.search(line)
        if match:
            out = self._finish_saves()
            s.pending_checkpoint = (int(match.group("step")), match.group("tag"))
            return out + [PhaseEvent("saving", 0, 0, "saving a resumable checkpoint")]
        match = _CKPT_READY.search(line)
        if match:
            s.pending_checkpoint = (int(match.group("step")), match.group("tag"))
            s.checkpoint_committed = True
            return []
        match = _RESUMED.search(line)
        if match:
            s.step = max(0, int(match.group("step")) - 1)
            s.epoch = int(match.group("epoch"))
            return [LogEvent("info", f"diffusion-pipe resumed from its checkpoint at step "
                                     f"{s.step} (epoch {s.epoch}).")]
        if line.startswith("Manually quitting"):
            out = self._finish_saves()
            checkpoint = s.last_checkpoint
            return out + [self._stopped(str(checkpoint[1]) if checkpoint else "")]
        if line.startswith("TRAINING COMPLETE"):
            return self._finish_saves() + self._done()
        if line.startswith("Running eval"):
            return [LogEvent("info", f"diffusion-pipe is running its evaluation at step "
                                     f"{s.step}.")]
        return self._problem(line)

    def _bar(self, bar: re.Match[str]) -> list[Event]:
        """A tqdm bar before training (caching latents / text embeddings) is a phase."""
        if self._s.phase == "training":
            return []
        desc = bar.group("desc").strip() or "caching"
        done, total = int(bar.group("n")), int(bar.group("total"))
        state = (desc, done, total)
        if state == self._s.caching:
            return []
        self._s.caching = state
        self._s.phase = "caching"
        return [PhaseEvent("caching", done, total, desc)]

    def _step(self, match: re.Match[str]) -> list[Event]:
        out: list[Event] = []
        s = self._s
        if s.phase != "training":
            s.phase = "training"
            out.append(PhaseEvent("training", 0, self.ctx.total, "training"))
        step = int(match.group("step"))
        loss = _number(match.group("loss"), float("nan"))
        if math.isnan(loss) and not s.nan_warned:
            s.nan_warned = True
            out.append(LogEvent("warning", f"The loss became NaN at step {step}: the LoRA is "
                                           "probably ruined. Stop the job and lower the "
                                           "learning rate."))
        it = _number(match.group("it"), 0.0)
        if it > 0:
            s.sec_per_step = it if s.sec_per_step <= 0 else 0.7 * s.sec_per_step + 0.3 * it
        s.step = step
        self.ctx.total = max(self.ctx.total, step)
        remaining = max(0, self.ctx.total - step)
        out.append(StepEvent(step, self.ctx.total, loss, s.lr, round(s.sec_per_step, 4),
                             round(remaining * s.sec_per_step, 1)))
        return out

    def _epoch(self, epoch: int) -> None:
        """``Started new epoch: E`` comes right after the last step of epoch E-1."""
        s = self._s
        s.epoch = epoch
        s.epoch_started_at_step.setdefault(epoch, s.step)
        if self.ctx.epochs and epoch >= 2 and s.step > 0:
            known = sorted(s.epoch_started_at_step.items())
            if len(known) >= 2:
                (e0, s0), (e1, s1) = known[0], known[-1]
                per_epoch = (s1 - s0) / (e1 - e0) if e1 > e0 else 0
            else:
                per_epoch = s.step / (epoch - 1)
            if per_epoch >= 1:
                self.ctx.steps_per_epoch = round(per_epoch)
                self.ctx.total = max(s.step, self.ctx.steps_per_epoch * self.ctx.epochs)

    # -- saves ---------------------------------------------------------------------------
    def _resolve_run_dir(self) -> Path | None:
        if self._run_dir is None and self.ctx.output_dir is not None:
            dirs = run_dirs(self.ctx.output_dir)
            if dirs:
                self._run_dir = dirs[-1]
        return self._run_dir

    def _finish_saves(self) -> list[Event]:
        return self._finish_model_save() + self._finish_checkpoint()

    def _finish_model_save(self) -> list[Event]:
        pending, self._s.pending_save = self._s.pending_save, None
        if pending is None:
            return []
        self._s.last_model = (pending.step, pending.name)
        run_dir = self._resolve_run_dir()
        save_dir = (run_dir / pending.name) if run_dir else Path(pending.name)
        lora = lora_file(save_dir) if run_dir else None
        return [CheckpointEvent(pending.step, str(lora or save_dir), resumable=False)]

    def _finish_checkpoint(self) -> list[Event]:
        pending, self._s.pending_checkpoint = self._s.pending_checkpoint, None
        self._s.checkpoint_committed = False
        if pending is None:
            return []
        step, tag = pending
        run_dir = self._resolve_run_dir()
        path = (run_dir / tag) if run_dir else Path(tag)
        self._s.last_checkpoint = (step, path)
        recorded, note = self._record(step, tag, run_dir)
        return note + [CheckpointEvent(step, str(path), resumable=recorded)]

    def _latest_is_pending(self) -> bool:
        pending, run_dir = self._s.pending_checkpoint, self._resolve_run_dir()
        if pending is None or run_dir is None:
            return pending is not None
        try:
            return (run_dir / "latest").read_text(encoding="utf-8").strip() == pending[1]
        except OSError:
            return False

    def _record(self, step: int, tag: str, run_dir: Path | None) -> tuple[bool, list[Event]]:
        """Record a complete DeepSpeed checkpoint (``latest`` names it) as a pointer in
        ``<job>/checkpoints/``, so the service knows the job can be resumed."""
        if self.ctx.job_dir is None or run_dir is None:
            return False, []
        try:
            latest = (run_dir / "latest").read_text(encoding="utf-8").strip()
        except OSError:
            latest = ""
        if latest != tag:
            return False, [LogEvent("warning", f"DeepSpeed checkpoint {tag} is not the one "
                                               f"{run_dir / 'latest'} names; Resume will not "
                                               "use it.")]
        lora = ""
        if self._s.last_model:
            found = lora_file(run_dir / self._s.last_model[1])
            lora = str(found or "")
        try:
            record_checkpoint(self.ctx.job_dir, step, "diffusion-pipe", lora, str(run_dir / tag))
        except OSError as exc:
            return False, [LogEvent("warning", f"Could not note checkpoint {tag} for Resume: "
                                               f"{exc}")]
        return True, []

    def _done(self) -> list[Event]:
        s = self._s
        if s.finished:
            return []
        s.finished = True
        run_dir = self._resolve_run_dir()
        source = None
        if s.last_model and run_dir:
            source = lora_file(run_dir / s.last_model[1])
        if source is None and run_dir is not None:
            for name in sorted((p.name for p in run_dir.iterdir() if p.is_dir()),
                               key=_save_order, reverse=True):
                source = lora_file(run_dir / name)
                if source:
                    break
        if source is None:
            return [ErrorEvent("crash", "diffusion-pipe said TRAINING COMPLETE but no LoRA "
                                        "file was found in "
                                        f"{run_dir or self.ctx.output_dir}.")]
        return [DoneEvent(str(self._publish(source)), s.step)]

    def _stopped(self, checkpoint: str) -> StoppedEvent:
        """Stop & save ended the run: the newest LoRA the tool saved (a model save; the
        DeepSpeed checkpoint holds no LoRA file) becomes the job's result, hard-linked as
        ``<job>/<output_name>-step<N>.safetensors`` (issue 11, item 16)."""
        s = self._s
        run_dir = self._resolve_run_dir()
        if s.last_model is None or run_dir is None:
            return StoppedEvent(s.step, checkpoint)
        step, name = s.last_model
        source = lora_file(run_dir / name)
        if source is None:
            return StoppedEvent(s.step, checkpoint)
        lora = export_stopped_lora(self.ctx.job_dir, self.ctx.output_name, source, step)
        return StoppedEvent(s.step, checkpoint, lora, step if step != s.step else 0)

    def _publish(self, source: Path) -> Path:
        """Hard-link the final LoRA as ``<job>/<output_name>.safetensors`` (same disk)."""
        if self.ctx.job_dir is None or not self.ctx.output_name:
            return source
        target = self.ctx.job_dir / f"{self.ctx.output_name}.safetensors"
        try:
            if target.exists():
                target.unlink()
            os.link(source, target)
        except OSError:
            return source
        return target

    # -- errors --------------------------------------------------------------------------
    def _problem(self, line: str) -> list[Event]:
        s = self._s
        kind, message = "", ""
        if _OOM.search(line):
            kind = "oom"
            message = (f"The GPU ran out of memory at step {s.step}. Lower the resolution or "
                       "the batch size, train in float8, or set blocks_to_swap "
                       f"(diffusion-pipe said: {line[:300]})")
        elif _DISK.search(line):
            kind = "disk_full"
            message = (f"The disk is full ({line[:300]}). Free some space in "
                       f"{self.ctx.output_dir or 'the job folder'} and resume.")
        elif (match := _MODEL_TYPE.match(line)):
            kind = "config"
            message = (f"This diffusion-pipe does not know the model type "
                       f"{match.group('type')}: update diffusion-pipe (git pull) or choose "
                       "another model type.")
        elif (match := _NO_MODULE.match(line)):
            kind = "config"
            message = (f"diffusion-pipe's Python lacks the module {match.group('name')!r}: "
                       "install diffusion-pipe's requirements into it (Settings → Trainers → "
                       "Check says which).")
        elif _MISSING_FILE.match(line):
            kind = "model_missing"
            message = f"diffusion-pipe could not find a file: {line[:400]}"
        elif (match := _KEYERROR.match(line)) and s.phase != "training":
            kind = "config"
            message = (f"diffusion-pipe could not read its config: the key "
                       f"{match.group('key')!r} is missing ({line[:200]}).")
        if not kind or s.error_sent:
            return []
        s.error_sent = True
        return [ErrorEvent(kind, message)]


def _number(text: str, default: float) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return default
    return value if not math.isinf(value) else default


def _save_order(name: str) -> tuple[int, int]:
    match = re.fullmatch(r"(epoch|step)(\d+)", name)
    if not match:
        return (-1, -1)
    return (0 if match.group(1) == "epoch" else 1, int(match.group(2)))
