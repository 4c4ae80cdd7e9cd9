"""The managed local ComfyUI: one child process in its own session, supervised.

:class:`ComfyServer` launches ``python -u main.py --listen 127.0.0.1 --port <free port>
--preview-method auto --extra-model-paths-config <ours> --disable-auto-launch`` in the
ComfyUI folder from Settings. The extra-model-paths YAML (written atomically into the data
folder) lists Isengard's LoRA folder as ``loras`` (plus the sub-folders of Settings' ComfyUI
models folder when one is set), so LoRAs trained here appear in ComfyUI's lists.

Readiness is ComfyUI's start-up line ("To see the GUI go to: ...") and then a successful
``GET /object_info`` (the ``probe``). Both output streams go to
``logs/comfyui/<key>.log`` (size-capped, rotated). A server that exits after it had been
healthy is restarted with growing delays; one that never became healthy stays in ``error``
with the reason (folder missing, main.py missing, python missing, exited with code N and its
last lines). :meth:`shutdown` (app quit) ends the whole process tree: SIGTERM to the process
group, then SIGKILL after a grace period; grandchildren go with it.

Validation of the folder and Python, writing the YAML and picking the port run on a worker
thread; nothing here blocks the UI thread except :meth:`shutdown`.

The process itself is a :class:`~..child_process.ChildProcess` (own session, merged output
decoded and split into lines, a tail of the last lines for messages, tree stop).

Signals:
    state_changed(str, str): state (a :class:`ServerState` value: "stopped" | "starting" |
        "ready" | "error") and a message that names the problem or what is happening.
    ready(str): the server answers at this base URL (also after a restart).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from collections.abc import Awaitable, Callable

from loguru import logger
from PySide6.QtCore import QObject, QTimer, Signal

from ...core.paths import AppPaths
from ...core.comfy.jobs import ServerState
from ..child_process import ChildProcess, OutputChunk, ProcessOutcome, StopIntent
from ..tasks import TaskOwner
from ..ops import run_in_executor
from .comfy_launch import LaunchPlan, LaunchProblem, RotatingLog, plan_launch

__all__ = ["READY_MARKER", "ComfyServer"]

READY_MARKER = "To see the GUI go to"
TAIL_LINES = 40
TAIL_IN_MESSAGE = 8               # lines of the tail quoted in an error message
LOG_FLUSH_MS = 500
Probe = Callable[[str], Awaitable[Any]]


class ComfyServer(QObject):
    """The managed local ComfyUI process. See the module docstring for states and signals."""

    state_changed = Signal(str, str)
    ready = Signal(str)

    def __init__(self, paths: AppPaths, key: str = "local", probe: Probe | None = None,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.paths = paths
        self.key = key
        self.probe = probe or _http_probe
        # tunables (tests shorten them)
        self.start_timeout_s = 600.0        # first starts install/compile things
        self.probe_without_marker_s = 30.0  # probe anyway if the start-up line never comes
        self.probe_interval_s = 0.5
        self.stop_grace_s = 10.0            # SIGTERM -> SIGKILL (async stop and shutdown)
        self.restart_delays = (2.0, 5.0, 10.0, 30.0, 60.0)
        self.max_restarts = 5               # consecutive restarts that never got healthy
        self.stable_after_s = 120.0         # healthy this long: the restart delays start over
        self.log_max_bytes = 5 * 1024 * 1024
        self.log_backups = 2
        self.extra_env: dict[str, str] = {}

        self.state = ServerState.STOPPED
        self.message = "ComfyUI is not started."
        self.url = ""
        self.pid: int | None = None
        self.ever_healthy = False
        self._folder = self._python = self._models = ""
        self._io = ThreadPoolExecutor(1, thread_name_prefix="comfy-launch")
        self._proc: ChildProcess | None = None
        self._plan: LaunchPlan | None = None
        self._generation = 0                # bumps on every launch; stale callbacks compare
        self._restarts = 0                  # restarts since it was last stable (delay index)
        self._failed_restarts = 0           # restarts in a row that never became healthy
        self._healthy_since = 0.0
        self._healthy_this_run = False
        self._marker_seen = False
        self._started_at = 0.0
        self.tasks = TaskOwner("managed ComfyUI")   # its readiness probe
        self._probe_task: asyncio.Future | None = None
        self._last_tail: tuple[str, ...] = ()   # the tail of the last run that ended
        self._log: RotatingLog | None = None
        self._closed = False

        self._restart_timer = QTimer(self)
        self._restart_timer.setSingleShot(True)
        self._restart_timer.timeout.connect(self._launch)
        self._flush_timer = QTimer(self)
        self._flush_timer.setInterval(LOG_FLUSH_MS)
        self._flush_timer.timeout.connect(self._flush_log)

    # -- configuration -----------------------------------------------------------------------
    @property
    def log_path(self) -> Path:
        return self.paths.logs / "comfyui" / f"{self.key}.log"

    @property
    def config_path(self) -> Path:
        return self.paths.data / "comfyui" / f"extra_model_paths_{self.key}.yaml"

    @property
    def configured(self) -> bool:
        return bool(self._folder.strip())

    @property
    def is_running(self) -> bool:
        return self._proc is not None

    def configure(self, folder: str, python: str, models_folder: str = "") -> bool:
        """Set the ComfyUI folder, Python and models folder; True if anything changed."""
        new = (folder or "", python or "", models_folder or "")
        changed = new != (self._folder, self._python, self._models)
        self._folder, self._python, self._models = new
        return changed

    # -- commands ----------------------------------------------------------------------------
    def start(self) -> None:
        """Validate (off the UI thread) and launch; a running server is left alone."""
        if self._closed or self._proc is not None:
            return
        self._restarts = self._failed_restarts = 0
        self.ever_healthy = False
        self._launch()

    def restart(self) -> None:
        """Stop (if running) and start again with the current configuration."""
        if self._closed:
            return
        self._restart_timer.stop()
        if self._proc is not None:
            self._stop(StopIntent.RESTART)
        else:
            self.start()

    def stop(self) -> None:
        """Stop without blocking: SIGTERM to the group, SIGKILL after ``stop_grace_s``."""
        self._stop(StopIntent.STOP)

    def _stop(self, intent: StopIntent) -> None:
        """``intent`` RESTART starts it again once the process has ended."""
        self._restart_timer.stop()
        self._cancel_probe()
        self._generation += 1            # a launch being prepared is dropped
        if self._proc is None:
            if self.state != ServerState.ERROR:
                self._set_state(ServerState.STOPPED, "ComfyUI is stopped.")
            return
        self._set_state(ServerState.STOPPED, "Stopping ComfyUI…")
        self._proc.stop(intent, kill_grace_s=self.stop_grace_s)

    def shutdown(self, grace_s: float | None = None) -> None:
        """App quit (blocks up to ``grace_s`` + 3 s): end the whole process tree."""
        if self._closed:
            return
        self._closed = True
        self._restart_timer.stop()
        self._flush_timer.stop()
        self._cancel_probe()
        proc = self._proc
        if proc is not None:
            grace = self.stop_grace_s if grace_s is None else grace_s
            proc.stop_and_wait(StopIntent.SHUTDOWN, kill_grace_s=grace)
            self._detach()
        if self._log is not None:
            self._log.close()
        self._io.shutdown(wait=False, cancel_futures=True)
        self._set_state(ServerState.STOPPED, "ComfyUI was stopped because Isengard closed.")

    # -- launch ------------------------------------------------------------------------------
    def _launch(self) -> None:
        if self._closed or self._proc is not None:
            return
        self._generation += 1
        generation = self._generation
        self._set_state(ServerState.STARTING, "Checking the ComfyUI folder…")
        folder, python, models = self._folder, self._python, self._models
        loras, config = self.paths.loras, self.config_path
        app_models, data = self.paths.models, self.paths.data

        def plan() -> LaunchPlan:
            return plan_launch(folder, python, models, loras, config, app_models, app_data=data)

        def planned(plan: LaunchPlan) -> None:
            if generation == self._generation and not self._closed:
                self._spawn(plan)

        def failed(exc: BaseException) -> None:
            if generation != self._generation or self._closed:
                return
            if isinstance(exc, LaunchProblem):
                self._set_state(ServerState.ERROR, str(exc))
            elif isinstance(exc, OSError):
                self._set_state(ServerState.ERROR, f"Could not prepare ComfyUI's start: {exc}")
            else:
                self._set_state(ServerState.ERROR, f"Could not prepare ComfyUI's start: "
                                         f"{type(exc).__name__}: {exc}")
                sys.excepthook(type(exc), exc, exc.__traceback__)

        run_in_executor(self._io, plan, planned, failed)

    def _spawn(self, plan: LaunchPlan) -> None:
        self._plan = plan
        self.url = plan.url
        self._healthy_this_run = False
        self._marker_seen = False
        self._last_tail = ()
        if self._log is None:
            self._log = RotatingLog(self.log_path, self.log_max_bytes, self.log_backups)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        self._log.write(f"\n===== {stamp} start: {plan.program} {' '.join(plan.arguments)} "
                        f"(in {plan.cwd}) =====\n")
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONIOENCODING": "utf-8",
               **self.extra_env}
        proc = ChildProcess((plan.program, *plan.arguments), env=env, cwd=plan.cwd,
                            merge_channels=True, tail_lines=TAIL_LINES, name="managed ComfyUI",
                            parent=self)
        generation = self._generation
        proc.started.connect(lambda pid: self._on_started(proc, pid, generation))
        proc.output_received.connect(lambda chunk: self._on_output(proc, chunk))
        proc.finished.connect(lambda outcome: self._on_finished(proc, outcome))
        self._proc = proc
        self._started_at = time.monotonic()
        self._set_state(ServerState.STARTING, f"Starting ComfyUI on port {plan.port}…")
        logger.info("starting managed ComfyUI: {} {} in {}", plan.program,
                    " ".join(plan.arguments), plan.cwd)
        self._flush_timer.start()
        proc.start()

    def _on_started(self, proc: ChildProcess, pid: int, generation: int) -> None:
        if proc is not self._proc:
            return
        self.pid = pid or None
        self._probe_task = self.tasks.spawn(self._await_ready(proc, generation))

    def _on_output(self, proc: ChildProcess, chunk: OutputChunk) -> None:
        if proc is not self._proc:
            return
        if self._log is not None and chunk.text:
            self._log.write(chunk.text)
        if not self._marker_seen and any(READY_MARKER in line for line, _ in chunk.lines):
            self._marker_seen = True
            logger.info("managed ComfyUI printed its start-up line")

    async def _await_ready(self, proc: ChildProcess, generation: int) -> None:
        deadline = self._started_at + self.start_timeout_s
        last_error = ""
        try:
            while (proc is self._proc and generation == self._generation
                   and not proc.stop_requested):
                now = time.monotonic()
                if now > deadline:
                    self._give_up(f"ComfyUI did not become ready within "
                                  f"{self.start_timeout_s:.0f} s"
                                  + (f" ({last_error})" if last_error else "")
                                  + f". {self._tail_text()}")
                    return
                if self._marker_seen or now - self._started_at >= self.probe_without_marker_s:
                    try:
                        await self.probe(self.url)
                    except asyncio.CancelledError:
                        raise
                    except Exception as exc:   # not up yet
                        last_error = str(exc) or type(exc).__name__
                    else:
                        if proc is self._proc and not proc.stop_requested:
                            self._on_healthy()
                        return
                await asyncio.sleep(self.probe_interval_s)
        except asyncio.CancelledError:
            pass

    def _on_healthy(self) -> None:
        self._healthy_this_run = True
        self.ever_healthy = True
        self._failed_restarts = 0
        self._healthy_since = time.monotonic()
        logger.info("managed ComfyUI is ready at {}", self.url)
        self._set_state(ServerState.READY, f"ComfyUI is running at {self.url}.")
        self.ready.emit(self.url)

    def _give_up(self, message: str) -> None:
        """Readiness timed out: stop the process and stay in error."""
        logger.warning("managed ComfyUI: {}", message)
        self._restart_timer.stop()
        if self._proc is not None:
            self._proc.stop(StopIntent.TIMEOUT, kill_grace_s=self.stop_grace_s)
        self._set_state(ServerState.ERROR, message)

    # -- exit --------------------------------------------------------------------------------
    def _on_finished(self, proc: ChildProcess, outcome: ProcessOutcome) -> None:
        if proc is not self._proc:
            return
        was_healthy = self._healthy_this_run
        self._last_tail = outcome.tail
        self._detach()
        if outcome.failed_to_start:
            program = self._plan.program if self._plan else "?"
            self._set_state(ServerState.ERROR,
                            f"Could not start ComfyUI with {program}: {outcome.error}. "
                            "Check the Python chosen in Settings → ComfyUI.")
            return
        what = outcome.describe()
        if self._log is not None:
            self._log.write(f"===== {time.strftime('%Y-%m-%d %H:%M:%S')} ComfyUI {what} "
                            "=====\n")
            self._log.flush()
        if self._closed:
            return
        if outcome.stop_intent is not None:
            if outcome.stop_intent == StopIntent.RESTART:
                self.start()
            elif self.state != ServerState.ERROR:
                self._set_state(ServerState.STOPPED, "ComfyUI is stopped.")
            return
        if not was_healthy and self.ever_healthy:
            self._failed_restarts += 1
        elif was_healthy and time.monotonic() - self._healthy_since >= self.stable_after_s:
            self._restarts = 0                  # it ran well for a while: start over
        if self.ever_healthy and self._failed_restarts < self.max_restarts:
            # only a server that had been healthy is restarted, with growing delays
            delay = self.restart_delays[min(self._restarts, len(self.restart_delays) - 1)]
            self._restarts += 1
            self._set_state(ServerState.STARTING,
                            f"ComfyUI {what}; restarting in {delay:g} s "
                            f"(restart {self._restarts}). {self._tail_text()}")
            self._restart_timer.start(int(delay * 1000))
            return
        if self.ever_healthy:
            message = (f"ComfyUI {what} and did not come back after {self._failed_restarts} "
                       f"restarts. {self._tail_text()}")
        else:
            message = f"ComfyUI {what} before it was ready. {self._tail_text()}"
        self._set_state(ServerState.ERROR, message)

    def _detach(self) -> None:
        proc, self._proc = self._proc, None
        self.pid = None
        self._cancel_probe()
        self._flush_log()
        self._flush_timer.stop()
        if proc is not None:
            proc.deleteLater()

    # -- helpers -----------------------------------------------------------------------------
    def _tail_text(self, n: int = TAIL_IN_MESSAGE) -> str:
        tail = self._proc.tail if self._proc is not None else self._last_tail
        lines = list(tail)[-n:]
        if not lines:
            return f"It printed nothing; see {self.log_path}."
        return f"Last lines of {self.log_path}:\n" + "\n".join(lines)

    def _cancel_probe(self) -> None:
        task, self._probe_task = self._probe_task, None
        if task is not None and not task.done():
            try:
                task.cancel()
            except RuntimeError:     # its loop is closed (app quit): nothing left to stop
                pass

    def _flush_log(self) -> None:
        if self._log is not None:
            self._log.flush()

    def _set_state(self, state: ServerState, message: str) -> None:
        if (state, message) == (self.state, self.message):
            return
        self.state, self.message = state, message
        self.state_changed.emit(state, message)


async def _http_probe(url: str) -> dict:
    """GET /object_info with a short-lived client (the service passes its own probe), through
    ComfyAPI: a probe cancelled because the process stopped leaves no connection open."""
    import httpx

    from ...core.comfy.api import ComfyAPI

    http = httpx.AsyncClient(verify=False, trust_env=False, timeout=10.0)
    api = ComfyAPI(url, http=http, timeout=10.0)
    try:
        return await api.object_info(refresh=True)
    finally:
        try:
            await api.aclose()
        finally:
            await http.aclose()
