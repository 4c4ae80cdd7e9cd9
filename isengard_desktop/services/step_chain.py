"""The machinery of an install run as a chain of steps (the trainer runtime, the managed
ComfyUI): one job at a time, each step either a child process (:class:`ChildProcess`) or file
work on the service's own worker thread, so the UI thread never waits.

A subclass sets ``self._job`` (any object with ``steps: list[Callable]`` and ``cancelled``),
calls :meth:`_next` to run the next step, and provides ``_fail(problem)`` and
``_end_cancelled()``. A step ends by calling :meth:`_next` (or ``_fail``); a cancelled job ends
through ``_end_cancelled`` as soon as the running step comes back.

Signals:
    progress(Progress): ``label`` is the :class:`InstallPhase`, ``detail`` the numbers.
    log_line(str): a line of the running child's output (details view, CLI).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from loguru import logger
from PySide6.QtCore import QObject, Signal

from ..core.paths import AppPaths
from ..core.runtime import install as uvsteps
from ..core.runtime.layout import cache_dir, runtime_root
from ..core.runtime.locks import lock_sources
from ..core.runtime.status import InstallPhase
from ..core.types import Progress
from .child_process import ChildProcess, OutputChunk, ProcessOutcome

__all__ = ["StepChainService"]


class StepChainService(QObject):
    """Base of the step-chain install services (see the module text)."""

    progress = Signal(object)
    log_line = Signal(str)
    _thread_done = Signal(object, object, object)   # (job, callback, result or exception)
    LOG_NAME = "install"                            # prefix of this service's log lines

    def __init__(self, paths: AppPaths, thread_name: str, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._paths = paths
        self._job: Any = None
        self._child: ChildProcess | None = None
        self._phase = InstallPhase.PREPARING
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=thread_name)
        self._thread_done.connect(self._on_thread_done)

    @property
    def busy(self) -> bool:
        return self._job is not None

    # -- for subclasses ----------------------------------------------------------------------
    def _fail(self, problem: str) -> None:
        raise NotImplementedError

    def _end_cancelled(self) -> None:
        raise NotImplementedError

    def _failure_text(self, exc: BaseException) -> str:
        """What a step that raised on the worker thread tells the user."""
        return f"{type(exc).__name__}: {exc}"

    # -- the chain ---------------------------------------------------------------------------
    def _next(self) -> None:
        job = self._job
        if job is None:
            return
        if job.cancelled:
            self._end_cancelled()
            return
        if job.steps:
            job.steps.pop(0)()

    def _emit(self, phase: InstallPhase, done: int, total: int, detail: str) -> None:
        self._phase = phase
        self.progress.emit(Progress(label=phase.value, done=done, total=total, detail=detail))

    def _in_thread(self, fn: Callable[[], Any], then: Callable[[Any], None]) -> None:
        """Run ``fn`` on the worker thread; ``then(result)`` on the UI thread (a raised
        exception fails the job, a cancel ends it)."""
        job = self._job

        def done(future: Future[Any]) -> None:
            exc = future.exception()
            self._thread_done.emit(job, then, exc if exc is not None else future.result())

        self._pool.submit(fn).add_done_callback(done)

    def _on_thread_done(self, job: Any, then: Callable[[Any], None], result: Any) -> None:
        if job is not self._job:
            return
        if job.cancelled:
            self._end_cancelled()
            return
        if isinstance(result, BaseException):
            logger.opt(exception=result).warning("{}: a step failed", self.LOG_NAME)
            self._fail(self._failure_text(result))
            return
        then(result)

    def _run(self, argv: list[str], name: str, then: Callable[[ProcessOutcome, str], None],
             *, env: dict[str, str] | None = None, on_line: Callable[[str], None] | None = None,
             merge_channels: bool = False) -> None:
        """Start one child; ``then(outcome, stdout)`` runs when it ends by itself (a cancel
        ends the job instead). Its lines go to ``log_line`` (and ``on_line``)."""
        out: list[str] = []
        job = self._job
        child = ChildProcess(argv, env=env, name=name, merge_channels=merge_channels,
                             tail_lines=30, parent=self)

        def output(chunk: OutputChunk) -> None:
            if chunk.stream == "stdout":
                out.append(chunk.text)
            for line, redraw in chunk.lines:
                if not redraw:
                    self.log_line.emit(line)
                if on_line is not None:
                    on_line(line)

        def finished(outcome: ProcessOutcome) -> None:
            self._child = None
            child.deleteLater()
            if job is not self._job or job is None:
                return
            if job.cancelled:
                self._end_cancelled()
                return
            then(outcome, "".join(out))

        child.output_received.connect(output)
        child.finished.connect(finished)
        self._child = child
        logger.info("{}: {}", self.LOG_NAME, " ".join(argv))
        child.start()

    def _uv(self) -> str | None:
        """The bundled uv, or None after failing the job with what to do."""
        uv = uvsteps.uv_binary()
        if uv is None or not uv.exists():
            self._fail("uv (the tool that makes Python environments) is missing from this "
                       "installation; reinstall Isengard Desktop.")
            return None
        return str(uv)

    def _sources(self, job: Any) -> list[str]:
        """Where ``uv pip install`` takes packages from: the offline payload's wheels only
        (``--no-index``), else the indexes ``locks.toml`` names for the job's device."""
        if job.offline is not None:
            return ["--no-index", "--find-links", str(job.offline / "wheels")]
        return lock_sources(job.device).uv_args()

    def _uv_env(self) -> dict[str, str]:
        """uv's environment: the one cache (torch & co. hard-linked, not stored twice) and
        the managed Pythons under ``<data>/runtime``."""
        return uvsteps.uv_env(cache_dir(self._paths), runtime_root(self._paths) / "python")
