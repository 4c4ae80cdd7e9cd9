"""The captioning child's job file and its event lines (version 1; extend, never break).

The app writes a :class:`CaptionJob` as JSON and starts
``python -m isengard_desktop.training_runtime.captioning run --job <file>`` in the trainer's
Python. The child writes one JSON object a line on stdout, in the trainer protocol's shape
(``{"v":1,"event":...}``)::

    {"v":1,"event":"phase","phase":"loading_model","detail":"..."}
    {"v":1,"event":"started","total":12,"skipped":3,"device":"cuda","batch_size":8}
    {"v":1,"event":"caption","key":"<sha256>","image":"...","raw":"...","done":4,"total":12}
    {"v":1,"event":"caption_error","key":"<sha256>","image":"...","message":"..."}
    {"v":1,"event":"done","captioned":12,"failed":0}
    {"v":1,"event":"stopped","captioned":4}
    {"v":1,"event":"error","kind":"model_missing|config|oom|crash","message":"..."}
    {"v":1,"event":"log","level":"info","message":"..."}

``total`` counts the photos this run captions (those already in the suggestion file are
``skipped``: a resumed run). Stop: a line ``stop`` on stdin or SIGTERM → the batch in hand
finishes (its captions are kept), ``stopped`` follows, exit 0.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["CAPTION_EVENTS", "CaptionEvent", "CaptionImage", "CaptionJob", "DEFAULT_TASK",
           "JobError", "TASKS", "caption_event_line", "parse_caption_event"]

PROTOCOL_VERSION = 1
JOB_VERSION = 1
# Florence-2's caption tasks (transformers' Florence2Processor.task_prompts_without_inputs)
TASKS = ("<CAPTION>", "<DETAILED_CAPTION>", "<MORE_DETAILED_CAPTION>")
DEFAULT_TASK = "<DETAILED_CAPTION>"
CAPTION_EVENTS = ("phase", "started", "caption", "caption_error", "done", "stopped", "error",
                  "log")
MAX_BATCH = 64


class JobError(ValueError):
    """The job file is wrong; the message names the file and the field."""


@dataclass(frozen=True)
class CaptionImage:
    key: str      # the photo's sha256
    path: str


@dataclass(frozen=True)
class CaptionJob:
    """One captioning run.

    Attributes:
        model: the model folder (a transformers ``save_pretrained`` folder).
        model_id: how the model is named in the suggestion file.
        output: the suggestion file (``.captioning/suggestions.jsonl``) the child appends to.
        images: the photos to caption, in order.
        task: the Florence-2 task token.
        device: "auto" (GPU when there is one), "cuda" or "cpu".
        batch_size: photos per ``generate`` call (halved on out-of-memory).
        max_new_tokens / num_beams: passed to ``generate``.
    """

    model: str
    output: str
    images: tuple[CaptionImage, ...]
    model_id: str = ""
    task: str = DEFAULT_TASK
    device: str = "auto"
    batch_size: int = 8
    max_new_tokens: int = 256
    num_beams: int = 3

    def to_json(self) -> str:
        data = asdict(self)
        return json.dumps({"v": JOB_VERSION, **data}, ensure_ascii=False, indent=1)

    @classmethod
    def from_json(cls, text: str, source: str = "job") -> CaptionJob:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise JobError(f"{source}: not JSON ({exc})") from exc
        if not isinstance(data, dict) or data.get("v") != JOB_VERSION:
            raise JobError(f"{source}: field 'v' must be {JOB_VERSION}")

        def get(name: str, kind: type, default: Any = None) -> Any:
            value = data.get(name, default)
            if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
                raise JobError(f"{source}: field {name!r} must be {kind.__name__}")
            return value

        images = get("images", list)
        parsed = []
        for i, item in enumerate(images):
            if not (isinstance(item, dict) and isinstance(item.get("key"), str)
                    and isinstance(item.get("path"), str)):
                raise JobError(f"{source}: images[{i}] needs a 'key' and a 'path'")
            parsed.append(CaptionImage(item["key"], item["path"]))
        job = cls(model=get("model", str), output=get("output", str), images=tuple(parsed),
                  model_id=get("model_id", str, ""), task=get("task", str, DEFAULT_TASK),
                  device=get("device", str, "auto"), batch_size=get("batch_size", int, 8),
                  max_new_tokens=get("max_new_tokens", int, 256),
                  num_beams=get("num_beams", int, 3))
        job.validate(source)
        return job

    def validate(self, source: str = "job") -> None:
        if not self.model.strip():
            raise JobError(f"{source}: field 'model' is empty (choose a captioning model)")
        if not self.output.strip():
            raise JobError(f"{source}: field 'output' is empty")
        if self.task not in TASKS:
            raise JobError(f"{source}: field 'task' must be one of {', '.join(TASKS)}, "
                           f"not {self.task!r}")
        if self.device not in ("auto", "cuda", "cpu"):
            raise JobError(f"{source}: field 'device' must be auto, cuda or cpu")
        if not 1 <= self.batch_size <= MAX_BATCH:
            raise JobError(f"{source}: field 'batch_size' must be 1 to {MAX_BATCH}")
        if not 1 <= self.max_new_tokens <= 1024:
            raise JobError(f"{source}: field 'max_new_tokens' must be 1 to 1024")
        if not 1 <= self.num_beams <= 8:
            raise JobError(f"{source}: field 'num_beams' must be 1 to 8")


@dataclass(frozen=True)
class CaptionEvent:
    """One event line read back: its name and its fields."""

    event: str
    data: dict[str, Any]

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)


def caption_event_line(event: str, **fields: Any) -> str:
    """One event line (no newline)."""
    if event not in CAPTION_EVENTS:
        raise ValueError(f"unknown captioning event {event!r}")
    return json.dumps({"v": PROTOCOL_VERSION, "event": event, **fields},
                      separators=(",", ":"), ensure_ascii=False)


def parse_caption_event(line: str) -> CaptionEvent | None:
    """The event on ``line``; None for other text, a newer version or an unknown event."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        data = json.loads(line)
    except ValueError:
        return None
    if (not isinstance(data, dict) or data.get("v") != PROTOCOL_VERSION
            or data.get("event") not in CAPTION_EVENTS):
        return None
    name = str(data.pop("event"))
    data.pop("v", None)
    return CaptionEvent(name, data)
