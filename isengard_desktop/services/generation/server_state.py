"""The state of one ComfyUI server as the pool keeps it (:class:`Server`, main thread only),
and what of it the user sees (:func:`significant`)."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

from ...core.comfy.jobs import ServerState, ServerStatus
from ...core.comfy.routing import ServerView

__all__ = ["VRAM_STEP", "Server", "server_label", "significant"]

VRAM_STEP = 256 * 1024 * 1024     # free-VRAM changes smaller than this are not announced


def significant(statuses: tuple[ServerStatus, ...]) -> tuple:
    return tuple((s.key, s.url, s.label, s.state, s.gpu_name, s.vram_total,
                  round(s.vram_free / VRAM_STEP), s.queue_length, s.message, s.tier)
                 for s in statuses)


def server_label(url: str) -> str:
    parts = urlsplit(url if "://" in url else "http://" + url)
    return parts.netloc or url


class Server:
    """Mutable state of one server (main thread only)."""

    def __init__(self, key: str, url: str, label: str, kind: str) -> None:
        self.key = key
        self.url = url
        self.label = label
        self.kind = kind
        self.client: Any = None          # ComfyClient
        self.http: Any = None            # httpx.AsyncClient we made for the client (closed by us)
        self.state = ServerState.OFFLINE if kind == "remote" else ServerState.STOPPED
        self.message = "" if kind == "remote" else "ComfyUI is not started."
        self.gpu_name = ""
        self.vram_total = 0
        self.vram_free = 0
        self.queue_length = 0
        self.object_info: dict | None = None
        self.models: dict[str, frozenset[str]] | None = None
        self.loaded_model = ""
        self.in_flight = 0
        self.polling = False
        self.info_task: asyncio.Future | None = None
        self.info_queued: asyncio.Future | None = None   # a re-read waiting for info_task
        self.queue_asked = 0          # /queue reads sent (stamps), and the newest one applied
        self.queue_applied = 0
        self.tasks: set[asyncio.Future] = set()   # polls and fetches using the client
        self.removed = False
        self.last_ok = 0.0
        self.tier = ""                   # final | standard | draft (the pool sets it)
        self.sec_per_picture = 0.0       # measured (moving average); 0 = not measured yet

    @property
    def healthy(self) -> bool:
        return self.state in (ServerState.READY, ServerState.BUSY)

    def status(self) -> ServerStatus:
        state = self.state
        if state in (ServerState.READY, ServerState.BUSY):
            state = ServerState.BUSY if (self.queue_length or self.in_flight) else ServerState.READY
        return ServerStatus(self.key, self.url, self.label, self.kind, state, self.gpu_name,
                            self.vram_total, self.vram_free, self.queue_length, self.message,
                            self.tier)

    def view(self) -> ServerView:
        return ServerView(self.key, self.label, self.kind, self.healthy, self.state,
                          self.message, self.models, self.loaded_model, self.in_flight,
                          self.queue_length)
