"""One child process, the one way the app runs one (:class:`ChildProcess`).

Trainer runs (``services/training/runner.py``), the managed ComfyUI
(``services/generation/comfy_server.py``) and the self-test's helper children
(``services/runtime_helpers.py``) all start their process through :class:`ChildProcess` and
learn how it ended from one frozen record, :class:`ProcessOutcome`.

What it does for them:

* starts ``argv`` with an environment and a working folder, in its **own session** on POSIX
  (``CreateNewSession``), so its pid is also its process group id and a signal to the group
  reaches every grandchild;
* decodes stdout and stderr incrementally as UTF-8 (a character split across reads is kept
  whole) and splits them into display lines on ``\\r`` and ``\\n`` with ANSI codes removed
  (:class:`~..core.console_text.LineSplitter`), delivered as :class:`OutputChunk`\\ s;
* keeps a capped tail of the last lines (stderr, or the merged output) for error messages;
* stops the whole process tree: an optional graceful request (``ask``), then SIGTERM to the
  group, then SIGKILL, each after its timeout; after the child exits, whatever is left of its
  group is killed too.

Platform: on POSIX the tree signals go to the process group (``os.killpg``). On Windows
(no process groups, no SIGKILL) the child is put in a kill-on-close Job Object
(:mod:`.win_jobs`) when it starts: the "terminate" step is ``QProcess.terminate`` (WM_CLOSE,
which console children ignore, so the ladder goes on), the "kill" step ends the whole job,
and the job also ends the tree if the app dies. Elsewhere (no job) it falls back to
``QProcess.terminate``/``kill`` of the direct child.
"""

from __future__ import annotations

import codecs
import enum
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from loguru import logger
from PySide6.QtCore import QObject, QProcess, QProcessEnvironment, QTimer, Signal

from ..core.console_text import LineSplitter, Stream
from ..core.platform_support import windows_end_phrase
from ..core.frozen import child_environ, is_frozen
from .process_group import signal_group
from .win_jobs import ProcessJob

__all__ = ["DEFAULT_TAIL_LINES", "ChildProcess", "OutputChunk", "ProcessOutcome", "StopIntent"]

DEFAULT_TAIL_LINES = 20
TAIL_LINE_CHARS = 2000            # a tail line longer than this is cut (error messages stay short)
FINAL_WAIT_MS = 3000              # after SIGKILL, how long a blocking stop waits for the exit
_POSIX = os.name == "posix"
_WINDOWS = sys.platform == "win32"
_SIGKILL = getattr(signal, "SIGKILL", signal.SIGTERM)
# seam: what makes a child's Job Object on Windows (tests pass a fake process API)
_job_factory: Callable[[], ProcessJob] = ProcessJob
_STREAMS: tuple[Stream, Stream] = ("stdout", "stderr")


class StopIntent(enum.StrEnum):
    """Why the app ends a child (none: it ended by itself)."""

    STOP = "stop"            # stop & save: the child may finish what it is doing first
    CANCEL = "cancel"        # the user does not want the result
    SHUTDOWN = "shutdown"    # the app is quitting
    RESTART = "restart"      # it is started again right after (new settings, user's restart)
    TIMEOUT = "timeout"      # it took longer than it may


@dataclass(frozen=True)
class ProcessOutcome:
    """How one child process ended.

    Attributes:
        exit_code: its exit code, or the signal number when ``crashed``; None when it
            could not be started.
        crashed: it was ended by a signal (or crashed).
        stop_intent: what the app last asked of it, None when it ended by itself.
        tail: its last display lines (stderr, or the merged output), oldest first.
        error: why it could not be started ("" when it was).
        pid: its pid (also its process group id on POSIX); None when it never ran.
    """

    exit_code: int | None
    crashed: bool
    stop_intent: StopIntent | None = None
    tail: tuple[str, ...] = ()
    error: str = ""
    pid: int | None = None

    @property
    def failed_to_start(self) -> bool:
        return self.exit_code is None

    @property
    def succeeded(self) -> bool:
        """It exited by itself with code 0."""
        return not self.crashed and self.exit_code == 0 and self.stop_intent is None

    def describe(self) -> str:
        """How it ended, for a sentence about it: "exited with code 1", "was killed by
        signal 9", "crashed: access violation (0xC0000005)" (a Windows crash code in
        words), "could not be started (…)"."""
        if self.failed_to_start:
            return f"could not be started ({self.error})"
        windows_end = windows_end_phrase(self.exit_code)
        if windows_end is not None:
            return windows_end
        if self.crashed:
            return f"was killed by signal {self.exit_code}"
        return f"exited with code {self.exit_code}"


@dataclass(frozen=True)
class OutputChunk:
    """What one read of one stream brought.

    Attributes:
        stream: "stdout" or "stderr" (always "stdout" when the channels are merged).
        text: the decoded text as read (``\\r``, ANSI codes and partial lines kept).
        lines: display lines this chunk completed, as ``(line, is_redraw)``: ANSI codes
            removed, blank lines dropped, a line ended by a bare ``\\r`` marked as a redraw.
        final: the last chunk of this stream (the process ended); a last unterminated line
            is in ``lines``.
    """

    stream: Stream
    text: str
    lines: tuple[tuple[str, bool], ...] = ()
    final: bool = False


class ChildProcess(QObject):
    """One child process: own session, decoded output, capped tail, tree stop. See the module
    docstring.

    Signals:
        started(int): the process runs; its pid (its process group id on POSIX).
        output_received(OutputChunk): one read of one stream, decoded and split; in order.
            The final chunks of both streams come before ``finished``.
        finished(ProcessOutcome): emitted once, also when the process could not be started.
    """

    started = Signal(int)
    output_received = Signal(object)
    finished = Signal(object)

    def __init__(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
                 cwd: str = "", merge_channels: bool = False,
                 tail_lines: int = DEFAULT_TAIL_LINES, name: str = "child process",
                 redact_tail: Callable[[str], str] | None = None,
                 parent: QObject | None = None) -> None:
        """``env`` is the whole environment (None: this process's; in the frozen app either is
        passed through :func:`~..core.frozen.child_environ`); ``merge_channels`` sends
        stderr into stdout; ``name`` says what it is in log lines ("managed ComfyUI");
        ``redact_tail`` masks each whole tail line before it is cut to length (a secret
        cut in half would no longer match)."""
        super().__init__(parent)
        if not argv:
            raise ValueError("ChildProcess needs a program")
        self.argv = tuple(argv)
        self.name = name
        self._merged = merge_channels
        self._pid: int | None = None
        self._ended = False
        self._asked = False
        self._intent: StopIntent | None = None
        self._term_deadline: float | None = None
        self._kill_grace_ms = 0
        self._decoders = {s: codecs.getincrementaldecoder("utf-8")(errors="replace")
                          for s in _STREAMS}
        self._splitters = {s: LineSplitter() for s in _STREAMS}
        self._tail: deque[str] = deque(maxlen=max(1, tail_lines))
        self._tail_redraw = False         # the tail's last line is a redraw (replaced next)
        self._redact_tail = redact_tail
        self._job: ProcessJob | None = None   # Windows: the child's tree

        self._term_timer = QTimer(self)
        self._term_timer.setSingleShot(True)
        self._term_timer.timeout.connect(self._on_grace_expired)
        self._kill_timer = QTimer(self)
        self._kill_timer.setSingleShot(True)
        self._kill_timer.timeout.connect(self._on_kill_due)

        self.proc = QProcess(self)
        self._configure_tree()
        self.proc.setProgram(self.argv[0])
        self.proc.setArguments(list(self.argv[1:]))
        if cwd:
            self.proc.setWorkingDirectory(cwd)
        if env is not None or is_frozen():
            # the frozen app's bootloader library path must not reach other programs
            env = child_environ(env)
            qenv = QProcessEnvironment()
            for key, value in env.items():
                qenv.insert(key, value)
            self.proc.setProcessEnvironment(qenv)
        if merge_channels:
            self.proc.setProcessChannelMode(QProcess.ProcessChannelMode.MergedChannels)
        self.proc.readyReadStandardOutput.connect(lambda: self._read("stdout"))
        self.proc.readyReadStandardError.connect(lambda: self._read("stderr"))
        self.proc.started.connect(self._on_started)
        self.proc.finished.connect(self._on_finished)
        self.proc.errorOccurred.connect(self._on_error)

    # -- state -----------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        """The pid once started (kept after the exit); None before."""
        return self._pid

    @property
    def is_running(self) -> bool:
        """Started and not yet finished."""
        return not self._ended and self.proc.state() != QProcess.ProcessState.NotRunning

    @property
    def has_ended(self) -> bool:
        """``finished`` was emitted."""
        return self._ended

    @property
    def stop_intent(self) -> StopIntent | None:
        return self._intent

    @property
    def stop_requested(self) -> bool:
        return self._intent is not None

    @property
    def tail(self) -> tuple[str, ...]:
        return tuple(self._tail)

    # -- commands --------------------------------------------------------------------------
    def start(self) -> None:
        self.proc.start()

    def write(self, data: bytes) -> None:
        """Write to the child's stdin."""
        self.proc.write(data)

    def stop(self, intent: StopIntent, *, kill_grace_s: float,
             ask: Callable[[], None] | None = None, grace_s: float = 0.0) -> None:
        """Stop the process tree without blocking.

        With ``ask`` (the graceful request: write "stop" to stdin, create a stop file…) it is
        called once, the group gets SIGTERM ``grace_s`` later and SIGKILL ``kill_grace_s``
        after that; a second call can only shorten the grace. Without ``ask`` the group gets
        SIGTERM now and SIGKILL ``kill_grace_s`` later. The latest ``intent`` is the one the
        outcome reports."""
        if self._ended:
            return
        self._intent = intent
        self._kill_grace_ms = _ms(kill_grace_s)
        if self._kill_timer.isActive():
            return  # already terminated; the kill is on its way
        if ask is None:
            self._term_timer.stop()
            self._terminate()
            return
        deadline = time.monotonic() + grace_s
        if not self._asked:
            self._asked = True
            ask()
        elif self._term_deadline is not None and deadline >= self._term_deadline:
            return
        self._term_deadline = deadline
        self._term_timer.start(_ms(grace_s))

    def kill(self, intent: StopIntent) -> None:
        """SIGKILL the process tree now."""
        if self._ended:
            return
        self._intent = intent
        self._term_timer.stop()
        self._kill_timer.stop()
        self.kill_tree()

    def stop_and_wait(self, intent: StopIntent, *, kill_grace_s: float,
                      ask: Callable[[], None] | None = None, grace_s: float = 0.0) -> None:
        """App quit only (blocks): like :meth:`stop`, waiting for the exit at each step;
        after the SIGKILL it waits up to 3 s more. ``finished`` is emitted from here when
        the process ends in time."""
        if self._ended:
            return
        self._intent = intent
        if ask is not None:
            if not self._asked:
                self._asked = True
                ask()
            if self.proc.waitForFinished(max(1, _ms(grace_s))):
                return
        self.terminate_tree()
        if self.proc.waitForFinished(max(1, _ms(kill_grace_s))):
            return
        self.kill_tree()
        self.proc.waitForFinished(FINAL_WAIT_MS)

    def wait(self, ms: int = FINAL_WAIT_MS) -> bool:
        """Block until the process has ended (app quit only); True if it has."""
        if self.proc.state() == QProcess.ProcessState.NotRunning:
            return True
        return bool(self.proc.waitForFinished(ms))

    def release(self) -> None:
        """Stop the stop timers (idempotent; for a process abandoned at app quit)."""
        self._term_timer.stop()
        self._kill_timer.stop()

    def terminate_tree(self) -> None:
        """SIGTERM to the process group (Windows: WM_CLOSE to the child; no timers)."""
        self._signal_tree(kill=False)

    def kill_tree(self) -> None:
        """SIGKILL to the process group (Windows: end its Job Object; no timers)."""
        self._signal_tree(kill=True)

    # -- platform ----------------------------------------------------------------------------
    def _configure_tree(self) -> None:
        if _POSIX:
            self.proc.setUnixProcessParameters(QProcess.UnixProcessFlag.CreateNewSession)

    def _join_job(self) -> None:
        """Windows: put the started child in its own kill-on-close Job Object."""
        if not _WINDOWS or not self._pid:
            return
        try:
            job = _job_factory()
        except OSError as exc:
            logger.warning("{}: no job object ({}); only the child itself can be ended",
                           self.name, exc)
            return
        if job.assign(self._pid):
            self._job = job

    def _signal_tree(self, *, kill: bool) -> None:
        if self._ended:
            return
        if _POSIX and self._pid:
            signal_group(self._pid, _SIGKILL if kill else signal.SIGTERM)
        elif kill:
            if self._job is None or not self._job.terminate():
                self.proc.kill()
        else:
            self.proc.terminate()

    def _end_tree_leftovers(self) -> None:
        """After the child exited: kill whatever is left of its tree (none normally)."""
        if _POSIX and self._pid:
            signal_group(self._pid, _SIGKILL)
        if self._job is not None:
            self._job.terminate()
            self._job.close()
            self._job = None

    # -- stop ladder -------------------------------------------------------------------------
    def _terminate(self) -> None:
        self.terminate_tree()
        self._kill_timer.start(self._kill_grace_ms)

    def _on_grace_expired(self) -> None:
        logger.warning("{} did not stop in time; terminating its process group", self.name)
        self._terminate()

    def _on_kill_due(self) -> None:
        logger.warning("{} did not end after SIGTERM; killing its process group", self.name)
        self.kill_tree()

    # -- output ------------------------------------------------------------------------------
    def _on_started(self) -> None:
        self._pid = int(self.proc.processId()) or None
        self._join_job()
        logger.info("{} started (pid {})", self.name, self._pid)
        self.started.emit(self._pid or 0)

    def _read(self, stream: Stream) -> None:
        if stream == "stdout":
            data = bytes(self.proc.readAllStandardOutput().data())
        else:
            data = bytes(self.proc.readAllStandardError().data())
        if data:
            self._deliver(stream, self._decoders[stream].decode(data))

    def _deliver(self, stream: Stream, text: str, final: bool = False) -> None:
        # at the end a "\n" completes a last unterminated line (it is not part of ``text``)
        lines = tuple(self._splitters[stream].feed_marked(text + "\n" if final else text))
        if stream == "stderr" or self._merged:
            for line, redraw in lines:
                self._add_tail(line, redraw)
        if text or lines or final:
            self.output_received.emit(OutputChunk(stream, text, lines, final))

    def _add_tail(self, line: str, redraw: bool) -> None:
        if self._redact_tail is not None:
            line = self._redact_tail(line)
        line = line[:TAIL_LINE_CHARS]
        if self._tail_redraw and self._tail:
            self._tail[-1] = line  # a redraw is replaced by whatever follows it
        else:
            self._tail.append(line)
        self._tail_redraw = redraw

    # -- end ---------------------------------------------------------------------------------
    def _on_error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart and not self._ended:
            message = self.proc.errorString()
            logger.warning("{} could not be started: {}", self.name, message)
            self._end(ProcessOutcome(exit_code=None, crashed=False, stop_intent=self._intent,
                                     error=message or "unknown error"))

    def _on_finished(self, exit_code: int, status: QProcess.ExitStatus) -> None:
        if self._ended:
            return
        for stream in _STREAMS:
            if stream == "stderr" and self._merged:
                continue
            self._read(stream)
            self._deliver(stream, self._decoders[stream].decode(b"", final=True), final=True)
        crashed = status == QProcess.ExitStatus.CrashExit
        logger.info("{} exited ({} {})", self.name, "signal" if crashed else "code", exit_code)
        self._end_tree_leftovers()
        self._end(ProcessOutcome(exit_code=exit_code, crashed=crashed,
                                 stop_intent=self._intent, tail=tuple(self._tail),
                                 pid=self._pid))

    def _end(self, outcome: ProcessOutcome) -> None:
        self._ended = True
        self.release()
        self.finished.emit(outcome)


def _ms(seconds: float) -> int:
    return max(0, int(seconds * 1000))
