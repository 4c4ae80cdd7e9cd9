"""A stand-in download host (Hugging Face / a CDN) with HTTP Range support and fault switches.

Runs an aiohttp server on its own thread and event loop, so sync tests, pytest-asyncio tests,
child processes and the benchmark can all use it. Each file is either bytes or a generated
stream (deterministic, any size, nothing held in memory).

What it answers, as the real hosts do:
- ``Range: bytes=N-`` → 206 with ``Content-Range: bytes N-(size-1)/size`` (RFC 9110 §14.4);
  a start at or past the end → 416 with ``Content-Range: bytes */size`` (RFC 9110 §15.5.17).
- Hugging Face ``/resolve/`` answers a redirect to its CDN host for LFS files; the CDN URL is
  pre-signed and needs no token (``redirect_to``).
- A gated repo without an accepted licence or without a token: 401 (no token) / 403 (token
  but no access) with ``X-Error-Code: GatedRepo`` (``gated``; :func:`gated_refusal`, the one
  refusal the Hub double's API routes use too). huggingface_hub 2.4.0 turns that header into
  ``GatedRepoError`` (``utils/_http.py:888-892``); its example is a 403 for a token without
  access (``errors.py:350-361``), and a 401 comes for gated repos without a token
  (``utils/_http.py:939-941``).

Fault switches (per file, set on :class:`HostedFile`): ``drop_after`` (close the connection
after that many bytes of the body, ``drops`` times), ``range_416`` (answer 416 to any Range
request), ``fail_500`` (answer 500 that many times), ``stall_after`` (send that many bytes,
then nothing for ``stall_s``), ``corrupt`` (flip one byte), ``ignore_range`` (answer 200 with
the whole file even when a Range was asked for), ``redirect_to`` (302 to another URL), ``piece_delay_s`` (a slow host).

Every request is recorded (:class:`RequestLog`): path, Authorization header, range start and
body bytes sent, so tests can assert what was fetched and which host saw a token.

Run as a script (``python -m tests.helpers.download_host --size-mb 1024``) it serves a
generated file ``/big.bin`` and ``/drop.bin`` (drops once) and prints their URLs (the
benchmark uses it in a child process).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import re
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

__all__ = ["DownloadHost", "HostedFile", "RequestLog", "Route", "gated_refusal", "generated_bytes"]

Route = Callable[[web.Request], Awaitable[web.StreamResponse]]

BLOCK = 1024 * 1024
_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


def _block(seed: int) -> bytes:
    """1 MiB of deterministic, non-repeating-looking bytes for a generated file."""
    out = bytearray()
    counter = 0
    while len(out) < BLOCK:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:BLOCK])


def generated_bytes(size: int, seed: int = 1, start: int = 0, end: int | None = None) -> bytes:
    """Bytes ``start:end`` of the generated file of ``size`` (only for small files/tests)."""
    block = _block(seed)
    end = size if end is None else end
    out = bytearray()
    pos = start
    while pos < end:
        off = pos % BLOCK
        take = min(BLOCK - off, end - pos)
        out += block[off:off + take]
        pos += take
    return bytes(out)


def gated_refusal(authorization: str) -> web.Response:
    """The Hub's answer for a gated repo the caller may not read: 401 without an
    ``Authorization`` header, 403 with one, ``X-Error-Code: GatedRepo`` on both (module
    docstring for the citations)."""
    return web.Response(status=401 if not authorization else 403,
                        headers={"X-Error-Code": "GatedRepo",
                                 "X-Error-Message": "Access to this model is restricted."},
                        text='{"error":"Access to this model is restricted."}',
                        content_type="application/json")


@dataclass
class HostedFile:
    """One file the host serves, with its fault switches."""

    data: bytes | None = None
    size: int = 0                      # generated files: their size
    seed: int = 1
    gated: bool = False
    token: str = ""                    # the token that opens a gated file
    drop_after: int = -1
    drops: int = 1
    range_416: bool = False
    fail_500: int = 0
    stall_after: int = -1
    stall_s: float = 3600.0
    corrupt: bool = False
    ignore_range: bool = False
    redirect_to: str = ""
    piece_delay_s: float = 0.0         # a slow host: wait this long between 256 KiB pieces
    sha256: str = field(default="", init=False)

    def __post_init__(self) -> None:
        if self.data is not None:
            self.size = len(self.data)
            self.sha256 = hashlib.sha256(self.data).hexdigest()
        else:
            digest = hashlib.sha256()
            block = _block(self.seed)
            full, rest = divmod(self.size, BLOCK)
            for _ in range(full):
                digest.update(block)
            digest.update(block[:rest])
            self.sha256 = digest.hexdigest()

    def chunks(self, start: int, chunk: int = 256 * 1024):
        """The body from ``start`` in pieces (generated files never held whole)."""
        if self.data is not None:
            for pos in range(start, self.size, chunk):
                yield self.data[pos:pos + chunk]
            return
        block = _block(self.seed)
        pos = start
        while pos < self.size:
            off = pos % BLOCK
            take = min(BLOCK - off, chunk, self.size - pos)
            yield block[off:off + take]
            pos += take


@dataclass
class RequestLog:
    """One request the host answered."""

    host: str
    path: str
    authorization: str
    range_start: int | None
    status: int
    sent: int = 0


class DownloadHost:
    """The server: ``files`` maps a path (``/repo/resolve/main/x.bin``) to a :class:`HostedFile`.

    Use as a context manager (starts/stops the thread). ``url(path)`` uses 127.0.0.1,
    ``url(path, host="localhost")`` the other name of the same server: two "hosts" for the
    redirect tests."""

    def __init__(self, port: int = 0) -> None:
        self.files: dict[str, HostedFile] = {}
        # API answers by (method, exact path) (``tests/helpers/hub_double.py`` adds the Hub's
        # API); ``prefix_routes``: a path prefix's answer for what neither a route nor a file
        # matches (the Hub double's errors for unknown repos and revisions)
        self.routes: dict[tuple[str, str], Route] = {}
        self.prefix_routes: dict[str, Route] = {}
        self.requests: list[RequestLog] = []
        self._port = port
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._lock = threading.Lock()

    # -- set-up ------------------------------------------------------------------------------
    def add(self, path: str, hosted: HostedFile) -> HostedFile:
        self.files[path] = hosted
        return hosted

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def sent_for(self, path: str) -> int:
        """Body bytes sent for ``path`` over all requests so far."""
        with self._lock:
            return sum(r.sent for r in self.requests if r.path == path)

    # -- the handler -------------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        hosted = self.files.get(path)
        auth = request.headers.get("Authorization", "")
        rng = request.headers.get("Range", "")
        match = _RANGE.match(rng) if rng else None
        start = int(match.group(1)) if match else None
        log = RequestLog(request.host.split(":")[0], path, auth, start, 0)
        with self._lock:
            self.requests.append(log)
        route = self.routes.get((request.method, path))
        if route is None and hosted is None:
            route = next((answer for prefix, answer in sorted(
                self.prefix_routes.items(), key=lambda item: -len(item[0]))
                if path.startswith(prefix)), None)
        if route is not None:
            answer = await route(request)
            log.status = answer.status
            return answer
        if request.method != "GET":
            log.status = 405
            return web.Response(status=405, text="Method Not Allowed")
        if hosted is None:
            log.status = 404
            return web.Response(status=404, text="Entry not found")
        if hosted.gated and auth != f"Bearer {hosted.token}":
            refusal = gated_refusal(auth)
            log.status = refusal.status
            return refusal
        if hosted.redirect_to:
            log.status = 302
            raise web.HTTPFound(hosted.redirect_to)
        if hosted.fail_500 > 0:
            hosted.fail_500 -= 1
            log.status = 500
            return web.Response(status=500, text="Internal Server Error")
        size = hosted.size
        if start is not None and (hosted.range_416 or start >= size):
            log.status = 416
            return web.Response(status=416, headers={"Content-Range": f"bytes */{size}"})
        headers = {"Accept-Ranges": "bytes", "ETag": f'"{hosted.sha256}"'}
        if start is None or hosted.ignore_range:
            start = 0
            status = 200
        else:
            status = 206
            headers["Content-Range"] = f"bytes {start}-{size - 1}/{size}"
        headers["Content-Length"] = str(size - start)
        log.status = status
        response = web.StreamResponse(status=status, headers=headers)
        await response.prepare(request)
        pos = start
        for piece in hosted.chunks(start):
            if hosted.stall_after >= 0 and pos + len(piece) > hosted.stall_after:
                head = max(0, hosted.stall_after - pos)
                if head:
                    await response.write(piece[:head])
                    log.sent += head
                await asyncio.sleep(hosted.stall_s)
                return response
            if hosted.drop_after >= 0 and hosted.drops > 0 and pos + len(piece) > hosted.drop_after:
                head = max(0, hosted.drop_after - pos)
                if head:
                    await response.write(piece[:head])
                    log.sent += head
                hosted.drops -= 1
                assert request.transport is not None
                request.transport.close()        # the connection drops mid-body
                return response
            if hosted.corrupt and pos <= size // 2 < pos + len(piece):
                mutable = bytearray(piece)
                mutable[size // 2 - pos] ^= 0xFF
                piece = bytes(mutable)
            await response.write(piece)
            log.sent += len(piece)
            pos += len(piece)
            if hosted.piece_delay_s:
                await asyncio.sleep(hosted.piece_delay_s)
        await response.write_eof()
        return response

    # -- thread ------------------------------------------------------------------------------
    def __enter__(self) -> DownloadHost:
        self._thread = threading.Thread(target=self._serve, name="download-host", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the download host did not start")
        return self

    def __exit__(self, *exc: Any) -> None:
        loop = self._loop
        if loop is not None and self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._handle)
        app.router.add_route("POST", "/{tail:.*}", self._handle)   # API routes only
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", self._port)
        loop.run_until_complete(site.start())
        sockets = site._server.sockets  # type: ignore[union-attr]
        self.port = sockets[0].getsockname()[1]
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mb", type=int, default=64)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--drop-size-mb", type=int, default=32,
                        help="size of /drop.bin, which drops the connection once half way")
    args = parser.parse_args()
    with DownloadHost(args.port) as host:
        hosted = host.add("/big.bin", HostedFile(size=args.size_mb * 1024 * 1024))
        drop_size = args.drop_size_mb * 1024 * 1024
        dropping = host.add("/drop.bin", HostedFile(size=drop_size, seed=2,
                                                    drop_after=drop_size // 2 + 12345))
        print(host.url("/big.bin"), hosted.sha256, hosted.size, flush=True)
        print(host.url("/drop.bin"), dropping.sha256, dropping.size, flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    main()
