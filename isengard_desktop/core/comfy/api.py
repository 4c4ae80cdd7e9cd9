"""HTTP side of the ComfyUI client: one ``httpx.AsyncClient`` per server, every endpoint the
app uses, and the mapping of failures to the errors in ``errors.py`` (Qt-free).

:class:`ComfyAPI` is the base of :class:`~isengard_desktop.core.comfy.client.ComfyClient`, which
adds the websocket and runs. Answers follow shared/fixtures/comfyui (ComfyUI 0.3.64).

Cancelling a request: httpcore closes connections (the pool's expired ones, the one a failed
request used) in clean-up it shields with an anyio cancel scope, but asyncio's
``Task.cancel()`` goes through anyio's shields. A caller cancelled while that clean-up waits
(a poll at quit, a ``wait_for`` timeout) therefore cut it short, and the connections it had
already taken out of the pool stayed open with nobody left to close them (a leaked socket,
"unclosed transport" when the loop ends). So every request runs in a task of its own inside
an anyio cancel scope; a cancelled caller cancels that scope (which waits for the shielded
clean-up), waits until the request has ended, then gets its ``CancelledError``.
:meth:`ComfyAPI.aclose` stops the requests still in flight the same way and waits for them
before it closes the HTTP client.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import httpx

from .errors import ComfyConnectionError, ComfyHTTPError
from .types import Device, ImageRef, QueueState, SystemStats, output_animated


def normalize_url(url: str) -> str:
    """``"127.0.0.1:8188/"`` -> ``"http://127.0.0.1:8188"``."""
    url = (url or "").strip()
    if not url:
        raise ValueError("the ComfyUI address is empty")
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) address: {url!r}")
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def ws_url(base: str, client_id: str) -> str:
    parts = urlsplit(base)
    scheme = "wss" if parts.scheme == "https" else "ws"
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + "/ws",
                       f"clientId={client_id}", ""))


def _node_sort_key(node_id: str) -> tuple[int, int | str]:
    return (0, int(node_id)) if node_id.isdigit() else (1, node_id)


def images_from_history(entry: Mapping[str, Any]) -> tuple[ImageRef, ...]:
    """Every image of every output node of a ``/history/<id>`` entry, in node-id order."""
    outputs = entry.get("outputs") or {}
    images: list[ImageRef] = []
    if not isinstance(outputs, Mapping):
        return ()
    for node_id in sorted((str(k) for k in outputs), key=_node_sort_key):
        out = outputs.get(node_id) or {}
        if isinstance(out, Mapping):
            animated = output_animated(out)
            images.extend(ImageRef.from_json(i, animated) for i in out.get("images") or ()
                          if isinstance(i, Mapping))
    return tuple(images)


def history_messages(entry: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    status = entry.get("status") or {}
    out = []
    for item in (status.get("messages") or []) if isinstance(status, Mapping) else []:
        if isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[1], Mapping):
            out.append((str(item[0]), item[1]))
    return out


def connect_reason(exc: BaseException) -> str:
    """A short reason for a failed connection ("connection refused", "unknown host", ...)."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cur, socket.gaierror):
            return "unknown host name"
        if isinstance(cur, (TimeoutError, asyncio.TimeoutError)):
            return "timed out"
        if isinstance(cur, OSError) and cur.strerror:
            return cur.strerror.lower()
        cur = cur.__cause__ or cur.__context__
    text = str(exc)
    if "refused" in text.lower() or text == "All connection attempts failed":
        return "connection refused"
    return text or type(exc).__name__


#: How long :meth:`ComfyAPI.aclose` waits for stopped requests to end (they end at once: the
#: wait covers httpcore's clean-up, which only closes sockets).
REQUEST_END_TIMEOUT_S = 5.0


async def _wait_ended(tasks: list[asyncio.Task[Any]], timeout: float | None) -> bool:
    """Wait until ``tasks`` are done (at most ``timeout`` s), through cancellations of the
    waiting task (what they clean up must not be left half done); True if it was cancelled
    meanwhile (the caller raises CancelledError once it has finished its own clean-up)."""
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    cancelled = False
    while True:
        pending = [t for t in tasks if not t.done()]
        left = None if deadline is None else deadline - loop.time()
        if not pending or (left is not None and left <= 0):
            return cancelled
        try:
            await asyncio.wait(pending, timeout=left)
        except asyncio.CancelledError:
            cancelled = True


class ComfyAPI:
    """The HTTP endpoints of one ComfyUI server. Every call has the client's timeout."""

    def __init__(self, base_url: str, *, http: httpx.AsyncClient | None = None,
                 timeout: float = 30.0) -> None:
        self.base_url = normalize_url(base_url)
        self.timeout = float(timeout)
        self._own_http = http is None
        # Creating an AsyncClient costs 100-300 ms: one per server, made once.
        self._http = http or httpx.AsyncClient(timeout=httpx.Timeout(self.timeout))
        self._object_info: dict | None = None
        self._closed = False
        # requests in flight: their tasks and the cancel scopes that stop them (module docstring)
        self._requests: dict[asyncio.Task[httpx.Response | None], anyio.CancelScope] = {}

    async def aclose(self) -> None:
        """Refuse new requests, stop those in flight and wait until they have ended (their
        connections are closed or back in the pool by then), then close the HTTP client if
        we made it."""
        self._closed = True
        requests = list(self._requests.items())
        for _task, scope in requests:
            scope.cancel()
        cancelled = await _wait_ended([task for task, _scope in requests],
                                      REQUEST_END_TIMEOUT_S)
        if self._own_http:
            await self._http.aclose()
        if cancelled:
            raise asyncio.CancelledError

    async def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """``self._http.request(...)``, stopped through an anyio cancel scope (see the module
        docstring). Raises CancelledError once the request has ended if the caller was
        cancelled, and ComfyConnectionError if :meth:`aclose` stopped it."""
        scope = anyio.CancelScope()

        async def request() -> httpx.Response | None:
            with scope:
                return await self._http.request(method, url, **kwargs)
            return None          # stopped through the scope

        task = asyncio.get_running_loop().create_task(
            request(), name=f"ComfyUI {method} {url}")
        self._requests[task] = scope
        task.add_done_callback(lambda t: self._requests.pop(t, None))
        try:
            response = await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.done():
                scope.cancel()
                await _wait_ended([task], None)  # httpcore's clean-up finishes first
            if not task.cancelled():
                task.exception()                 # (retrieved: the caller wants none)
            raise
        if response is None:
            raise ComfyConnectionError(
                f"The client for ComfyUI at {self.base_url} was closed during {method} "
                f"{url[len(self.base_url):] or '/'}.", server=self.base_url,
                reason="closed by the app")
        return response

    def _url(self, path: str) -> str:
        return self.base_url + path

    async def _request(self, method: str, path: str, *, ok: tuple[int, ...] = (200,),
                       **kwargs: Any) -> httpx.Response:
        if self._closed:
            raise ComfyConnectionError(
                f"The client for ComfyUI at {self.base_url} is already closed.",
                server=self.base_url)
        url = self._url(path)
        try:
            response = await self._send(method, url, **kwargs)
        except httpx.ConnectTimeout:
            raise ComfyConnectionError(
                f"Cannot reach ComfyUI at {self.base_url}: the connection timed out after "
                f"{self.timeout:g} s. Check the address and that the server is running.",
                server=self.base_url, reason="timed out") from None
        except httpx.ConnectError as exc:
            reason = connect_reason(exc)
            raise ComfyConnectionError(
                f"Cannot reach ComfyUI at {self.base_url} ({reason}). Check the address and "
                "that the server is running.", server=self.base_url, reason=reason) from None
        except httpx.TimeoutException:
            raise ComfyConnectionError(
                f"ComfyUI at {self.base_url} did not answer {method} {path} within "
                f"{self.timeout:g} s.", server=self.base_url,
                reason=f"no answer within {self.timeout:g} s") from None
        except httpx.HTTPError as exc:
            raise ComfyConnectionError(
                f"The connection to ComfyUI at {self.base_url} failed during {method} {path} "
                f"({type(exc).__name__}: {exc or 'no details'}).", server=self.base_url,
                reason="the connection broke") from None
        if response.status_code not in ok:
            raise self._http_error(method, path, response)
        return response

    def _http_error(self, method: str, path: str, response: httpx.Response) -> ComfyHTTPError:
        body = response.text[:2000]
        snippet = " ".join(body.split())[:200]
        reason = response.reason_phrase or ""
        text = (f"ComfyUI at {self.base_url} answered {method} {path} with HTTP "
                f"{response.status_code}{(' ' + reason) if reason else ''}")
        text += f": {snippet}" if snippet else "."
        if not text.endswith("."):
            text += "."
        return ComfyHTTPError(text, server=self.base_url, status=response.status_code, body=body)

    def _json(self, response: httpx.Response, what: str) -> Any:
        try:
            return response.json()
        except ValueError:
            raise ComfyHTTPError(
                f"ComfyUI at {self.base_url} sent an answer to {what} that is not JSON "
                f"(is this really a ComfyUI server?).", server=self.base_url,
                status=response.status_code, body=response.text[:2000]) from None

    async def system_stats(self) -> SystemStats:
        data = self._json(await self._request("GET", "/system_stats"), "/system_stats")
        system = data.get("system") or {} if isinstance(data, Mapping) else {}
        devices = []
        for d in (data.get("devices") or []) if isinstance(data, Mapping) else []:
            if not isinstance(d, Mapping):
                continue
            index = d.get("index")
            devices.append(Device(name=str(d.get("name", "")), type=str(d.get("type", "")),
                                  index=index if isinstance(index, int) else None,
                                  vram_total=int(d.get("vram_total") or 0),
                                  vram_free=int(d.get("vram_free") or 0)))
        return SystemStats(comfyui_version=str(system.get("comfyui_version", "") or ""),
                           os=str(system.get("os", "") or ""),
                           python_version=str(system.get("python_version", "") or ""),
                           pytorch_version=str(system.get("pytorch_version", "") or ""),
                           devices=tuple(devices))

    async def object_info(self, *, refresh: bool = False) -> dict:
        if self._object_info is None or refresh:
            data = self._json(await self._request("GET", "/object_info"), "/object_info")
            if not isinstance(data, dict):
                raise ComfyHTTPError(f"ComfyUI at {self.base_url} sent an unexpected /object_info "
                                     "answer.", server=self.base_url, status=200)
            self._object_info = data
        return self._object_info

    async def models(self, folder: str) -> list[str]:
        response = await self._request("GET", f"/models/{folder}", ok=(200, 404))
        if response.status_code == 404:
            return []
        data = self._json(response, f"/models/{folder}")
        return [str(x) for x in data] if isinstance(data, list) else []

    async def queue(self) -> QueueState:
        data = self._json(await self._request("GET", "/queue"), "/queue")

        def ids(items: Any) -> tuple[str, ...]:
            out = []
            for item in items or []:
                if isinstance(item, (list, tuple)) and len(item) > 1:
                    out.append(str(item[1]))
            return tuple(out)

        data = data if isinstance(data, Mapping) else {}
        return QueueState(running=ids(data.get("queue_running")),
                          pending=ids(data.get("queue_pending")))

    async def history(self, prompt_id: str) -> dict | None:
        """The ``/history/<id>`` entry, or None when the server does not know the prompt."""
        data = self._json(await self._request("GET", f"/history/{prompt_id}"), "/history")
        entry = data.get(prompt_id) if isinstance(data, Mapping) else None
        return entry if isinstance(entry, dict) else None

    async def upload_image(self, data: bytes, filename: str, *, subfolder: str = "",
                           overwrite: bool = False) -> str:
        form = {"type": "input", "overwrite": "true" if overwrite else "false"}
        if subfolder:
            form["subfolder"] = subfolder
        response = await self._request("POST", "/upload/image",
                                       files={"image": (filename, data, "application/octet-stream")},
                                       data=form)
        body = self._json(response, "/upload/image")
        name = str(body.get("name") or filename)
        sub = str(body.get("subfolder") or "")
        self._object_info = None       # LoadImage's list of files changed
        return f"{sub}/{name}" if sub else name

    async def fetch_image(self, ref: ImageRef) -> bytes:
        params = {"filename": ref.filename, "subfolder": ref.subfolder, "type": ref.type}
        response = await self._request("GET", "/view", params=params, ok=(200, 400, 404))
        if response.status_code != 200:
            where = f"{ref.type}/{ref.subfolder + '/' if ref.subfolder else ''}{ref.filename}"
            raise ComfyHTTPError(f"ComfyUI at {self.base_url} has no image {where} "
                                 f"(HTTP {response.status_code}).", server=self.base_url,
                                 status=response.status_code, body=response.text[:2000])
        return response.content

    async def interrupt(self, prompt_id: str | None = None) -> None:
        body = {"prompt_id": prompt_id} if prompt_id else {}
        await self._request("POST", "/interrupt", json=body)

    async def delete_queued(self, prompt_ids: Sequence[str]) -> None:
        await self._request("POST", "/queue", json={"delete": list(prompt_ids)})

    # ------------------------------------------------------------------ socket


__all__ = [
    "ComfyAPI",
    "connect_reason",
    "history_messages",
    "images_from_history",
    "normalize_url",
    "ws_url",
]
