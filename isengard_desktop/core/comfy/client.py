"""Asyncio client for one ComfyUI server (Qt-free).

One ``httpx.AsyncClient`` and one websocket per client (per server). ``run()`` registers the
prompt under an id we choose *before* posting it, so no message can arrive for an unknown
prompt; one reader task dispatches socket messages to every run in flight (see
``messages.py``). When the socket drops, the reader closes it, reconnects with backoff and
reconciles each run through ``/queue`` and ``/history``. Every await has a timeout except the
wait for a run itself, which is bounded by liveness polls: after ``liveness_interval`` seconds
without a message for that run, ``/queue`` and ``/history`` tell whether it is still queued
or running, finished (the socket missed it), or gone (the server restarted).

Protocol facts: shared/fixtures/comfyui/README.md (ComfyUI 0.3.64, recorded).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx
from loguru import logger
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from .api import (
    ComfyAPI,
    connect_reason,
    history_messages,
    images_from_history,
    ws_url,
)
from .errors import (
    ComfyConnectionError,
    ComfyError,
    ComfyInterrupted,
    ComfyValidationError,
    node_label,
    validation_error_from_body,
)
from .messages import Dispatcher, RunTracker, execution_error, interrupted_error
from .types import RunEvent, RunResult

#: Largest websocket frame we accept (previews are ~40 KB, SaveImageWebsocket frames are whole
#: PNGs; a 4096x4096 RGB PNG can reach ~50 MB).
MAX_FRAME = 256 * 1024 * 1024
FEATURE_FLAGS = {"type": "feature_flags", "data": {"supports_preview_metadata": True}}


class _Run:
    """One run() in flight: its tracker plus the future the reader resolves."""

    def __init__(self, prompt_id: str, graph: Mapping[str, Any], server: str,
                 on_event: Callable[[RunEvent], None] | None) -> None:
        self.prompt_id = prompt_id
        self.tracker = RunTracker(prompt_id, graph, server)
        self.on_event = on_event
        self.finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.last_activity = time.monotonic()
        self.posted = False
        self.cancel_requested = False
        self.history: dict | None = None       # set when reconciliation found it finished

    def finish(self, error: BaseException | None = None) -> None:
        if self.finished.done():
            return
        if error is None:
            self.finished.set_result(None)
        else:
            self.finished.set_exception(error)

    def where(self) -> str:
        node = self.tracker.current_node
        if node is None:
            return "" if not self.tracker.started else " while running the job"
        return f" while running node {node_label(node, self.tracker.class_of(node))[5:]}"


class ComfyClient(ComfyAPI):
    """Client for one ComfyUI server. Create it on the loop that will use it; ``aclose()`` it."""

    def __init__(self, base_url: str, *, client_id: str | None = None,
                 http: httpx.AsyncClient | None = None, timeout: float = 30.0,
                 reconnect_delays: Sequence[float] = (0.2, 0.5, 1, 2, 5),
                 liveness_interval: float = 5.0, preview_metadata: bool = True) -> None:
        super().__init__(base_url, http=http, timeout=timeout)
        self.client_id = client_id or str(uuid.uuid4())
        self.reconnect_delays = tuple(float(d) for d in reconnect_delays)
        self.liveness_interval = float(liveness_interval)
        self.preview_metadata = preview_metadata
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()     # every reader task, old ones included
        self._ws_lock = asyncio.Lock()
        self._dispatcher = Dispatcher()
        self._runs: dict[str, _Run] = {}
        self._reconnecting = False
        self.reconnects = 0          # how many times the socket was re-opened (for tests/logs)

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> ComfyClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the socket and (if we made it) the HTTP client; fail runs still in flight."""
        if self._closed:
            return
        self._closed = True
        for run in list(self._runs.values()):
            run.finish(ComfyConnectionError(
                f"The connection to ComfyUI at {self.base_url} was closed by the app"
                f"{run.where()}.", server=self.base_url))
        self._reader = None
        tasks = [t for t in self._tasks if t is not asyncio.current_task() and not t.done()]
        for task in tasks:
            if not task.cancelling():   # a second cancel would cut the first one's clean-up
                task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        await self._close_socket()
        await super().aclose()

    @property
    def server_features(self) -> dict:
        """The server's ``feature_flags`` reply on the current socket ({} before/without one)."""
        return dict(self._dispatcher.server_features)

    @property
    def connected(self) -> bool:
        return self._ws is not None and self._reader is not None and not self._reader.done()

    async def connect(self) -> None:
        """Open the socket (if it is not open) and start the reader."""
        async with self._ws_lock:
            if self.connected:
                return
            await self._close_socket()
            self._ws = await self._open_socket(self.timeout)
            self._start_reader(self._ws)

    def _start_reader(self, ws: ClientConnection) -> None:
        task = asyncio.create_task(self._read_loop(ws), name=f"comfy-reader {self.base_url}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self._reader = task

    async def _open_socket(self, timeout: float) -> ClientConnection:
        if self._closed:
            raise ComfyConnectionError(f"The client for ComfyUI at {self.base_url} is closed.",
                                       server=self.base_url)
        url = ws_url(self.base_url, self.client_id)
        try:
            ws = await connect(url, compression=None, max_size=MAX_FRAME, open_timeout=timeout,
                               close_timeout=min(timeout, 5), ping_interval=20, ping_timeout=20,
                               max_queue=256)
        except (TimeoutError, OSError, InvalidHandshake, InvalidURI) as exc:
            reason = connect_reason(exc)
            raise ComfyConnectionError(
                f"Cannot open the progress socket of ComfyUI at {self.base_url} ({reason}). "
                "Check the address and that the server is running.", server=self.base_url,
                reason=reason) from None
        self._dispatcher.server_features = {}
        if self.preview_metadata:
            try:
                await asyncio.wait_for(ws.send(json.dumps(FEATURE_FLAGS)), timeout)
            except (TimeoutError, ConnectionClosed, OSError):
                await self._close_ws(ws)
                raise ComfyConnectionError(
                    f"The progress socket of ComfyUI at {self.base_url} closed right after "
                    "opening.", server=self.base_url) from None
        return ws

    async def _close_ws(self, ws: ClientConnection | None) -> None:
        if ws is None:
            return
        try:
            await asyncio.wait_for(ws.close(), 6)
        except (TimeoutError, OSError, ConnectionClosed):
            pass

    async def _close_socket(self) -> None:
        ws, self._ws = self._ws, None
        await self._close_ws(ws)

    async def _read_loop(self, ws: ClientConnection) -> None:
        while True:
            try:
                async for message in ws:
                    self._on_message(message)
            except ConnectionClosed:
                pass
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a bad frame must not kill the reader
                logger.exception("ComfyUI reader for {} failed on a message", self.base_url)
                continue
            break
        # The socket is gone.
        if self._closed:
            return
        if not self._runs:
            # Nobody is waiting: close it and let the next run() reconnect.
            if self._ws is ws:
                self._ws = None
            await self._close_ws(ws)
            self._reader = None
            return
        await self._reconnect(ws)

    async def _reconnect(self, old: ClientConnection) -> None:
        """Reconnect with backoff (old socket closed first: the server's same-clientId quirk),
        then reconcile every run in flight through /queue and /history."""
        self._reconnecting = True
        try:
            logger.info("ComfyUI socket to {} dropped with {} run(s) in flight; reconnecting",
                        self.base_url, len(self._runs))
            async with self._ws_lock:          # run() waits instead of opening a second socket
                reconnected = await self._reopen(old)
        finally:
            self._reconnecting = False
        if not reconnected:
            return
        for run in list(self._runs.values()):
            if not run.finished.done() and run.posted:
                try:
                    await self._reconcile(run)
                except ComfyConnectionError as exc:
                    run.finish(self._lost(run, exc))
                except ComfyError as exc:
                    run.finish(exc)

    def _lost(self, run: _Run, cause: ComfyConnectionError) -> ComfyConnectionError:
        reason = cause.reason or "no answer"
        return ComfyConnectionError(
            f"ComfyUI at {self.base_url} stopped answering{run.where()} ({reason}). Is the "
            "server still running?", server=self.base_url, reason=reason)

    async def _reopen(self, old: ClientConnection) -> bool:
        if self._ws is old:
            self._ws = None
        await self._close_ws(old)
        attempts = 0
        new_ws: ClientConnection | None = None
        for delay in self.reconnect_delays or (0.5,):
            await asyncio.sleep(delay)
            if self._closed:
                return False
            attempts += 1
            try:
                new_ws = await self._open_socket(min(self.timeout, 10.0))
                break
            except ComfyConnectionError:
                continue
        if new_ws is None:
            for run in list(self._runs.values()):
                run.finish(ComfyConnectionError(
                    f"ComfyUI at {self.base_url} stopped answering{run.where()}: the "
                    f"connection was lost and {attempts} attempt(s) to reconnect failed. "
                    "Is the server still running?", server=self.base_url))
            self._reader = None
            return False
        self.reconnects += 1
        self._ws = new_ws
        self._start_reader(new_ws)
        return True

    def _on_message(self, message: str | bytes) -> None:
        if isinstance(message, bytes):
            routed = self._dispatcher.feed_binary(message)
        else:
            try:
                decoded = json.loads(message)
            except ValueError:
                return
            routed = self._dispatcher.feed_text(decoded)
            if isinstance(decoded, Mapping):
                # Any message naming one of our prompts proves it is alive (progress_state too).
                data = decoded.get("data")
                pid = data.get("prompt_id") if isinstance(data, Mapping) else None
                if pid in self._runs:
                    self._runs[pid].last_activity = time.monotonic()
        for tracker, event in routed:
            run = self._runs.get(tracker.prompt_id)
            if run is None:
                continue
            run.last_activity = time.monotonic()
            if event is None:
                run.finish()
            elif run.on_event is not None and not run.finished.done():
                try:
                    run.on_event(event)
                except Exception:  # noqa: BLE001 - a broken callback must not stop the reader
                    logger.exception("on_event callback failed for {}", event)

    # ------------------------------------------------------------------ runs

    async def run(self, graph: dict, *, prompt_id: str | None = None,
                  extra_data: dict | None = None,
                  on_event: Callable[[RunEvent], None] | None = None) -> RunResult:
        """Queue ``graph`` and follow it to the end. Raises the errors of ``errors.py``."""
        prompt_id = prompt_id or str(uuid.uuid4())
        if prompt_id in self._runs:
            raise ValueError(f"prompt id {prompt_id} is already running on this client")
        await self.connect()
        run = _Run(prompt_id, graph, self.base_url, on_event)
        self._runs[prompt_id] = run
        self._dispatcher.add(run.tracker)
        try:
            await self._post(run, graph, extra_data)
            if run.cancel_requested and not run.finished.done():
                await self._cancel_posted(run)
            await self._wait(run)
            if run.cancel_requested and not run.tracker.error:
                # Cancelled, but ComfyUI finished before the interrupt took effect: the caller
                # asked for no result, so it gets none.
                raise ComfyInterrupted(
                    f"The job was cancelled; ComfyUI at {self.base_url} had already finished it.",
                    server=self.base_url, node_id=None)
            return await self._result(run)
        finally:
            self._runs.pop(prompt_id, None)
            self._dispatcher.remove(prompt_id)
            if not run.finished.done():
                run.finished.cancel()
            elif not run.finished.cancelled():
                run.finished.exception()     # mark as retrieved

    async def _post(self, run: _Run, graph: dict, extra_data: dict | None) -> None:
        body = {"prompt": graph, "client_id": self.client_id, "prompt_id": run.prompt_id,
                "extra_data": dict(extra_data or {})}
        response = await self._request("POST", "/prompt", json=body, ok=(200, 400))
        if response.status_code == 400:
            try:
                data = response.json()
            except ValueError:
                raise self._http_error("POST", "/prompt", response) from None
            raise validation_error_from_body(self.base_url, data, graph)
        data = self._json(response, "POST /prompt")
        run.posted = True
        run.last_activity = time.monotonic()
        node_errors = data.get("node_errors") if isinstance(data, Mapping) else None
        if node_errors:
            # Partly valid: ComfyUI queued only the valid outputs. We never want half a
            # workflow: take it back, then report every problem.
            try:
                await self._discard(run.prompt_id)
            except ComfyError:
                logger.warning("could not take back partly valid prompt {}", run.prompt_id)
            error = validation_error_from_body(self.base_url, {"node_errors": node_errors}, graph)
            raise ComfyValidationError(error.message.replace("refused the workflow",
                                                             "refused part of the workflow", 1),
                                       server=self.base_url, problems=error.problems,
                                       error_type="prompt_outputs_failed_validation")
        server_id = data.get("prompt_id") if isinstance(data, Mapping) else None
        if server_id and str(server_id) != run.prompt_id:
            # A server that ignores client-chosen ids: follow the id it gave.
            logger.warning("ComfyUI at {} renamed prompt {} to {}", self.base_url,
                           run.prompt_id, server_id)
            self._dispatcher.remove(run.prompt_id)
            self._runs.pop(run.prompt_id, None)
            run.prompt_id = run.tracker.prompt_id = str(server_id)
            self._runs[run.prompt_id] = run
            self._dispatcher.add(run.tracker)

    async def _discard(self, prompt_id: str) -> None:
        state = await self.queue()
        if prompt_id in state.pending:
            await self.delete_queued([prompt_id])
            state = await self.queue()
        if prompt_id in state.running:
            await self.interrupt(prompt_id)

    async def _wait(self, run: _Run) -> None:
        """Wait for the run to end; poll the server when the socket has been quiet too long."""
        failures = 0
        while True:
            idle = time.monotonic() - run.last_activity
            wait = max(0.05, self.liveness_interval - idle)
            done, _ = await asyncio.wait({run.finished}, timeout=wait)
            if done:
                run.finished.result()          # raises the run's error, if any
                return
            if time.monotonic() - run.last_activity < self.liveness_interval:
                continue
            if self._reconnecting:
                continue                        # the reconnect loop reconciles (bounded)
            try:
                await self._reconcile(run)
                failures = 0
                if run.history is not None and self._ws is not None:
                    # It ended and the open socket never said so: ComfyUI no longer routes
                    # our client id to it (the reconnect quirk). Close it; the reader
                    # reconnects (runs in flight) or the next run() does.
                    logger.info("ComfyUI socket to {} went silent; reopening it", self.base_url)
                    await self._close_ws(self._ws)
            except ComfyConnectionError as exc:
                failures += 1
                if failures >= 2:
                    raise self._lost(run, exc) from None
            except ComfyError as exc:
                run.finish(exc)
            run.last_activity = time.monotonic()
            if not self.connected and not self._reconnecting and not run.finished.done():
                try:
                    await self.connect()
                except ComfyConnectionError:
                    pass

    async def _reconcile(self, run: _Run) -> None:
        """Ask /history and /queue where the prompt is; finish the run if it ended or is gone."""
        pid = run.prompt_id
        entry = await self.history(pid)
        if entry is None:
            state = await self.queue()
            if pid in state.running or pid in state.pending:
                return                           # still queued or running: keep following
            entry = await self.history(pid)      # it may have finished between the two calls
        if entry is None:
            if run.cancel_requested:
                run.finish(interrupted_error(self.base_url, None, run.tracker.graph))
                return
            run.finish(ComfyConnectionError(
                f"ComfyUI at {self.base_url} no longer knows this job{run.where()}; the server "
                "was probably restarted. Try again.", server=self.base_url))
            return
        status = entry.get("status") or {}
        if isinstance(status, Mapping) and status.get("completed") is False \
                and status.get("status_str") not in ("success", "error"):
            return
        run.history = entry
        run.tracker.done = True
        run.finish()

    async def _result(self, run: _Run) -> RunResult:
        entry = run.history
        deadline = time.monotonic() + min(self.timeout, 5.0)
        while entry is None:
            try:
                entry = await self.history(run.prompt_id)
            except ComfyConnectionError as exc:
                reason = exc.reason or "no answer"
                raise ComfyConnectionError(
                    f"ComfyUI at {self.base_url} finished the job but stopped answering before "
                    f"its results could be read ({reason}).", server=self.base_url,
                    reason=reason) from None
            if entry is not None:
                break
            if time.monotonic() > deadline:
                raise ComfyConnectionError(
                    f"ComfyUI at {self.base_url} finished the job but has no history for it "
                    "(was the server restarted?).", server=self.base_url)
            await asyncio.sleep(0.05)
        graph = run.tracker.graph
        if run.tracker.error is not None:
            raise run.tracker.error
        messages = history_messages(entry)
        for kind, data in messages:
            if kind == "execution_error":
                raise execution_error(self.base_url, data, graph)
            if kind == "execution_interrupted":
                raise interrupted_error(self.base_url, data, graph)
        status = entry.get("status") or {}
        if isinstance(status, Mapping) and status.get("status_str") == "error":
            raise ComfyError(f"ComfyUI at {self.base_url} reports that the job failed, without "
                             "saying why.", server=self.base_url)
        cached = list(run.tracker.cached)
        for kind, data in messages:
            if kind == "execution_cached":
                cached.extend(str(n) for n in data.get("nodes") or () if str(n) not in cached)
        return RunResult(prompt_id=run.prompt_id, images=images_from_history(entry),
                         cached=tuple(cached), history=entry)

    async def cancel(self, prompt_id: str) -> None:
        """Interrupt the prompt if it runs, delete it if it waits; its run() raises
        ComfyInterrupted. A prompt that already ended is left alone."""
        run = self._runs.get(prompt_id)
        if run is not None:
            run.cancel_requested = True
            if not run.posted:
                return                       # run() cancels it right after posting
            await self._cancel_posted(run)
            return
        await self._discard(prompt_id)

    async def _cancel_posted(self, run: _Run) -> None:
        pid = run.prompt_id
        state = await self.queue()
        if pid in state.pending:
            await self.delete_queued([pid])
            state = await self.queue()
            if pid not in state.running:
                # Deleted while waiting: no socket message will ever come for it.
                run.finish(interrupted_error(self.base_url, None, run.tracker.graph))
                return
        if pid in state.running:
            await self.interrupt(pid)
            return
        # Neither queued nor running: it ended, or ends now. Let history decide.
        await self._reconcile(run)


__all__ = ["FEATURE_FLAGS", "MAX_FRAME", "ComfyClient"]
