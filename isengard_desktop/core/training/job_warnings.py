"""The resource warnings a training job met while it ran (Qt-free): free disk too small for
the next checkpoint, VRAM above 97 %, thermal throttling — each with when it began.

The resource monitor raises them live (:mod:`...core.hardware.monitor`); the training
service keeps them in the job's record (the ``jobs`` table's ``resource_warnings`` column, a
JSON list), so the History shows them after the job ended and the debug bundle's
``record.json`` carries them.

* :func:`add_warnings`: the record's warnings with newly started alerts appended (an alert
  that flickers on and off is kept once per :data:`REPEAT_AFTER_S`, and at most
  :data:`MAX_WARNINGS` are kept).
* :func:`warnings_to_json` / :func:`warnings_from_json`: the stored form.
* :func:`warning_lines`: one line per warning for the History's tooltip.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..hardware.monitor import ResourceAlert

__all__ = ["KIND_WORDS", "MAX_WARNINGS", "REPEAT_AFTER_S", "JobWarning", "add_warnings",
           "warning_lines", "warnings_from_json", "warnings_to_json"]

REPEAT_AFTER_S = 300.0   # the same warning again within 5 minutes is the same episode
MAX_WARNINGS = 50        # a record stays small however long the job runs
KIND_WORDS = {"disk": "Disk nearly full", "vram": "VRAM nearly full",
              "thermal": "GPU thermal throttling"}


@dataclass(frozen=True)
class JobWarning:
    """One warning: ``when`` it began (ISO-8601, UTC), its ``kind`` ("disk", "vram",
    "thermal"), the ``message`` shown live, the NVML index of its ``gpu`` (None: the disk)."""

    when: str
    kind: str
    message: str
    gpu: int | None = None

    @property
    def key(self) -> tuple[str, int | None]:
        return self.kind, self.gpu


def _epoch(stamp: str) -> float | None:
    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def add_warnings(existing: tuple[JobWarning, ...], alerts: Iterable[ResourceAlert],
                 now: datetime) -> tuple[JobWarning, ...]:
    """``existing`` with each alert that started at ``now`` appended, unless the same warning
    (its ``key``: kind and GPU) began less than :data:`REPEAT_AFTER_S` earlier or
    :data:`MAX_WARNINGS` are kept."""
    out = list(existing)
    stamp = now.astimezone(UTC).isoformat(timespec="seconds")
    for alert in alerts:
        if len(out) >= MAX_WARNINGS:
            break
        key = alert.key
        last = next((w for w in reversed(out) if w.key == key), None)
        began = _epoch(last.when) if last is not None else None
        if began is not None and now.timestamp() - began < REPEAT_AFTER_S:
            continue
        out.append(JobWarning(stamp, key[0], str(alert.message), key[1]))
    return tuple(out)


def warnings_to_json(warnings: Iterable[JobWarning]) -> str:
    return json.dumps([asdict(w) for w in warnings], ensure_ascii=False)


def warnings_from_json(stored: str | None) -> tuple[JobWarning, ...]:
    """The warnings of a stored JSON list; entries that are not warnings are left out."""
    try:
        value = json.loads(stored or "[]")
    except ValueError:
        return ()
    if not isinstance(value, list):
        return ()
    out = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("when"), str) \
                or not isinstance(item.get("kind"), str):
            continue
        gpu = item.get("gpu")
        out.append(JobWarning(item["when"], item["kind"], str(item.get("message", "")),
                              gpu if isinstance(gpu, int) and not isinstance(gpu, bool)
                              else None))
    return tuple(out)


def warning_lines(warnings: Iterable[JobWarning]) -> list[str]:
    """``"⚠ 2026-12-06 14:02 · VRAM nearly full: <message>"`` per warning (local time)."""
    lines = []
    for warning in warnings:
        epoch = _epoch(warning.when)
        when = (datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M")
                if epoch is not None else warning.when)
        what = KIND_WORDS.get(warning.kind, warning.kind)
        lines.append(f"⚠ {when} · {what}: {warning.message}")
    return lines
