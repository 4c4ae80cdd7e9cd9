"""The ComfyUI servers the generation service can use: the managed local ones and remote URLs.

On a machine with one GPU (or none) there is one managed ComfyUI (key ``local``). With two or
more GPUs (:meth:`ServerPool.set_gpus`) there is one managed ComfyUI per GPU (keys
``gpu<index>``), each pinned to its card through the environment — ``CUDA_VISIBLE_DEVICES``
(NVIDIA) or ``HIP_VISIBLE_DEVICES`` (AMD), numbered as our GPU list numbers them because the
app's entry sets ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` (``core/hardware/gpu.py``
``use_pci_bus_order``) — with its own port, log
(``logs/comfyui/gpu<index>.log``) and restart policy, all reading the same models folders
(each writes the same extra-model-paths YAML). The variables are set rather than passing
ComfyUI's ``--cuda-device``: that flag only sets the same variables before torch loads
(Comfy-Org/ComfyUI main.py:74-78 at 002f2bed: ``CUDA_VISIBLE_DEVICES``,
``HIP_VISIBLE_DEVICES`` and ``ASCEND_RT_VISIBLE_DEVICES`` = the index; flag defined in
comfy/cli_args.py:52 at a125cd84), and the environment also works with ComfyUI versions or
forks without the flag. Every server (managed or remote) has a tier (``final`` /
``standard`` / ``draft``, :mod:`...core.comfy.tiers`): Settings' choice, else the default
from the cards (most VRAM = final), ``final`` for a single managed server, ``standard`` for
a remote one.

:class:`ServerPool` keeps one :class:`~..core.comfy.client.ComfyClient` per server, polls
each one's health every few seconds (``/system_stats`` + ``/queue``; a server's ``/queue``
also right after a job ends there, :meth:`ServerPool.poll_queue`), fetches its
``/object_info`` once when it becomes healthy (and again on :meth:`ServerPool.refresh`, whose
answer is always read after the refresh was asked for), and emits ``changed`` with fresh
:class:`ServerStatus` values only when something the user can see changed (not on every poll).
Its polls and fetches run on the pool's :class:`~..tasks.TaskOwner` (they need the running
loop); :meth:`ServerPool.aclose` (app quit, on the loop) stops the managed process, cancels
them and closes every client through its own ``aclose()``. The managed server's process is a
:class:`~.comfy_server.ComfyServer`; its readiness probe fetches ``/object_info`` through the
same client, so the model lists are known the moment it turns ready.

Signals:
    changed(tuple[ServerStatus, ...]): the servers' states changed.
    models_changed(str): a server's model lists (object_info) were (re)read; its key.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine, Iterable
from typing import Any

from loguru import logger
from PySide6.QtCore import QObject, QTimer, Signal

from ...core.comfy.jobs import ServerState, ServerStatus
from ...core.comfy.routing import ServerView, models_from_object_info
from ...core.comfy.tiers import DEFAULT_TIER, default_tiers, gpu_server_key, valid_tier
from ...core.paths import AppPaths
from ..tasks import TaskOwner, cancel_once, wait_ended
from .comfy_server import ComfyServer
from .server_state import Server, server_label, significant

__all__ = ["MANAGED_KEY", "ServerPool"]

MANAGED_KEY = "local"


class ServerPool(QObject):
    """Servers, their clients and health. See the module docstring."""

    changed = Signal(object)
    models_changed = Signal(str)

    def __init__(self, paths: AppPaths, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.paths = paths
        # tunables (tests shorten them)
        self.poll_interval_s = 3.0
        self.poll_timeout_s = 5.0
        self.info_timeout_s = 60.0
        self.client_timeout_s = 30.0
        self.client_liveness_s = 5.0
        self.client_reconnect_delays: tuple[float, ...] = (0.2, 0.5, 1, 2, 5)
        self._servers: dict[str, Server] = {}
        self._order: list[str] = []
        self._last: tuple[ServerStatus, ...] | None = None
        self._tasks = TaskOwner("ComfyUI servers")             # polls and fetches
        self._closers = TaskOwner("ComfyUI client closes")     # never cancelled
        self._closed = False
        self.gpus: tuple[Any, ...] = ()       # GpuInfo of this machine (set_gpus)
        self.gpus_known = True                # False while detection runs: no managed start
        self.tiers: dict[str, str] = {}       # Settings' tier per server key
        self.supervisors: dict[str, ComfyServer] = {}
        self.managed = self._supervisor(MANAGED_KEY)
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.poll_all)

    # -- reads -------------------------------------------------------------------------------
    def get(self, key: str) -> Server | None:
        return self._servers.get(key)

    def servers(self) -> list[Server]:
        return [self._servers[k] for k in self._order if k in self._servers]

    def statuses(self) -> tuple[ServerStatus, ...]:
        return tuple(s.status() for s in self.servers())

    def views(self) -> list[ServerView]:
        return [s.view() for s in self.servers()]

    def healthy(self) -> list[Server]:
        return [s for s in self.servers() if s.healthy and s.object_info is not None]

    def managed_keys(self) -> list[str]:
        """Keys of the managed servers this machine gets: one per GPU with two or more GPUs,
        else the single ``local`` one."""
        if len(self.gpus) >= 2:
            return [gpu_server_key(g.index) for g in self.gpus]
        return [MANAGED_KEY]

    def default_tier(self, key: str, kind: str) -> str:
        if kind == "remote":
            return DEFAULT_TIER
        return default_tiers(self.gpus).get(key, "final")

    def tier_of(self, key: str, kind: str) -> str:
        chosen = self.tiers.get(key, "")
        return chosen if valid_tier(chosen) else self.default_tier(key, kind)

    # -- configuration -----------------------------------------------------------------------
    def set_gpus(self, gpus: Iterable[Any]) -> None:
        """This machine's GPUs (``GpuInfo``: index, name, vram_mb, vendor); applied at the
        next :meth:`configure`."""
        self.gpus = tuple(sorted(gpus, key=lambda g: int(g.index)))
        self.gpus_known = True

    def _supervisor(self, key: str) -> ComfyServer:
        sup = self.supervisors.get(key)
        if sup is None:
            async def probe(url: str, key: str = key) -> dict:
                return await self._probe_managed(key, url)

            sup = ComfyServer(self.paths, key, probe=probe, parent=self)
            sup.state_changed.connect(
                lambda state, message, key=key: self._on_managed_state(key, state, message))
            self.supervisors[key] = sup
        return sup

    def _gpu_env(self, key: str) -> dict[str, str]:
        gpu = next((g for g in self.gpus if gpu_server_key(g.index) == key), None)
        if gpu is None or len(self.gpus) < 2:
            return {}
        name = "HIP_VISIBLE_DEVICES" if str(gpu.vendor) == "amd" else "CUDA_VISIBLE_DEVICES"
        return {name: str(int(gpu.index))}

    def _managed_label(self, key: str) -> str:
        gpu = next((g for g in self.gpus if gpu_server_key(g.index) == key), None)
        if gpu is None or len(self.gpus) < 2:
            return "This computer (managed ComfyUI)"
        return f"This computer · GPU {int(gpu.index)} ({gpu.name})"

    def start(self) -> None:
        self._timer.start(int(self.poll_interval_s * 1000))
        self.poll_all()

    def configure(self, comfyui_folder: str, comfyui_python: str, models_folder: str,
                  remote_urls: Iterable[str], tiers: dict[str, str] | None = None) -> None:
        """Apply Settings: (re)start or stop the managed servers (one per GPU with several
        GPUs), add/remove remote ones, set every server's tier."""
        if self._closed:
            return
        if tiers is not None:
            self.tiers = dict(tiers)
        wanted_managed = self.managed_keys() if comfyui_folder.strip() and self.gpus_known \
            else []
        for key in [k for k, s in self._servers.items() if s.kind == "managed"
                    and k not in wanted_managed]:
            self.supervisors[key].stop()
            self._remove(key)
        for position, key in enumerate(wanted_managed):
            sup = self._supervisor(key)
            env = self._gpu_env(key)
            changed = sup.configure(comfyui_folder, comfyui_python, models_folder)
            if env != sup.extra_env:
                sup.extra_env = env
                changed = True
            if key not in self._servers:
                self._add(Server(key, "", self._managed_label(key), "managed"), at=position)
            if changed and sup.is_running:
                sup.restart()
            elif not sup.is_running and (changed or sup.state == ServerState.STOPPED):
                sup.start()

        wanted: list[str] = []
        remote_urls = list(remote_urls)
        if remote_urls:   # (httpx loads with the client: ~130 ms, not needed without servers)
            from ...core.comfy.api import normalize_url
        for raw in remote_urls:
            try:
                url = normalize_url(raw)
            except ValueError as exc:
                logger.warning("ignoring ComfyUI server {!r}: {}", raw, exc)
                continue
            if url not in wanted:
                wanted.append(url)
        for key in [k for k, s in self._servers.items() if s.kind == "remote"
                    and k not in wanted]:
            self._remove(key)
        for url in wanted:
            if url not in self._servers:
                server = Server(url, url, server_label(url), "remote")
                server.message = "Not contacted yet."
                self._add(server)
                self._ensure_client(server)
                self._tasks.spawn(self._poll(server), also=server.tasks)
        self._order = [k for k in [*wanted_managed, *wanted] if k in self._servers]
        for server in self._servers.values():
            server.tier = self.tier_of(server.key, server.kind)
        self.emit_if_changed()

    def _add(self, server: Server, at: int | None = None) -> None:
        self._servers[server.key] = server
        server.tier = self.tier_of(server.key, server.kind)
        if at is not None:
            self._order.insert(at, server.key)
        else:
            self._order.append(server.key)

    def _remove(self, key: str) -> None:
        server = self._servers.pop(key, None)
        if key in self._order:
            self._order.remove(key)
        if server is not None:
            server.removed = True
            self._close_client(server)

    # -- clients -----------------------------------------------------------------------------
    def _ensure_client(self, server: Server) -> Any:
        if server.client is not None and server.client.base_url == server.url:
            return server.client
        self._close_client(server)
        import httpx

        from ...core.comfy.client import ComfyClient

        http = None
        if server.url.startswith("http://"):
            # plain HTTP needs no certificates: this client is made in well under a millisecond
            http = httpx.AsyncClient(verify=False, trust_env=False,
                                     timeout=httpx.Timeout(self.client_timeout_s))
        server.http = http
        server.client = ComfyClient(server.url, http=http, timeout=self.client_timeout_s,
                                    reconnect_delays=self.client_reconnect_delays,
                                    liveness_interval=self.client_liveness_s)
        return server.client

    def _close_client(self, server: Server) -> None:
        """Drop ``server``'s client now; it closes in the background."""
        close = self._detach_client(server)
        if close is not None:
            self._closers.spawn(close)

    def _detach_client(self, server: Server) -> Coroutine[Any, Any, None] | None:
        """Take ``server``'s client away and cancel its requests; returns the coroutine that
        closes it (once those requests ended), or None when it had none."""
        client, http = server.client, server.http
        server.client = server.http = None
        server.info_task = server.info_queued = None
        tasks = [t for t in server.tasks if not t.done()]
        for task in tasks:
            cancel_once(task)
        if client is None:
            return None

        async def close() -> None:
            try:
                if tasks:   # requests in flight end before their connections are closed
                    await asyncio.gather(*tasks, return_exceptions=True)
                await client.aclose()
            finally:
                if http is not None:
                    await http.aclose()

        return close()

    # -- managed server ----------------------------------------------------------------------
    async def _probe_managed(self, key: str, url: str) -> dict:
        server = self._servers.get(key)
        if server is None:
            raise RuntimeError("the managed server was removed")
        server.url = url
        client = self._ensure_client(server)
        task = asyncio.current_task()
        if task is not None:
            server.tasks.add(task)          # so closing the client waits for it
        try:
            info = await asyncio.wait_for(client.object_info(refresh=True),
                                          self.info_timeout_s)
        finally:
            server.tasks.discard(task)
        self._set_object_info(server, info)
        return info

    def _on_managed_state(self, key: str, state: str, message: str) -> None:
        server = self._servers.get(key)
        if server is None:
            return
        if state == ServerState.READY and not self._closed:
            server.url = self.supervisors[key].url
            server.state, server.message = ServerState.READY, ""
            server.last_ok = time.monotonic()
            self._tasks.spawn(self._poll(server), also=server.tasks)
        else:
            was_healthy = server.healthy
            server.state, server.message = ServerState(state), message
            if was_healthy:
                # the process went away: fail runs in flight now so they can be retried
                self._close_client(server)
                server.object_info = server.models = None
                server.queue_length = 0
        self.emit_if_changed()

    # -- polling -----------------------------------------------------------------------------
    def poll_all(self) -> None:
        for server in self.servers():
            if server.polling or self._closed:
                continue
            sup = self.supervisors.get(server.key)
            if server.kind == "managed" and (sup is None or sup.state != ServerState.READY):
                continue      # the process supervisor says when it is up
            self._tasks.spawn(self._poll(server), also=server.tasks)

    async def _poll(self, server: Server) -> None:
        if server.polling or server.removed or self._closed:
            return
        server.polling = True
        try:
            client = self._ensure_client(server)
            stats = await asyncio.wait_for(client.system_stats(), self.poll_timeout_s)
            server.queue_asked += 1
            stamp = server.queue_asked
            queue = await asyncio.wait_for(client.queue(), self.poll_timeout_s)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if server.removed:
                return
            self._poll_failed(server, exc)
        else:
            if server.removed:
                return
            server.gpu_name = stats.gpu_name
            server.vram_total, server.vram_free = stats.vram_total, stats.vram_free
            self._apply_queue(server, stamp, queue.length)
            server.last_ok = time.monotonic()
            came_up = not server.healthy
            if came_up:
                logger.info("ComfyUI server {} is reachable", server.label)
                server.state, server.message = ServerState.READY, ""
            if server.object_info is None or (came_up and server.kind == "remote"):
                self.fetch_object_info(server)   # once each time it becomes healthy
        finally:
            server.polling = False
            self.emit_if_changed()

    def _poll_failed(self, server: Server, exc: BaseException) -> None:
        if isinstance(exc, asyncio.TimeoutError):
            reason = (f"ComfyUI at {server.url} did not answer within "
                      f"{self.poll_timeout_s:g} s.")
        else:
            reason = str(exc) or type(exc).__name__
        if server.kind == "managed":
            if server.healthy:
                server.state, server.message = ServerState.OFFLINE, reason
            return
        if server.healthy:
            logger.warning("ComfyUI server {} went offline: {}", server.label, reason)
        server.state, server.message = ServerState.OFFLINE, reason
        server.queue_length = 0

    def _apply_queue(self, server: Server, stamp: int, length: int) -> None:
        """A /queue answer: kept unless a read sent later was applied already."""
        if stamp > server.queue_applied:
            server.queue_applied = stamp
            server.queue_length = length

    def poll_queue(self, key: str) -> asyncio.Future | None:
        """Read one server's /queue now (a job just ended there), so its state does not
        stay "busy" until the next poll."""
        server = self._servers.get(key)
        if server is None or server.removed or self._closed or not server.healthy \
                or server.client is None:
            return None
        client = server.client

        async def read() -> None:
            server.queue_asked += 1
            stamp = server.queue_asked
            try:
                queue = await asyncio.wait_for(client.queue(), self.poll_timeout_s)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.debug("could not read /queue of {}: {}", server.label, exc)
                return
            if not server.removed and server.healthy:
                self._apply_queue(server, stamp, queue.length)
                self.emit_if_changed()

        return self._tasks.spawn(read(), also=server.tasks)

    def fetch_object_info(self, server: Server, *, fresh: bool = False
                          ) -> asyncio.Future | None:
        """Read the server's /object_info, one request at a time; returns the fetch.

        Without ``fresh`` a fetch already running is returned. With ``fresh`` the answer is
        read after this call: a fetch whose request is already out (it may predate a change
        on the server) is followed by a new one (or one already queued behind it)."""
        current = server.info_task
        busy = current is not None and not current.done()
        if busy and not fresh:
            return current
        if server.removed or self._closed:
            return None
        if busy:
            queued = server.info_queued
            if queued is not None and not queued.done():
                return queued          # its request is not sent yet
        after = current if busy else None

        async def fetch() -> None:
            if after is not None:
                await asyncio.wait({after})           # (waits without cancelling it)
                if server.info_queued is asyncio.current_task():
                    server.info_queued = None
                if server.removed or self._closed:
                    return
            client = self._ensure_client(server)
            try:
                info = await asyncio.wait_for(client.object_info(refresh=True),
                                              self.info_timeout_s)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("could not read /object_info of {}: {}", server.label, exc)
                return
            if not server.removed:
                self._set_object_info(server, info)

        task = self._tasks.spawn(fetch(), also=server.tasks)
        server.info_task = task
        if after is not None:
            server.info_queued = task
        return task

    def _set_object_info(self, server: Server, info: dict) -> None:
        server.object_info = info
        server.models = models_from_object_info(info)
        logger.info("ComfyUI server {}: {} node classes, {} LoRAs", server.label, len(info),
                    len(server.models.get("loras", ())))
        self.models_changed.emit(server.key)

    async def refresh(self, keys: Iterable[str] | None = None) -> None:
        """Re-read /object_info of the healthy servers (all, or ``keys``); when it returns,
        the lists were read after it was called (e.g. a LoRA copied there just before)."""
        wanted = set(keys) if keys is not None else None
        tasks = []
        for server in self.servers():
            if server.healthy and (wanted is None or server.key in wanted):
                task = self.fetch_object_info(server, fresh=True)
                if task is not None:
                    tasks.append(task)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self.emit_if_changed()

    def mark_failed(self, key: str, message: str) -> None:
        """A job found the server gone: show it offline until the next good poll."""
        server = self._servers.get(key)
        if server is None or not server.healthy:
            return
        server.state, server.message = ServerState.OFFLINE, message
        self.emit_if_changed()

    def emit_if_changed(self) -> None:
        """Emit ``changed`` when something the user sees changed (free VRAM only when it
        moved by more than :data:`VRAM_STEP`, not on every poll)."""
        statuses = self.statuses()
        if self._last is None or significant(statuses) != significant(self._last):
            self._last = statuses
            self.changed.emit(statuses)

    # -- shutdown ----------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Stop polling and the managed process tree (blocks briefly), cancel polls and
        fetches. The clients are closed by :meth:`aclose`. Idempotent; never raises."""
        if self._closed:
            return
        self._closed = True
        self._timer.stop()
        for key, sup in self.supervisors.items():
            try:
                sup.shutdown()
            except Exception as exc:     # app quit goes on; the reason is in the log
                logger.opt(exception=exc).error("stopping the managed ComfyUI {} failed", key)
        self._tasks.cancel_all(close=True)
        for sup in self.supervisors.values():
            sup.tasks.cancel_all(close=True)

    async def aclose(self) -> None:
        """App quit, on the running loop: :meth:`shutdown`, then close every client through
        its own ``aclose()`` (each once its requests ended) and wait for that. Idempotent."""
        self.shutdown()
        closes = []
        for server in list(self._servers.values()):
            server.removed = True
            close = self._detach_client(server)
            if close is not None:
                closes.append(close)
        for result in await asyncio.gather(*closes, return_exceptions=True):
            if isinstance(result, Exception):
                logger.warning("closing a ComfyUI client failed: {}", result)
        await wait_ended(self._closers.tasks())     # closes started earlier
        await self._closers.aclose()
        await self._tasks.aclose()
        for sup in self.supervisors.values():
            await sup.tasks.aclose()
