"""One trainer child process (:class:`JobRun`).

:class:`JobRun` runs the trainer through a :class:`~..child_process.ChildProcess` (own session,
decoded output, tree stop). It writes ``stdout.log`` / ``stderr.log`` (redacted, appended as
received), feeds the backend's line parser, appends each parsed event to ``events.jsonl``,
and coalesces what the UI sees to ~10 updates a second. It never blocks the UI thread except
in :meth:`JobRun.wait_for_exit`, which is for app shutdown only.

The job record, its states and the run outcome live in :mod:`.records`, the process-group
helpers in :mod:`..process_group`; both are re-exported here for the modules that import
them from this one.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any
from collections.abc import Iterable

from loguru import logger
from PySide6.QtCore import QObject, Signal

from ...core.training.job_files import mask_secrets, secret_env_values
from ...core.training.protocol import (CheckpointEvent, DoneEvent, ErrorEvent, Event, LogEvent,
                                      StepEvent, StoppedEvent, event_line, is_hidden_line)
from ...core.training.spec import JobPaths
from ...plugins.interface import Launch, LineParser
from ...core.console_text import MAX_LINE_CHARS, Stream
from ..child_process import ChildProcess, OutputChunk, ProcessOutcome, StopIntent
from ..throttle import Throttler
from .records import (RunOutcome)

__all__ = ["FLUSH_INTERVAL_MS", "JobRun"]

FLUSH_INTERVAL_MS = 100          # ≤ ~10 UI updates a second
MAX_LINES_PER_FLUSH = 1000       # the log view gets at most this many lines per stream a flush
STDERR_TAIL = 20
# a partial line is held until it ends, like the display lines (redaction works on whole
# lines: a secret split across two reads must not reach the log in two unmasked halves); one
# longer than this is written up to its last blank
RAW_LOG_HOLD_CHARS = MAX_LINE_CHARS


class JobRun(QObject):
    """One trainer process for one job.

    Signals:
        started(int): the process is running; its pid (also its process group id).
        event_received(object): a protocol event other than a step, in order (already in
            ``events.jsonl``). A pending step is delivered first.
        progressed(object): the latest StepEvent, at most ~10 a second; the last one is
            always delivered before ``finished``.
        lines_appended(str, list): stream ("stdout"/"stderr") and display lines (ANSI
            stripped, redacted, consecutive ``\\r`` redraws collapsed), at most ~10 a second.
        finished(object): RunOutcome; emitted once, also when the process failed to start.
    """

    started = Signal(int)
    event_received = Signal(object)
    progressed = Signal(object)
    lines_appended = Signal(str, list)
    finished = Signal(object)

    def __init__(self, job_id: str, paths: JobPaths, launch: Launch, parser: LineParser,
                 env: dict[str, str], secrets: Iterable[str] = (),
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.job_id = job_id
        self.paths = paths
        self.launch = launch
        self._parser = parser
        # the job's secrets and whatever secret the user's environment passes on to the child
        self._secrets = tuple(dict.fromkeys(s for s in (*secrets, *secret_env_values(env)) if s))
        self.pid: int | None = None
        self._finished = False
        self._parser_failed = False
        self._write_failed: set[str] = set()
        self._done: DoneEvent | None = None
        self._stopped: StoppedEvent | None = None
        self._error: ErrorEvent | None = None
        self._raw: dict[Stream, str] = {"stdout": "", "stderr": ""}
        self._pending_lines: dict[Stream, list[tuple[str, bool]]] = {"stdout": [], "stderr": []}
        self._pending_step: StepEvent | None = None
        self._files: dict[str, Any] = {}

        self._flusher: Throttler[None] = Throttler(lambda _: self._deliver(),
                                                   FLUSH_INTERVAL_MS, parent=self)

        self.proc = ChildProcess(launch.argv, env=env, cwd=launch.cwd, tail_lines=STDERR_TAIL,
                                 name=f"job {job_id}: the trainer", redact_tail=self._mask,
                                 parent=self)
        self.proc.started.connect(self._on_started)
        self.proc.output_received.connect(self._on_output)
        self.proc.finished.connect(self._on_finished)

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        self.paths.root.mkdir(parents=True, exist_ok=True)
        self._files = {
            "stdout": open(self.paths.stdout, "ab"),  # noqa: SIM115 (open for the run)
            "stderr": open(self.paths.stderr, "ab"),  # noqa: SIM115 (open for the run)
            "events": open(self.paths.events, "a", encoding="utf-8", newline="\n"),  # noqa: SIM115 (open for the run)
        }
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        for stream in ("stdout", "stderr"):
            self._files[stream].write(f"\n===== {stamp} start: {self.launch.argv[0]} =====\n"
                                      .encode())
        self.proc.start()

    @property
    def is_running(self) -> bool:
        return not self._finished

    @property
    def stop_requested(self) -> bool:
        return self.proc.stop_requested

    def request_stop(self, intent: StopIntent, grace_s: float, kill_grace_s: float) -> None:
        """Ask for a graceful stop (the backend's method), SIGTERM the group after
        ``grace_s`` and SIGKILL it ``kill_grace_s`` later. A second call can only shorten
        the grace."""
        if not self._finished:
            self.proc.stop(intent, ask=self._ask_to_stop, grace_s=grace_s,
                           kill_grace_s=kill_grace_s)

    def _ask_to_stop(self) -> None:
        method = self.launch.stop
        logger.info("job {}: asking the trainer to stop ({})", self.job_id, method)
        if method == "stdin":
            self.proc.write(b"stop\n")
        elif method == "file" and self.launch.stop_file is not None:
            try:
                Path(self.launch.stop_file).parent.mkdir(parents=True, exist_ok=True)
                Path(self.launch.stop_file).write_text("stop\n", encoding="utf-8")
            except OSError as exc:
                logger.warning("job {}: could not write the stop file: {}", self.job_id, exc)
                self.proc.terminate_tree()
        else:
            self.proc.terminate_tree()

    def wait_for_exit(self, intent: StopIntent, grace_s: float, kill_grace_s: float) -> None:
        """App shutdown only (blocks): graceful stop, wait, terminate, wait, kill."""
        if not self._finished:
            self.proc.stop_and_wait(intent, ask=self._ask_to_stop, grace_s=grace_s,
                                    kill_grace_s=kill_grace_s)

    # -- output ----------------------------------------------------------------------------
    def _on_started(self, pid: int) -> None:
        self.pid = pid or None
        self.started.emit(pid)

    def _on_output(self, chunk: OutputChunk) -> None:
        stream = chunk.stream
        # at the end the parser gets a "\n" too, so a last unterminated line completes
        text = chunk.text + "\n" if chunk.final else chunk.text
        self._write_raw(stream, text, chunk.final)
        try:
            events = self._parser.feed(stream, text)
        except Exception:  # a backend's parser bug must not lose the run: log it once
            if not self._parser_failed:
                self._parser_failed = True
                logger.opt(exception=True).error("job {}: the {} line parser failed; its "
                                                 "output is still logged", self.job_id,
                                                 type(self._parser).__name__)
            events = []
        for event in events:
            self._handle_event(stream, event)
        for line, redraw in chunk.lines:
            if is_hidden_line(stream, line):
                continue  # protocol lines are shown through their events, the launcher's
                # context line is for the parser only: neither is shown as text
            self._add_line(stream, line, redraw)
        self._schedule_flush()

    def _write_raw(self, stream: Stream, text: str, final: bool) -> None:
        """The log file gets whole lines (or redraws), redacted."""
        raw = self._raw[stream] + text
        cut = max(raw.rfind("\n"), raw.rfind("\r"))
        if final:
            cut = len(raw) - 1 if raw.strip() else -1
            raw = raw if raw.strip() else ""
        if cut >= 0:
            self._write(stream, self._mask(raw[:cut + 1]).encode("utf-8"))
            raw = raw[cut + 1:]
        if len(raw) > RAW_LOG_HOLD_CHARS:
            blank = max(raw.rfind(" "), raw.rfind("\t"))
            cut = blank if blank > 0 else len(raw) - 1
            self._write(stream, self._mask(raw[:cut + 1]).encode("utf-8"))
            raw = raw[cut + 1:]
        self._raw[stream] = raw

    def _mask(self, text: str) -> str:
        return mask_secrets(text, self._secrets)

    def _write(self, name: str, data: bytes | str) -> None:
        handle = self._files.get(name)
        if handle is None:
            return
        try:
            handle.write(data)
        except (OSError, ValueError) as exc:  # disk full: say so once, keep the run going
            if name not in self._write_failed:
                self._write_failed.add(name)
                logger.warning("job {}: cannot write {}: {}", self.job_id, name, exc)

    def _add_line(self, stream: Stream, line: str, redraw: bool) -> None:
        pending = self._pending_lines[stream]
        if pending and pending[-1][1]:
            pending[-1] = (line, redraw)  # a redraw is replaced by whatever follows it
        else:
            pending.append((line, redraw))

    def _handle_event(self, stream: Stream, event: Event) -> None:
        if isinstance(event, (ErrorEvent, LogEvent)):
            event = replace(event, message=mask_secrets(event.message, self._secrets))
        self._write("events", _event_record(event))
        if isinstance(event, StepEvent):
            self._pending_step = event
            return
        if isinstance(event, DoneEvent):
            self._done = event
        elif isinstance(event, StoppedEvent):
            self._stopped = event
        elif isinstance(event, ErrorEvent):
            self._error = event
        elif isinstance(event, LogEvent):
            if stream == "stdout":  # the trainer's own notes; stderr ones are already text
                self._add_line("stdout", f"{event.level.upper()}: {event.message}", False)
            return
        if isinstance(event, (DoneEvent, StoppedEvent, CheckpointEvent, ErrorEvent)):
            self._emit_step()
        self.event_received.emit(event)

    def _emit_step(self) -> None:
        step, self._pending_step = self._pending_step, None
        if step is not None:
            self.progressed.emit(step)

    def _schedule_flush(self) -> None:
        self._flusher.submit(None)

    def flush(self) -> None:
        """Write buffered files and deliver the pending step and log lines now."""
        self._flusher.submit(None)
        self._flusher.flush()

    def _deliver(self) -> None:
        for name, handle in self._files.items():
            try:
                handle.flush()
            except (OSError, ValueError) as exc:
                if name not in self._write_failed:
                    self._write_failed.add(name)
                    logger.warning("job {}: cannot write {}: {}", self.job_id, name, exc)
        self._emit_step()
        for stream, pending in self._pending_lines.items():
            if not pending:
                continue
            lines = [line for line, _ in pending]
            self._pending_lines[stream] = []
            if len(lines) > MAX_LINES_PER_FLUSH:
                skipped = len(lines) - MAX_LINES_PER_FLUSH
                lines = [f"[… {skipped} lines not shown; see {stream}.log]"] \
                    + lines[-MAX_LINES_PER_FLUSH:]
            self.lines_appended.emit(stream, [mask_secrets(line, self._secrets) for line in lines])

    # -- end -------------------------------------------------------------------------------
    def _on_finished(self, outcome: ProcessOutcome) -> None:
        if self._finished:
            return
        outcome = replace(outcome, tail=tuple(self._mask(line) for line in outcome.tail))
        self._finished = True
        self.flush()
        self.release()
        self.finished.emit(RunOutcome(process=outcome, done=self._done, stopped=self._stopped,
                                      error=self._error))

    def release(self) -> None:
        """Stop the timers and close the log files (idempotent; also for a run abandoned at
        shutdown whose process could not be waited for)."""
        self._flusher.cancel()
        self.proc.release()
        files, self._files = self._files, {}
        for handle in files.values():
            try:
                handle.close()
            except OSError:
                pass


def _event_record(event: Event) -> str:
    """One ``events.jsonl`` line: the protocol line plus the time it was received."""
    line = event_line(event)
    return line[:-1] + f',"t":{time.time():.3f}}}\n'
