"""A small client for a local Ollama server (Qt-free, async httpx).

Only what prompt refinement needs: :meth:`OllamaClient.tags` (``GET /api/tags``, the
installed models) and :meth:`OllamaClient.chat` (``POST /api/chat``, streamed as NDJSON: one
JSON object a line, ``{"message": {"role": "assistant", "content": "…"}, "done": false}``,
the last one with ``"done": true`` and a ``done_reason``; an error is ``{"error": "…"}``, as
the answer's body with an HTTP status or as a line inside the stream). ``format`` is either
``"json"`` or a JSON schema (Ollama's structured outputs).

Cancelling: as in :mod:`isengard_desktop.core.comfy.api`, the HTTP work runs in a task of its
own inside an anyio cancel scope, so a cancelled reader cancels the scope and waits for
httpcore's clean-up to close the connection (no socket is left open); :meth:`aclose` stops
streams still running the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any

import anyio
import httpx

from .comfy.api import _wait_ended, connect_reason, normalize_url

__all__ = ["DEFAULT_OLLAMA_URL", "OllamaClient", "OllamaError", "OllamaModelMissing",
           "OllamaNotRunning"]

DEFAULT_OLLAMA_URL = "http://127.0.0.1:11434"
#: How long :meth:`OllamaClient.aclose` waits for stopped streams to end.
STREAM_END_TIMEOUT_S = 5.0


class OllamaError(RuntimeError):
    """Ollama answered with an error, or not as Ollama does; the text is for the user."""


class OllamaNotRunning(OllamaError):
    """Nothing answers at the address."""


class OllamaModelMissing(OllamaError):
    """The model asked for is not installed; ``model`` names it."""

    def __init__(self, message: str, model: str) -> None:
        super().__init__(message)
        self.model = model


def _missing(model: str) -> OllamaModelMissing:
    return OllamaModelMissing(
        f"The model {model} is not installed in Ollama: run `ollama pull {model}`.", model)


_END = object()


class OllamaClient:
    """One Ollama server. ``timeout``: seconds to connect and between two streamed lines
    (a model being loaded can take a while before its first line)."""

    def __init__(self, base_url: str = DEFAULT_OLLAMA_URL, *, timeout: float = 120.0,
                 connect_timeout: float = 3.0) -> None:
        self.base_url = normalize_url(base_url)
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=connect_timeout))
        self._streams: dict[asyncio.Task[None], anyio.CancelScope] = {}
        self._closed = False

    # -- errors ------------------------------------------------------------------------------
    def _not_running(self, reason: str) -> OllamaNotRunning:
        return OllamaNotRunning(
            f"Ollama is not running at {self.base_url} ({reason}): start it (`ollama serve`) "
            "or fix the address in Settings.")

    def _http_error(self, path: str, status: int, body: bytes, model: str | None) -> OllamaError:
        try:
            text = str(json.loads(body).get("error", ""))
        except (ValueError, AttributeError):
            text = " ".join(body.decode("utf-8", "replace").split())[:200]
        if model is not None and status == 404 and "not found" in text:
            return _missing(model)
        return OllamaError(f"Ollama at {self.base_url} answered {path} with HTTP {status}"
                           + (f": {text}" if text else "."))

    # -- the work of one request, run in its own task inside a cancel scope ------------------
    async def _run(self, method: str, path: str, body: Mapping[str, Any] | None,
                   out: asyncio.Queue[Any], model: str | None) -> None:
        url = self.base_url + path
        try:
            async with self._http.stream(method, url, json=body) as response:
                if response.status_code != 200:
                    raise self._http_error(path, response.status_code,
                                           await response.aread(), model)
                async for line in response.aiter_lines():
                    if line.strip():
                        out.put_nowait(line)
            out.put_nowait(_END)
        except httpx.ConnectError as exc:
            out.put_nowait(self._not_running(connect_reason(exc)))
        except httpx.ConnectTimeout:
            out.put_nowait(self._not_running("the connection timed out"))
        except httpx.TimeoutException:
            out.put_nowait(OllamaError(f"Ollama at {self.base_url} stopped answering {path} "
                                       "(timed out)."))
        except httpx.HTTPError as exc:
            out.put_nowait(OllamaError(f"The connection to Ollama at {self.base_url} broke "
                                       f"during {path} ({type(exc).__name__})."))
        except OllamaError as exc:
            out.put_nowait(exc)

    async def _lines(self, method: str, path: str, body: Mapping[str, Any] | None = None,
                     model: str | None = None) -> AsyncGenerator[str, None]:
        """The answer's non-empty lines, as they come."""
        if self._closed:
            raise OllamaError(f"The client for Ollama at {self.base_url} is closed.")
        out: asyncio.Queue[Any] = asyncio.Queue()
        scope = anyio.CancelScope()

        async def work() -> None:
            with scope:
                await self._run(method, path, body, out, model)
            out.put_nowait(_END)     # stopped through the scope: the reader stops too

        task = asyncio.get_running_loop().create_task(work(), name=f"Ollama {method} {path}")
        self._streams[task] = scope
        task.add_done_callback(lambda t: self._streams.pop(t, None))
        try:
            while True:
                item = await out.get()
                if item is _END:
                    if self._closed and scope.cancel_called:
                        raise OllamaError(f"The client for Ollama at {self.base_url} was "
                                          f"closed during {path}.")
                    return
                if isinstance(item, OllamaError):
                    raise item
                yield item
        finally:
            if not task.done():
                scope.cancel()
                if await _wait_ended([task], None):  # httpcore's clean-up finishes first
                    raise asyncio.CancelledError

    # -- endpoints ---------------------------------------------------------------------------
    async def tags(self) -> list[str]:
        """Names of the installed models (``"llama3.2:latest"``, …)."""
        text = "".join([line async for line in self._lines("GET", "/api/tags")])
        try:
            models = json.loads(text)["models"]
            return [str(m.get("name") or m["model"]) for m in models]
        except (ValueError, KeyError, TypeError, AttributeError):
            raise OllamaError(f"The server at {self.base_url} answered /api/tags not as "
                              "Ollama does (is this really Ollama?).") from None

    async def chat(self, model: str, messages: Sequence[Mapping[str, str]], *,
                   format: str | Mapping[str, Any] | None = None, stream: bool = True,
                   options: Mapping[str, Any] | None = None,
                   keep_alive: str | None = "5m") -> AsyncGenerator[str, None]:
        """The assistant's answer, in content chunks as Ollama streams them."""
        body: dict[str, Any] = {"model": model, "messages": [dict(m) for m in messages],
                                "stream": stream}
        if format is not None:
            body["format"] = format if isinstance(format, str) else dict(format)
        if options:
            body["options"] = dict(options)
        if keep_alive is not None:
            body["keep_alive"] = keep_alive
        done = False
        async with contextlib.aclosing(self._lines("POST", "/api/chat", body,
                                                   model=model)) as stream_lines:
            async for line in stream_lines:
                if done:            # nothing follows "done" in Ollama: the stream just ends
                    continue
                content, done = self._chat_part(line, model)
                if content:
                    yield content

    def _chat_part(self, line: str, model: str) -> tuple[str, bool]:
        """(content, done) of one NDJSON line of /api/chat; an error line raises."""
        try:
            part = json.loads(line)
        except ValueError:
            raise OllamaError(f"Ollama at {self.base_url} sent a line that is not JSON "
                              f"in /api/chat: {line[:120]!r}") from None
        if not isinstance(part, dict):
            raise OllamaError(f"Ollama at {self.base_url} sent an unexpected line in "
                              f"/api/chat: {line[:120]!r}")
        if "error" in part:
            error = str(part["error"])
            if "not found" in error and model in error:
                raise _missing(model)
            raise OllamaError(f"Ollama stopped the answer: {error}")
        message = part.get("message")
        content = message.get("content") if isinstance(message, dict) else None
        return str(content or ""), bool(part.get("done"))

    async def aclose(self) -> None:
        """Refuse new requests, stop the streams still running, wait for them, close."""
        self._closed = True
        streams = list(self._streams.items())
        for _task, scope in streams:
            scope.cancel()
        cancelled = await _wait_ended([t for t, _s in streams], STREAM_END_TIMEOUT_S)
        await self._http.aclose()
        if cancelled:
            raise asyncio.CancelledError
