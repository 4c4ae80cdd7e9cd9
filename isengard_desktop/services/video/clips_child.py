"""Runs the clips child (``python -m isengard_desktop.analysis_runtime clips <op>`` in the
trainer runtime's Python) for the video service: the GUI process never imports PyAV, whose
FFmpeg carries GPL libx264/libx265 (see ``analysis_runtime/clips.py``).

:class:`ClipsRun` is one child (a :class:`~..child_process.ChildProcess`, own session, tree
kill); :func:`start_clips` starts one with a callback (no asyncio needed); :func:`run_clips`
awaits one on the app's loop and returns its events, or raises :class:`ClipsChildError` whose
text names the clip (from the child's ``error`` event) or says what is missing (no trainer
runtime) or how the child ended.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import QObject, Signal

from ...core.paths import AppPaths
from ..runtime_child import RuntimeChildRun

__all__ = ["ClipsChildError", "ClipsOutcome", "ClipsRun", "run_clips",
           "start_clips"]



class ClipsChildError(OSError):
    """A clips op did not succeed; ``str`` is one sentence for the user."""


@dataclass(frozen=True)
class ClipsOutcome:
    """What one clips child brought back: its events (``error`` ones included), whether it was
    cancelled, and ``problem`` ("" when it succeeded, else one sentence naming the clip)."""

    events: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    cancelled: bool = False
    problem: str = ""

    def first(self, kind: str) -> dict[str, Any] | None:
        return next((e for e in self.events if e.get("event") == kind), None)


class ClipsRun(RuntimeChildRun):
    """One ``clips <op> ...`` child.

    Signals:
        event_received(dict): each protocol event, as it arrives.
        finished(ClipsOutcome): emitted once, also when it could not start.
    """

    event_received = Signal(object)

    def __init__(self, paths: AppPaths, args: Sequence[str], *, what: str = "",
                 parent: QObject | None = None) -> None:
        self.args = tuple(args)
        self._what = what or f"clips {self.args[0] if self.args else ''}".strip()
        self._events: list[dict[str, Any]] = []
        super().__init__(paths, ["clips", *self.args], name=self._what,
                         missing_text="Video files are read in the trainer runtime.",
                         failed_text=f"The video child ({self._what})", parent=parent)

    def on_event(self, event: dict[str, Any], line: str) -> None:
        self._events.append(event)
        if event.get("event") == "error" and not self._problem:
            self._problem = str(event.get("message", "")) or f"{self._what} failed"
        self.event_received.emit(event)

    def result(self) -> ClipsOutcome:
        return ClipsOutcome(tuple(self._events), self._cancelled, self._problem)


def start_clips(paths: AppPaths, args: Sequence[str], done: Callable[[ClipsOutcome], None], *,
                what: str = "", runs: list[ClipsRun] | None = None,
                on_event: Callable[[dict[str, Any]], None] | None = None,
                parent: QObject | None = None) -> ClipsRun:
    """Start one clips child; ``done(outcome)`` runs on the main thread when it ended (also
    when it could not start). ``runs`` (optional) holds it while it lives, so its owner can
    stop it at quit. It deletes itself after ``done``."""
    run = ClipsRun(paths, args, what=what, parent=parent)
    if on_event is not None:
        run.event_received.connect(on_event)

    def ended(outcome: ClipsOutcome) -> None:
        if runs is not None and run in runs:
            runs.remove(run)
        run.deleteLater()
        done(outcome)

    run.finished.connect(ended)
    if runs is not None:
        runs.append(run)
    run.start()
    return run


async def run_clips(paths: AppPaths, args: Sequence[str], *, what: str = "",
                    on_event: Callable[[dict[str, Any]], None] | None = None,
                    runs: list[ClipsRun] | None = None,
                    parent: QObject | None = None) -> ClipsOutcome:
    """Await one clips child on the app's loop (:func:`start_clips`) and return its outcome;
    raises :class:`ClipsChildError` when it failed, and :class:`asyncio.CancelledError` (after
    ending the child) when the awaiting task is cancelled."""
    future: asyncio.Future[ClipsOutcome] = asyncio.get_running_loop().create_future()

    def ended(outcome: ClipsOutcome) -> None:
        if not future.done():
            future.set_result(outcome)

    run = start_clips(paths, args, ended, what=what, runs=runs, on_event=on_event, parent=parent)
    try:
        outcome = await future
    except asyncio.CancelledError:
        run.cancel()
        raise
    if outcome.problem:
        raise ClipsChildError(outcome.problem)
    return outcome
