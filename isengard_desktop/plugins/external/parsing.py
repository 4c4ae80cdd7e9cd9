"""Shared pieces of the external-trainer backends (ai-toolkit, kohya sd-scripts; diffusion-pipe
may use them too). Qt-free, torch-free.

Parsing helpers (pure functions):

* :func:`parse_tqdm` reads one tqdm bar frame (``desc: 13%|█▎ | 250/2000 [02:03<14:21,
  2.03it/s, postfix]``) into a :class:`TqdmFrame`; :func:`parse_clock` reads ``1:02:03``.
* :func:`parse_postfix` reads ``lr: 1.0e-04 loss: 4.123e-01`` / ``avr_loss=0.0812`` /
  ``loss=0.09, smooth loss=0.1`` into ``{"lr": 1e-4, "loss": 0.4123, ...}``.
* :func:`classify_error` names the error kind of a line (``oom``, ``model_missing``,
  ``disk_full``) or None; :func:`stderr_level` (re-exported) says ``warning``/``error``.

:class:`ExternalParser` is a :class:`~.interface.LineParser` base: it splits both streams
(``\\r`` redraws, ANSI, partial reads), reads the launcher's ``[isengard] ...`` lines
(``plugins/external/trainer_shim.py``), turns error lines into one :class:`ErrorEvent`, throttles
phase events, and leaves the tool's own lines to :meth:`ExternalParser.on_line`.
:meth:`ExternalParser.step_event` builds a :class:`StepEvent` from a bar frame.

The files side lives in ``plugins/external/files.py`` (checkpoint pointers, output-folder
scanning, the launcher's files, install checks).
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass
from typing import Any

from ...core.training.protocol import (
    ErrorEvent,
    Event,
    LogEvent,
    PhaseEvent,
    StepEvent,
    StoppedEvent,
)
from .files import (ExternalCheckpoint, export_stopped_lora, forget_checkpoint,
                    forget_pointers_to, record_checkpoint)
from ..builtin_trainer import stderr_level
from ...core.console_text import LineSplitter, Stream

__all__ = ["ExternalParser", "TqdmFrame", "classify_error", "error_message", "parse_clock",
           "parse_postfix", "parse_tqdm"]

# desc: pct%|bar| n/total [elapsed<remaining, rate unit, postfix]   (every part after the
# counts is optional: tqdm leaves out what it does not know)
_TQDM = re.compile(
    r"^(?:(?P<desc>.*?):\s*)?(?P<pct>\d{1,3})%\|[^|]*\|\s*(?P<n>\d+)/(?P<total>\d+)"
    r"(?:\s*\[(?P<elapsed>[\d:]+)(?:<(?P<remaining>[\d:?]+))?"
    r"(?:,\s*(?P<rate>[\d.]+|\?)\s*(?P<unit>s/it|it/s))?"
    r"(?:,\s*(?P<postfix>[^\]]*))?\])?")
_PAIR = re.compile(r"(?P<key>[A-Za-z_][\w ]*?)\s*[:=]\s*(?P<value>[-+]?(?:\d+\.?\d*|\.\d+)"
                   r"(?:[eE][-+]?\d+)?|nan|inf|-inf)(?=$|[\s,])", re.IGNORECASE)
SHIM_LINE = re.compile(r"^\[isengard\] (?P<kind>[a-z_]+) (?P<payload>\{.*\})\s*$")

_OOM = re.compile(r"(?i)CUDA out of memory|OutOfMemoryError|CUBLAS_STATUS_ALLOC_FAILED"
                  r"|\bout of memory\b|MPS backend out of memory")
_DISK = re.compile(r"(?i)No space left on device|\bENOSPC\b|disk quota exceeded")
_MISSING = re.compile(
    r"(?i)does not appear to have (?:a )?file named|is not a local folder and is not a valid "
    r"model identifier|Repository Not Found|LocalEntryNotFoundError|couldn't find them in the "
    r"cached files|Cannot find the requested files in the (?:local )?cache|offline mode is "
    r"enabled|no file named [\w.]+ found in directory|Error no file named"
    r"|(?:FileNotFoundError|No such file or directory).*\.(?:safetensors|ckpt|pt|bin|gguf|sft)")

ERROR_ADVICE = {
    "oom": "The GPU ran out of memory. Lower the resolution or batch size, turn on 8-bit "
           "quantization / fp8, or use a lower-VRAM preset, then resume or start again.",
    "model_missing": "A model file the trainer needs was not found (it runs offline). Check "
                     "the base model and the model paths of this backend.",
    "disk_full": "The disk is full. Free some space, then resume.",
}


@dataclass(frozen=True)
class TqdmFrame:
    """One tqdm frame. ``rate`` is iterations a second (0 unknown); ``sec_per_it`` too."""

    desc: str
    n: int
    total: int
    elapsed_s: float
    remaining_s: float | None
    rate: float
    sec_per_it: float
    postfix: str


def parse_clock(text: str | None) -> float | None:
    """``"02:03"`` → 123, ``"1:02:03"`` → 3723; ``"?"`` / None / junk → None."""
    if not text or "?" in text:
        return None
    try:
        parts = [int(p) for p in text.split(":")]
    except ValueError:
        return None
    seconds = 0
    for part in parts:
        seconds = seconds * 60 + part
    return float(seconds)


def parse_tqdm(line: str) -> TqdmFrame | None:
    """The tqdm frame on ``line`` (ANSI already stripped), or None."""
    match = _TQDM.search(line.strip())
    if match is None:
        return None
    rate = sec = 0.0
    value = match.group("rate")
    if value and value != "?":
        number = float(value)
        if match.group("unit") == "s/it":
            sec, rate = number, (1.0 / number if number else 0.0)
        else:
            rate, sec = number, (1.0 / number if number else 0.0)
    return TqdmFrame((match.group("desc") or "").strip(), int(match.group("n")),
                     int(match.group("total")), parse_clock(match.group("elapsed")) or 0.0,
                     parse_clock(match.group("remaining")), rate, sec,
                     (match.group("postfix") or "").strip())


def parse_postfix(text: str) -> dict[str, float]:
    """Numbers of a tqdm postfix by key (keys lower-case, inner spaces kept)."""
    out: dict[str, float] = {}
    for match in _PAIR.finditer(text):
        try:
            out[match.group("key").strip().lower()] = float(match.group("value"))
        except ValueError:
            continue
    return out


def classify_error(line: str) -> str | None:
    """``"oom"``, ``"disk_full"`` or ``"model_missing"`` when ``line`` says so, else None."""
    if _OOM.search(line):
        return "oom"
    if _DISK.search(line):
        return "disk_full"
    if _MISSING.search(line):
        return "model_missing"
    return None


def error_message(kind: str, line: str, tool: str) -> str:
    advice = ERROR_ADVICE.get(kind, "")
    text = f"{tool}: {line.strip()}"
    return f"{text}\n{advice}" if advice else text


class ExternalParser:
    """Base line parser of an external trainer; subclasses set :attr:`tool` and implement
    :meth:`on_line`. State a subclass may use:

    * :attr:`context`: the launcher's context (``job_dir``, ``output_dir``, ``name``,
      ``steps``, ``lr``, ``prompts``, ``resume`` ...), empty until its line arrives;
    * :attr:`step` / :attr:`total`: the newest step seen and the planned total;
    * :attr:`last_checkpoint`: the newest complete save this app knows of (from the context's
      ``resume`` or :meth:`commit_checkpoint`).
    """

    tool = "trainer"
    phase_interval_s = 0.5

    def __init__(self) -> None:
        self._split = {"stdout": LineSplitter(), "stderr": LineSplitter()}
        self.context: dict[str, Any] = {}
        self.step = 0
        self.total = 0
        self.last_checkpoint: ExternalCheckpoint | None = None
        self._error_sent = False
        self._phase = ""
        self._phase_progress: tuple[int, int] = (0, 0)
        self._phase_at = 0.0
        self._nan_warned = False

    # -- LineParser ----------------------------------------------------------------------
    def feed(self, stream: Stream, text: str) -> list[Event]:
        events: list[Event] = []
        for line, redraw in self._split[stream].feed_marked(text):
            shim = SHIM_LINE.match(line)
            if shim is not None:
                self._on_shim(shim.group("kind"), shim.group("payload"), events)
                continue
            self._check_error(line, events)
            self.on_line(stream, line, redraw, events)
            if stream == "stderr" and not redraw:
                level = stderr_level(line)
                if level is not None:
                    events.append(LogEvent(level, line.strip()))
        return events

    def on_line(self, stream: Stream, line: str, redraw: bool, out: list[Event]) -> None:
        """Turn one of the tool's lines into events (append to ``out``)."""

    # -- helpers for subclasses ------------------------------------------------------------
    def allow_error(self, kind: str, line: str) -> bool:
        """False to ignore an error line (e.g. an OOM the tool recovers from)."""
        return True

    def error(self, kind: str, line: str, out: list[Event]) -> None:
        """One error event a run: the first fatal error is the cause, the rest follow it."""
        if not self._error_sent:
            self._error_sent = True
            out.append(ErrorEvent(kind, error_message(kind, line, self.tool)))

    def phase(self, name: str, out: list[Event], done: int = 0, total: int = 0,
              detail: str = "") -> None:
        """A phase event when the phase changes, at the end of a counted phase, or at most
        every :attr:`phase_interval_s` while its count moves."""
        now = time.monotonic()
        changed = name != self._phase
        moved = (done, total) != self._phase_progress
        finished = total > 0 and done >= total and moved
        if changed or finished or (moved and now - self._phase_at >= self.phase_interval_s):
            self._phase, self._phase_progress, self._phase_at = name, (done, total), now
            out.append(PhaseEvent(name, done, total, detail))

    def add_step(self, out: list[Event], step: int, total: int, frame: TqdmFrame,
                 loss: float, lr: float) -> None:
        """Append the step event of a bar frame (and, once, a warning when the loss is
        NaN: external tools keep going, the user should know)."""
        self.step, self.total = step, total or self.total
        if math.isnan(loss) and not self._nan_warned:
            self._nan_warned = True
            out.append(LogEvent("warning", f"{self.tool}: the loss is NaN at step {step}; "
                                           "the LoRA is probably ruined. Lower the learning "
                                           "rate and start again."))
        eta = frame.remaining_s
        if eta is None:
            eta = max(0, self.total - step) * frame.sec_per_it
        out.append(StepEvent(step, self.total, loss, lr, frame.sec_per_it, float(eta)))

    @property
    def planned_steps(self) -> int:
        return int(self.context.get("steps") or 0)

    def commit_checkpoint(self, step: int, lora: str, state: str = "",
                          resumable: bool = True) -> ExternalCheckpoint | None:
        """Record a complete save as ``jobs/<id>/checkpoints/checkpoint-<step>/`` (so the
        runner's resume logic sees it) and remember it. No job folder known: None."""
        job_dir = self.context.get("job_dir")
        if not job_dir:
            return None
        try:
            found = record_checkpoint(job_dir, step, self.tool, lora, state, resumable)
        except OSError:
            return None
        if resumable:
            self.last_checkpoint = found
        return found

    def forget_pointers_to(self, path: str) -> None:
        """Drop the records pointing at ``path`` (the tool removed it)."""
        job_dir = self.context.get("job_dir")
        if job_dir:
            forget_pointers_to(job_dir, [path])

    def forget_checkpoint(self, step: int) -> None:
        job_dir = self.context.get("job_dir")
        if job_dir:
            forget_checkpoint(job_dir, step)

    # -- internals -------------------------------------------------------------------------
    def _check_error(self, line: str, out: list[Event]) -> None:
        kind = classify_error(line)
        if kind is not None and self.allow_error(kind, line):
            self.error(kind, line, out)

    def _on_shim(self, kind: str, payload: str, out: list[Event]) -> None:
        try:
            data = json.loads(payload)
        except json.JSONDecodeError:
            return
        if kind == "context" and isinstance(data, dict):
            self.context = data
            self.total = int(data.get("steps") or 0)
            resume = data.get("resume") or None
            if isinstance(resume, dict) and resume.get("step") is not None:
                self.last_checkpoint = ExternalCheckpoint(
                    int(resume["step"]), str(resume.get("lora", "")),
                    str(resume.get("state", "")), True)
        elif kind == "note":
            out.append(LogEvent(str(data.get("level", "info")), str(data.get("message", ""))))
        elif kind == "error":
            self.error(str(data.get("kind", "config")), str(data.get("message", "")), out)
        elif kind == "stop":
            self.phase("saving", out, detail="stopping" + (" (saving this step)"
                                                           if data.get("saving") else ""))
        elif kind == "stopped":
            self._on_stopped(bool(data.get("saved")), out)

    def before_stopped(self, out: list[Event]) -> None:
        """Called when the launcher says the run stopped, before the stopped event (e.g. to
        record a save that completed just before)."""

    def _on_stopped(self, saved: bool, out: list[Event]) -> None:
        self.before_stopped(out)
        last = self.last_checkpoint
        if last is None:
            out.append(LogEvent("warning", f"{self.tool} stopped at step {self.step} without "
                                           "a save, so this job cannot be resumed."))
            out.append(StoppedEvent(self.step, ""))
            return
        if not saved and self.step > last.step:
            out.append(LogEvent("warning", f"{self.tool} cannot save on request: it stopped "
                                           f"at step {self.step}; resume continues from its "
                                           f"newest save, step {last.step}."))
        # the newest save is the job's LoRA, "stopped at step N" (as the built-in trainer's)
        lora = export_stopped_lora(self.context.get("job_dir"), str(self.context.get("name")
                                                                    or ""), last.lora,
                                   last.step) if last.lora else ""
        out.append(StoppedEvent(last.step, last.lora, lora))
