"""One trainer child process (:class:`JobRun`).

:class:`JobRun` owns a QProcess started in its own session (process group) so a stop, a
terminate or a kill reaches every grandchild. It writes ``stdout.log`` / ``stderr.log``
(redacted, appended as received), appends each parsed event to ``events.jsonl``, and coalesces
what the UI sees to ~10 updates a second. It never blocks the UI thread except in
:meth:`JobRun.wait_for_exit`, which is for app shutdown only.

The job record, its states and the run outcome live in :mod:`.training_records`, the
process-group helpers in :mod:`.process_group`; both are re-exported here for the modules
that import them from this one.
"""

from __future__ import annotations

import codecs
import os
import signal
import time
from collections import deque
from dataclasses import replace
from pathlib import Path
from typing import Any
from collections.abc import Iterable

from loguru import logger
from PySide6.QtCore import QObject, QProcess, QProcessEnvironment, QTimer, Signal

from ...core.training.job_files import mask_secrets
from ...core.training.protocol import (CheckpointEvent, DoneEvent, ErrorEvent, Event, LogEvent,
                                      StepEvent, StoppedEvent, event_line, is_hidden_line)
from ...core.training.spec import JobPaths
from ...plugins.interface import Launch, LineParser, LineSplitter
from ..process_group import pid_alive, signal_group
from .records import (ACTIVE_STATES, FINAL_STATES, RESUMABLE_STATES, STATES,
                               JobRecord, RunOutcome, crash_message, examine_rows, utc_now)

__all__ = ["ACTIVE_STATES", "FINAL_STATES", "FLUSH_INTERVAL_MS", "JobRecord", "JobRun",
           "RESUMABLE_STATES", "RunOutcome", "STATES", "crash_message", "examine_rows",
           "pid_alive", "signal_group", "utc_now"]

FLUSH_INTERVAL_MS = 100          # ≤ ~10 UI updates a second
MAX_LINES_PER_FLUSH = 1000       # the log view gets at most this many lines per stream a flush
STDERR_TAIL = 20
_POSIX = os.name == "posix"


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
        self._secrets = tuple(s for s in secrets if s)
        self.pid: int | None = None
        self.stop_requested = False
        self._finished = False
        self._parser_failed = False
        self._write_failed: set[str] = set()
        self._done: DoneEvent | None = None
        self._stopped: StoppedEvent | None = None
        self._error: ErrorEvent | None = None
        self._decoders = {s: codecs.getincrementaldecoder("utf-8")(errors="replace")
                          for s in ("stdout", "stderr")}
        self._raw = {"stdout": "", "stderr": ""}
        self._display = {"stdout": LineSplitter(), "stderr": LineSplitter()}
        self._pending_lines: dict[str, list[tuple[str, bool]]] = {"stdout": [], "stderr": []}
        self._pending_step: StepEvent | None = None
        self._stderr_tail: deque[str] = deque(maxlen=STDERR_TAIL)
        self._last_flush = 0.0
        self._files: dict[str, Any] = {}
        self._term_deadline: float | None = None
        self._kill_grace_ms = 5000

        self._flush_timer = QTimer(self)
        self._flush_timer.setSingleShot(True)
        self._flush_timer.timeout.connect(self.flush)
        self._term_timer = QTimer(self)
        self._term_timer.setSingleShot(True)
        self._term_timer.timeout.connect(self._terminate)
        self._kill_timer = QTimer(self)
        self._kill_timer.setSingleShot(True)
        self._kill_timer.timeout.connect(self._kill)

        self.proc = QProcess(self)
        if _POSIX:
            self.proc.setUnixProcessParameters(QProcess.UnixProcessFlag.CreateNewSession)
        self.proc.setProgram(launch.argv[0])
        self.proc.setArguments(launch.argv[1:])
        if launch.cwd:
            self.proc.setWorkingDirectory(launch.cwd)
        qenv = QProcessEnvironment()
        for key, value in env.items():
            qenv.insert(key, value)
        self.proc.setProcessEnvironment(qenv)
        self.proc.readyReadStandardOutput.connect(lambda: self._on_ready("stdout"))
        self.proc.readyReadStandardError.connect(lambda: self._on_ready("stderr"))
        self.proc.started.connect(self._on_started)
        self.proc.finished.connect(self._on_finished)
        self.proc.errorOccurred.connect(self._on_error)

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

    def request_stop(self, grace_s: float, kill_grace_s: float) -> None:
        """Ask for a graceful stop (the backend's method), SIGTERM the group after
        ``grace_s`` and SIGKILL it ``kill_grace_s`` later. A second call can only shorten
        the grace."""
        if self._finished:
            return
        self._kill_grace_ms = int(kill_grace_s * 1000)
        deadline = time.monotonic() + grace_s
        if not self.stop_requested:
            self.stop_requested = True
            self._graceful_stop()
        elif self._term_deadline is not None and deadline >= self._term_deadline:
            return
        if self._kill_timer.isActive():
            return  # already terminated; the kill is on its way
        self._term_deadline = deadline
        self._term_timer.start(max(0, int(grace_s * 1000)))

    def _graceful_stop(self) -> None:
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
                self._signal(signal.SIGTERM)
        else:
            self._signal(signal.SIGTERM)

    def _signal(self, sig: int) -> None:
        if self._finished:
            return
        if _POSIX and self.pid:
            signal_group(self.pid, sig)
        elif sig == getattr(signal, "SIGKILL", None):
            self.proc.kill()
        else:
            self.proc.terminate()

    def _terminate(self) -> None:
        logger.warning("job {}: the trainer did not stop in time; terminating its process "
                       "group", self.job_id)
        self._signal(signal.SIGTERM)
        self._kill_timer.start(self._kill_grace_ms)

    def _kill(self) -> None:
        logger.warning("job {}: killing the trainer's process group", self.job_id)
        self._signal(getattr(signal, "SIGKILL", signal.SIGTERM))

    def wait_for_exit(self, grace_s: float, kill_grace_s: float) -> None:
        """App shutdown only (blocks): graceful stop, wait, terminate, wait, kill."""
        if self._finished:
            return
        if not self.stop_requested:
            self.stop_requested = True
            self._graceful_stop()
        if self.proc.waitForFinished(max(1, int(grace_s * 1000))):
            return
        self._signal(signal.SIGTERM)
        if self.proc.waitForFinished(max(1, int(kill_grace_s * 1000))):
            return
        self._signal(getattr(signal, "SIGKILL", signal.SIGTERM))
        self.proc.waitForFinished(3000)

    # -- output ----------------------------------------------------------------------------
    def _on_started(self) -> None:
        self.pid = int(self.proc.processId()) or None
        logger.info("job {}: trainer started (pid {})", self.job_id, self.pid)
        self.started.emit(self.pid or 0)

    def _on_ready(self, stream: str) -> None:
        if stream == "stdout":
            data = bytes(self.proc.readAllStandardOutput().data())
        else:
            data = bytes(self.proc.readAllStandardError().data())
        if data:
            self._consume(stream, self._decoders[stream].decode(data))

    def _consume(self, stream: str, text: str, final: bool = False) -> None:
        if not text:
            return
        # log file: whole lines (or redraws), redacted
        raw = self._raw[stream] + text
        cut = max(raw.rfind("\n"), raw.rfind("\r"))
        if final:
            cut = len(raw) - 1 if raw.strip() else -1
            raw = raw if raw.strip() else ""
        if cut >= 0:
            self._write(stream, mask_secrets(raw[:cut + 1], self._secrets).encode("utf-8"))
            raw = raw[cut + 1:]
        if len(raw) > 65536:
            self._write(stream, mask_secrets(raw, self._secrets).encode("utf-8"))
            raw = ""
        self._raw[stream] = raw

        try:
            events = self._parser.feed(stream, text)  # type: ignore[arg-type]
        except Exception:  # a backend's parser bug must not lose the run: log it once
            if not self._parser_failed:
                self._parser_failed = True
                logger.opt(exception=True).error("job {}: the {} line parser failed; its "
                                                 "output is still logged", self.job_id,
                                                 type(self._parser).__name__)
            events = []
        for event in events:
            self._handle_event(stream, event)
        for line, redraw in self._display[stream].feed_marked(text):
            if is_hidden_line(stream, line):
                continue  # protocol lines are shown through their events, the launcher's
                # context line is for the parser only: neither is shown as text
            self._add_line(stream, line, redraw)
        self._schedule_flush()

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

    def _add_line(self, stream: str, line: str, redraw: bool) -> None:
        pending = self._pending_lines[stream]
        if pending and pending[-1][1]:
            pending[-1] = (line, redraw)  # a redraw is replaced by whatever follows it
        else:
            pending.append((line, redraw))
        if stream == "stderr" and not redraw:
            self._stderr_tail.append(line)

    def _handle_event(self, stream: str, event: Event) -> None:
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
        if self._flush_timer.isActive():
            return
        elapsed_ms = (time.monotonic() - self._last_flush) * 1000
        self._flush_timer.start(int(max(0.0, FLUSH_INTERVAL_MS - elapsed_ms)))

    def flush(self) -> None:
        """Write buffered files and deliver the pending step and log lines now."""
        self._last_flush = time.monotonic()
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
    def _on_error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart and not self._finished:
            message = self.proc.errorString()
            logger.warning("job {}: the trainer failed to start: {}", self.job_id, message)
            self._finish(RunOutcome(None, False, failed_to_start=True, start_error=message))

    def _on_finished(self, exit_code: int, status: QProcess.ExitStatus) -> None:
        if self._finished:
            return
        self._on_ready("stdout")
        self._on_ready("stderr")
        for stream in ("stdout", "stderr"):
            tail = self._decoders[stream].decode(b"", final=True) + "\n"
            self._consume(stream, tail, final=True)
        crashed = status == QProcess.ExitStatus.CrashExit
        logger.info("job {}: trainer exited ({} {})", self.job_id,
                    "signal" if crashed else "code", exit_code)
        if _POSIX and self.pid:
            signal_group(self.pid, signal.SIGKILL)  # leftovers of the tree (none normally)
        self._finish(RunOutcome(exit_code, crashed, done=self._done, stopped=self._stopped,
                                error=self._error, stderr_tail=tuple(self._stderr_tail),
                                pid=self.pid))

    def _finish(self, outcome: RunOutcome) -> None:
        self._finished = True
        self.flush()
        self.release()
        self.finished.emit(outcome)

    def release(self) -> None:
        """Stop the timers and close the log files (idempotent; also for a run abandoned at
        shutdown whose process could not be waited for)."""
        for timer in (self._term_timer, self._kill_timer, self._flush_timer):
            timer.stop()
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
