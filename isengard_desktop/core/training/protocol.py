"""The trainer event protocol, version 1 (ARCHITECTURE.md §3). Extend, never break.

Trainer children write one JSON object per line on stdout::

    {"v":1,"event":"phase","phase":"loading_model","done":0,"total":0}
    {"v":1,"event":"step","step":120,"total":2000,"loss":0.081,"lr":1e-4,"sec_per_step":1.2,"eta_sec":2256}
    {"v":1,"event":"sample","step":250,"path":"...","prompt":"..."}
    {"v":1,"event":"checkpoint","step":250,"path":"...","resumable":true}
    {"v":1,"event":"done","lora":"...","steps":2000}
    {"v":1,"event":"error","kind":"oom","message":"...","step":812}  (step added, optional)
    {"v":1,"event":"stopped","step":250,"checkpoint":"..."}      (added: stop & save finished)
    {"v":1,"event":"log","level":"info","message":"..."}          (added: human-readable notes)

:func:`event_line` builds a line (used by the child); :func:`parse_event` reads one back.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass
from typing import Any

PROTOCOL_VERSION = 1
PHASES = ("loading_model", "caching", "training", "saving", "sampling")
ERROR_KINDS = ("oom", "config", "model_missing", "nan_loss", "disk_full", "crash")


@dataclass(frozen=True)
class PhaseEvent:
    phase: str
    done: int = 0
    total: int = 0
    detail: str = ""


@dataclass(frozen=True)
class StepEvent:
    step: int
    total: int
    loss: float
    lr: float
    sec_per_step: float = 0.0
    eta_sec: float = 0.0


@dataclass(frozen=True)
class SampleEvent:
    step: int
    path: str
    prompt: str


@dataclass(frozen=True)
class CheckpointEvent:
    step: int
    path: str
    resumable: bool = True


@dataclass(frozen=True)
class DoneEvent:
    lora: str
    steps: int


@dataclass(frozen=True)
class ErrorEvent:
    kind: str
    message: str
    step: int = 0           # (added) the step being trained when it failed; 0: unknown


@dataclass(frozen=True)
class StoppedEvent:
    step: int
    checkpoint: str = ""
    lora: str = ""          # the LoRA exported from that checkpoint ("" when none was)
    lora_step: int = 0      # the step ``lora`` was saved at when it is older (0: ``step``)


@dataclass(frozen=True)
class LogEvent:
    level: str
    message: str


Event = (PhaseEvent | StepEvent | SampleEvent | CheckpointEvent | DoneEvent | ErrorEvent
         | StoppedEvent | LogEvent)

_TYPES: dict[str, type] = {
    "phase": PhaseEvent, "step": StepEvent, "sample": SampleEvent,
    "checkpoint": CheckpointEvent, "done": DoneEvent, "error": ErrorEvent,
    "stopped": StoppedEvent, "log": LogEvent,
}
_NAMES = {cls: name for name, cls in _TYPES.items()}


def event_line(event: Event) -> str:
    """One protocol line (no newline) for ``event``."""
    payload: dict[str, Any] = {"v": PROTOCOL_VERSION, "event": _NAMES[type(event)]}
    for key, value in asdict(event).items():
        if isinstance(value, float) and not math.isfinite(value):
            value = None  # JSON has no NaN/inf
        payload[key] = value
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


# stdout lines that are for the app only and never shown in a job's log view (they stay in
# stdout.log): protocol lines (shown through their events) and the external-trainer
# launcher's long context line (``plugins/external/trainer_shim.py``; its parser reads it)
HIDDEN_LINE_PREFIXES = ('{"v":', "[isengard] context")


# Known-harmless noise the user's log view leaves out (the raw stdout.log/stderr.log keep it):
# the one list, used by the live view (the runner) and the reloaded view (read_log_tail).
HARMLESS_NOISE_PATTERNS: tuple[re.Pattern[str], ...] = (
    # torchao's optional CUDA kernels on a machine without them (training works without)
    re.compile(r"(?:^|:)\s*Failed to load \S*torchao/\S*/_C\w*[^\s/:]*\.so\b"),
    # a library's own deprecation of a torch/diffusers call: nothing the user can act on
    re.compile(r"^\S.*:\d+: (?:FutureWarning|DeprecationWarning): .*\bdeprecated\b"),
    # the source line Python's warnings module prints under such a warning
    re.compile(r"^\s+warnings\.warn\($"),
)


def is_harmless_noise(line: str) -> bool:
    """Whether ``line`` is known-harmless output (see :data:`HARMLESS_NOISE_PATTERNS`)."""
    text = line.rstrip()
    return any(p.search(text) for p in HARMLESS_NOISE_PATTERNS)


def is_hidden_line(stream: str, line: str) -> bool:
    """Whether a trainer's output ``line`` on ``stream`` is hidden from the log view."""
    if stream == "stdout" and line.lstrip().startswith(HIDDEN_LINE_PREFIXES):
        return True
    return is_harmless_noise(line)


def parse_event(line: str) -> Event | None:
    """The event on ``line``, or None when the line is not a protocol event (plain text, a
    newer event type, malformed JSON). Unknown extra fields are ignored."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        data = json.loads(line)
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict) or data.get("v") != PROTOCOL_VERSION:
        return None
    cls = _TYPES.get(str(data.get("event")))
    if cls is None:
        return None
    names = cls.__dataclass_fields__  # type: ignore[attr-defined]
    kwargs = {k: data[k] for k in names if k in data}
    try:
        event = cls(**kwargs)
    except TypeError:
        return None
    if isinstance(event, StepEvent) and event.loss is None:
        event = StepEvent(event.step, event.total, float("nan"), event.lr or 0.0,
                          event.sec_per_step or 0.0, event.eta_sec or 0.0)
    return event
