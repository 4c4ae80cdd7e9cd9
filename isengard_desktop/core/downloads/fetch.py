"""Fetch one file: ``<dest>.part`` with HTTP Range resume, retries, stall detection and SHA-256.

- Resume: an existing ``.part`` is hashed first (on a worker thread), then ``Range: bytes=N-``
  is sent. 206 with a ``Content-Range`` starting at N appends; 200 means the server ignored
  the Range, so the ``.part`` is restarted from zero; 416 means N is at or past the end: the
  ``.part`` is kept when its size is the file's size (then checked like any finished file),
  otherwise it is restarted from zero.
- Retries: network errors, 5xx/429, a body that ends early and stalls are retried with
  exponential backoff (``backoff_s`` · 2ⁿ, at most ``backoff_max_s``), ``retries`` times.
  401/403/404 and a wrong size or hash are not retried.
- Stall: httpx's read timeout is ``stall_s`` — no byte for that long on the socket ends the
  attempt (30 s by default; tests make it short).
- SHA-256 is computed while writing (write + hash of chunk N run on a worker thread while
  chunk N+1 arrives) and checked at the end: a mismatch deletes the ``.part`` and names the
  file. The finished file is fsynced and renamed onto ``dest`` atomically (``os.replace``).
- Free disk space is checked before the body is written (``shutil.disk_usage``).
- A ``dest`` that is already there with the expected size (and hash, when known) is kept and
  nothing is fetched.
- Redirects are followed here (``follow_redirects`` off), asking :class:`HostTokens` again on
  each hop, so a token never reaches a host it is not meant for. Logs carry host and path
  only, never query strings (pre-signed CDN URLs) or headers.

Why not ``huggingface_hub.hf_hub_download``: it resumes and checks hashes, but it owns its
progress (tqdm) and threads, keeps its own cache layout (blobs + symlinks) instead of the
ComfyUI folder we write to, reads ``HF_HUB_OFFLINE``/env tokens on its own, and knows nothing
of Civitai or plain URLs. One small fetcher over httpx (already ours) serves every host with
our Progress, our stall rule and our token rule.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shutil
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urljoin, urlsplit

import httpx
from loguru import logger

from .errors import DownloadError
from .tokens import CIVITAI_HOSTS, HF_HOSTS, HostTokens, host_of

__all__ = ["FetchConfig", "FetchProgress", "FetchResult", "FetchSpec", "fetch", "format_bytes",
           "hash_file", "part_path"]

MB = 1024 * 1024
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
_UNSATISFIED = re.compile(r"bytes \*/(\d+)")


@dataclass(frozen=True)
class FetchSpec:
    """What to fetch: ``size`` (bytes) and ``sha256`` (lower-case hex) are checked when known
    (0 / "" = unknown); ``label`` names the file in messages (default: the file name)."""

    url: str
    dest: Path
    size: int = 0
    sha256: str = ""
    label: str = ""

    @property
    def name(self) -> str:
        return self.label or self.dest.name


@dataclass
class FetchConfig:
    """Tunables (defaults are the app's; tests shorten the times)."""

    chunk_size: int = MB
    stall_s: float = 30.0
    connect_timeout_s: float = 30.0
    retries: int = 5
    backoff_s: float = 1.0
    backoff_max_s: float = 30.0
    max_redirects: int = 10
    disk_margin: int = 64 * MB
    disk_usage: Callable[[Path], Any] = shutil.disk_usage
    tokens: HostTokens = field(default_factory=HostTokens)


@dataclass(frozen=True)
class FetchProgress:
    """Bytes in the ``.part`` so far, the total (0 = unknown), bytes/s over the last seconds,
    seconds left (None = unknown) and bytes fetched from the network by this call."""

    done: int
    total: int
    rate: float
    eta_s: float | None
    fetched: int


@dataclass(frozen=True)
class FetchResult:
    path: Path
    size: int
    sha256: str
    resumed_from: int        # bytes of the .part that were kept at the start
    fetched: int             # bytes that came over the network in this call


class _Retry(Exception):
    """One attempt failed in a way a later attempt may not: ``kind`` for the final message."""

    def __init__(self, kind: str, why: str) -> None:
        super().__init__(why)
        self.kind = kind


def part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def format_bytes(n: float) -> str:
    if n >= 1024 * MB:
        return f"{n / (1024 * MB):.2f} GB"
    return f"{n / MB:.1f} MB"


def hash_file(path: Path, digest: Any | None = None, block: int = 4 * MB) -> Any:
    """Feed ``path`` into ``digest`` (a new sha256 by default) and return it (blocking)."""
    digest = digest if digest is not None else hashlib.sha256()
    with open(path, "rb", buffering=0) as fh:
        while chunk := fh.read(block):
            digest.update(chunk)
    return digest


def _safe_url(url: str) -> str:
    """Host and path only: pre-signed query strings stay out of the logs."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def gated_message(spec: FetchSpec, url: str, status: int, had_token: bool) -> str:
    host = host_of(url)
    parts = urlsplit(url)
    if host in HF_HOSTS or host_of(spec.url) in HF_HOSTS or "/resolve/" in parts.path:
        segments = [s for s in urlsplit(spec.url).path.split("/") if s]
        page = f"{urlsplit(spec.url).scheme}://{urlsplit(spec.url).netloc}/" + "/".join(segments[:2])
        token_hint = ("the Hugging Face token was sent but has no access: check that the token "
                      "in Settings → Hugging Face token is a read token of the account that "
                      "accepted the licence."
                      if had_token else
                      "No Hugging Face token is set: create a read token at "
                      "https://huggingface.co/settings/tokens and paste it in Settings → "
                      "Hugging Face token.")
        return (f"{spec.name}: Hugging Face refused the download (HTTP {status}); it is a "
                f"gated model. Open {page} while logged in, accept its licence, then "
                f"{token_hint[0].lower()}{token_hint[1:]} Then press Retry.")
    if host in CIVITAI_HOSTS or host_of(spec.url) in CIVITAI_HOSTS:
        return (f"{spec.name}: Civitai refused the download (HTTP {status}). Create an API key "
                "at https://civitai.com/user/account and paste it in Settings → Civitai API "
                "token, then press Retry.")
    return (f"{spec.name}: {host} refused the download (HTTP {status}): the file needs a "
            "login this app does not have a token for.")


def _check_disk(spec: FetchSpec, config: FetchConfig, needed: int) -> None:
    folder = spec.dest.parent
    free = config.disk_usage(folder).free
    if needed + config.disk_margin > free:
        raise DownloadError(
            "disk_full",
            f"Not enough free disk space for {spec.name}: it needs {format_bytes(needed)} more, "
            f"but only {format_bytes(free)} is free on the drive of {folder}. Free some space "
            "or choose another models folder, then press Retry.")


class _Rate:
    """Bytes/s over a sliding window of a few seconds."""

    def __init__(self, window_s: float = 3.0) -> None:
        self.window_s = window_s
        self.samples: deque[tuple[float, int]] = deque()

    def add(self, now: float, done: int) -> float:
        self.samples.append((now, done))
        while len(self.samples) > 2 and now - self.samples[0][0] > self.window_s:
            self.samples.popleft()
        t0, d0 = self.samples[0]
        return (done - d0) / (now - t0) if now > t0 else 0.0


async def fetch(client: httpx.AsyncClient, spec: FetchSpec, config: FetchConfig | None = None,
                on_progress: Callable[[FetchProgress], None] | None = None) -> FetchResult:
    """Download ``spec.url`` to ``spec.dest`` (see the module text). Raises
    :class:`DownloadError` when it fails for good; cancelling it keeps the ``.part`` (pause)."""
    config = config or FetchConfig()
    io = ThreadPoolExecutor(1, thread_name_prefix="download-io")
    try:
        return await _Fetch(client, spec, config, on_progress, io).run()
    finally:
        io.shutdown(wait=False)


class _Fetch:
    def __init__(self, client: httpx.AsyncClient, spec: FetchSpec, config: FetchConfig,
                 on_progress: Callable[[FetchProgress], None] | None,
                 io: ThreadPoolExecutor) -> None:
        self.client, self.spec, self.config = client, spec, config
        self.on_progress = on_progress
        self.io = io
        self.loop = asyncio.get_running_loop()
        self.part = part_path(spec.dest)
        self.offset = 0
        self.digest: Any = hashlib.sha256()
        self.total = spec.size
        self.fetched = 0
        self.rate = _Rate()

    async def _in_io(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await self.loop.run_in_executor(self.io, fn, *args)

    async def _restart_from_zero(self, why: str) -> None:
        logger.info("download {}: {}; starting again from zero", self.spec.name, why)
        await self._in_io(self.part.unlink, True)
        self.offset = 0
        self.digest = hashlib.sha256()

    async def run(self) -> FetchResult:
        spec, config = self.spec, self.config
        have, part_size = await self._in_io(_look, spec.dest, self.part)
        if have is not None and spec.size and have == spec.size:
            # already here (an earlier run, or the user's copy): checked, never fetched again
            digest = (await self._in_io(hash_file, spec.dest)).hexdigest()
            if not spec.sha256 or digest == spec.sha256.lower():
                logger.info("download {}: already present, checked; nothing fetched", spec.name)
                return FetchResult(spec.dest, have, digest, have, 0)
        if part_size is not None:
            self.offset = part_size
            if spec.size and self.offset > spec.size:
                await self._restart_from_zero("the partial file is larger than the file")
            elif self.offset:
                self.digest = await self._in_io(hash_file, self.part, self.digest)
        resumed_from = self.offset
        if spec.size:
            _check_disk(spec, config, spec.size - self.offset)
        attempt = 0
        while True:
            try:
                done = await self._attempt()
            except _Retry as exc:
                attempt += 1
                if attempt > config.retries:
                    raise DownloadError(exc.kind, self._final_message(exc)) from None
                delay = min(config.backoff_s * 2 ** (attempt - 1), config.backoff_max_s)
                logger.info("download {}: {} (attempt {} of {}); retrying in {:.1f} s",
                            spec.name, exc, attempt, config.retries + 1, delay)
                await asyncio.sleep(delay)
                continue
            if done:
                break
        digest = self.digest.hexdigest()
        if spec.sha256 and digest != spec.sha256.lower():
            await self._in_io(self.part.unlink, True)
            raise DownloadError(
                "hash_mismatch",
                f"{spec.name}: the downloaded file is damaged or not the expected one (SHA-256 "
                f"{digest[:12]}… instead of {spec.sha256[:12]}…). The partial file was deleted; "
                "press Retry to download it again.")
        await self._in_io(_finish, self.part, spec.dest)
        logger.info("download {}: done, {} ({} fetched, resumed from {})", spec.name,
                    format_bytes(self.offset), format_bytes(self.fetched),
                    format_bytes(resumed_from))
        return FetchResult(spec.dest, self.offset, digest, resumed_from, self.fetched)

    def _final_message(self, exc: _Retry) -> str:
        name, tries = self.spec.name, self.config.retries + 1
        if exc.kind == "stalled":
            return (f"{name}: the download stalled (no data for {self.config.stall_s:g} s) "
                    f"{tries} times. Check your connection and press Retry; it goes on from "
                    f"{format_bytes(self.offset)}.")
        return (f"{name}: the download failed {tries} times ({exc}). Press Retry to go on from "
                f"{format_bytes(self.offset)}.")

    async def _open(self) -> httpx.Response:
        """Send the GET (with Range when resuming), following redirects hop by hop."""
        url = self.spec.url
        timeout = httpx.Timeout(self.config.stall_s, connect=self.config.connect_timeout_s)
        for _hop in range(self.config.max_redirects + 1):
            headers = {"Accept-Encoding": "identity"}
            if self.offset:
                headers["Range"] = f"bytes={self.offset}-"
            headers.update(self.config.tokens.headers_for(url))
            request = self.client.build_request("GET", url, headers=headers, timeout=timeout)
            response = await self.client.send(request, stream=True, follow_redirects=False)
            if not response.is_redirect:
                return response
            location = response.headers.get("location", "")
            await response.aclose()
            if not location:
                raise _Retry("http", f"HTTP {response.status_code} redirect without a Location")
            url = urljoin(url, location)
            logger.debug("download {}: redirected to {}", self.spec.name, _safe_url(url))
        raise DownloadError("redirects", f"{self.spec.name}: more than "
                            f"{self.config.max_redirects} redirects from {_safe_url(self.spec.url)}")

    async def _attempt(self) -> bool:
        """One request. True when the .part holds the whole file; raises _Retry to try again."""
        try:
            response = await self._open()
        except httpx.TimeoutException as exc:
            raise _Retry("stalled", f"no answer for {self.config.stall_s:g} s") from exc
        except httpx.TransportError as exc:
            raise _Retry("network", f"{type(exc).__name__}: {exc}") from exc
        try:
            return await self._body(response)
        finally:
            await response.aclose()

    async def _body(self, response: httpx.Response) -> bool:
        spec, status = self.spec, response.status_code
        url = str(response.request.url)
        if status in (401, 403):
            raise DownloadError("gated", gated_message(
                spec, url, status, bool(response.request.headers.get("Authorization"))))
        if status == 404:
            raise DownloadError("not_found", f"{spec.name}: {_safe_url(url)} answered 404 (not "
                                "found); the file may have moved. Update the app's catalogue.")
        if status == 416:
            match = _UNSATISFIED.match(response.headers.get("content-range", ""))
            total = int(match.group(1)) if match else spec.size
            if total and self.offset == total:
                self.total = total
                return True           # the .part is already complete: checked like any file
            await self._restart_from_zero(f"the server refused to resume at {self.offset} (416)")
            raise _Retry("http", "HTTP 416 on resume")
        if status == 429 or status >= 500:
            raise _Retry("http", f"HTTP {status} from {host_of(url)}")
        if status not in (200, 206):
            raise DownloadError("http", f"{spec.name}: {host_of(url)} answered HTTP {status}.")
        length = int(response.headers.get("content-length", "0") or 0)
        if status == 206:
            match = _CONTENT_RANGE.match(response.headers.get("content-range", ""))
            if not match or int(match.group(1)) != self.offset:
                await self._restart_from_zero("the server sent another range than asked")
                raise _Retry("http", "unexpected Content-Range")
            total = int(match.group(3)) if match.group(3) != "*" else 0
        else:
            if self.offset:
                await self._restart_from_zero("the server does not resume (200 to a Range)")
            total = length
        if total:
            if spec.size and total != spec.size:
                raise DownloadError(
                    "size_mismatch",
                    f"{spec.name}: the server's file is {total} bytes, the catalogue expects "
                    f"{spec.size}. The source changed; the app's catalogue needs an update.")
            self.total = total
            _check_disk(spec, self.config, total - self.offset)
        await self._stream(response)
        if self.total and self.offset < self.total:
            raise _Retry("network", f"the connection ended at {self.offset} of {self.total} bytes")
        if not self.total:
            self.total = self.offset
        return True

    async def _stream(self, response: httpx.Response) -> None:
        """Write the body: pieces as the network gives them are gathered to ``chunk_size`` and
        written + hashed on the io thread while the next ones arrive. When the connection
        drops or stalls, what was received is still written, so a resume re-fetches nothing."""
        opening = self.loop.run_in_executor(self.io, open, self.part, "ab", 0)
        try:
            fh: BinaryIO = await asyncio.shield(opening)
        except asyncio.CancelledError:       # paused while opening: close it when it opens
            opening.add_done_callback(_close_opened)
            raise
        pending: asyncio.Future[None] | None = None
        digest = self.digest
        pieces: list[bytes] = []
        gathered = 0
        chunk_size = self.config.chunk_size

        async def flush() -> None:
            nonlocal pending, pieces, gathered
            if pending is not None:
                await pending
                pending = None
            if gathered:
                data = pieces[0] if len(pieces) == 1 else b"".join(pieces)
                pieces, gathered = [], 0
                pending = self.loop.run_in_executor(self.io, _write, fh, digest, data)

        try:
            try:
                async for piece in response.aiter_raw():
                    pieces.append(piece)
                    gathered += len(piece)
                    self.offset += len(piece)
                    self.fetched += len(piece)
                    if gathered >= chunk_size:
                        await flush()
                        if self.on_progress is not None:
                            self._report()
            finally:
                await flush()                    # what arrived is kept, even on a drop
                if pending is not None:
                    await asyncio.wait([pending])
                    pending.result()
            if self.on_progress is not None:
                self._report()
        except httpx.TimeoutException as exc:
            raise _Retry("stalled", f"no data for {self.config.stall_s:g} s") from exc
        except httpx.TransportError as exc:
            raise _Retry("network", f"{type(exc).__name__}: {exc}") from exc
        finally:
            fh.close()

    def _report(self) -> None:
        assert self.on_progress is not None
        rate = self.rate.add(time.monotonic(), self.offset)
        eta = (self.total - self.offset) / rate if rate > 0 and self.total else None
        self.on_progress(FetchProgress(self.offset, self.total, rate, eta, self.fetched))


def _look(dest: Path, part: Path) -> tuple[int | None, int | None]:
    """Create the folder; the sizes of ``dest`` and the ``.part`` (None: not there)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    sizes: list[int | None] = []
    for path in (dest, part):
        try:
            sizes.append(path.stat().st_size)
        except FileNotFoundError:
            sizes.append(None)
    return sizes[0], sizes[1]


def _close_opened(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is None:
        future.result().close()


def _write(fh: BinaryIO, digest: Any, chunk: bytes) -> None:
    view = memoryview(chunk)
    while view:
        written = fh.write(view)        # unbuffered: a short write is possible, go on
        view = view[written or 0:]
    digest.update(chunk)


def _finish(part: Path, dest: Path) -> None:
    with open(part, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(part, dest)
    try:
        dir_fd = os.open(dest.parent, os.O_RDONLY)
    except OSError:
        return                      # Windows: directories cannot be opened for fsync
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
