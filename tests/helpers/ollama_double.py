"""A test double of Ollama's HTTP API (aiohttp, in a thread of its own, on a free loopback port).

Answers as Ollama does (docs/api.md): ``GET /api/tags`` → ``{"models": [{"name", "model",
"size", "digest", "details": {…}}]}``; ``POST /api/chat`` with ``{"model", "messages",
"stream", "format"}`` → NDJSON lines ``{"model", "created_at", "message": {"role":
"assistant", "content"}, "done": false}`` and a last ``{"done": true, "done_reason": "stop",
…counts}``, or one JSON object when ``"stream": false``; an unknown model → HTTP 404
``{"error": "model \\"x\\" not found, try pulling it first"}``.

What it answers: a system prompt holding "JSON object" (the structure stage) gets a JSON
concept built from the last user message (unless ``bad_json`` says otherwise); a system
prompt holding "prompt" gets a prompt made from the fields; anything else an expanded
description. Chunks are a few words each, ``chunk_delay`` seconds apart.

Switches (attributes, changeable while it runs): ``down`` (``stop()`` / ``start()``),
``models`` (installed names), ``bad_json`` (how many structure answers are invalid first:
0, 1, 2…), ``bad_kind`` ("syntax" or "schema"), ``chunk_delay``. ``requests`` records every
chat request body, ``tags_requests`` counts /api/tags; ``open_streams`` counts streams in progress,
``cancelled_streams`` those the client left before the end.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web

FIELDS = ("character", "action", "outfit", "setting", "lighting", "camera", "composition",
          "style", "mood")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class OllamaDouble:
    def __init__(self, *, models: list[str] | None = None, chunk_delay: float = 0.0) -> None:
        self.models = list(models if models is not None else ["llama3.2:latest"])
        self.chunk_delay = chunk_delay
        self.bad_json = 0
        self.bad_kind = "syntax"
        self.requests: list[dict[str, Any]] = []
        self.open_streams = 0
        self.cancelled_streams = 0
        self.tags_requests = 0
        self.port = _free_port()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- life --------------------------------------------------------------------------------
    def start(self) -> str:
        ready = threading.Event()

        def main() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            app = web.Application()
            app.router.add_get("/api/tags", self._tags)
            app.router.add_post("/api/chat", self._chat)
            self._runner = web.AppRunner(app, shutdown_timeout=0.5)
            loop.run_until_complete(self._runner.setup())
            loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port).start())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=main, name="ollama-double", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the Ollama double did not start")
        return self.url

    def stop(self) -> None:
        """Stop serving (the port then refuses connections: "Ollama is down")."""
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._thread = None

    # -- answers -----------------------------------------------------------------------------
    def _installed(self, name: str) -> bool:
        return name in self.models or f"{name}:latest" in self.models

    async def _tags(self, request: web.Request) -> web.Response:
        self.tags_requests += 1
        return web.json_response({"models": [
            {"name": n, "model": n, "modified_at": "2026-01-01T00:00:00Z", "size": 2019393189,
             "digest": "a80c4f17acd5" + "0" * 52,
             "details": {"format": "gguf", "family": "llama", "parameter_size": "3.2B",
                         "quantization_level": "Q4_K_M"}} for n in self.models]})

    def _answer(self, body: dict[str, Any]) -> str:
        messages = body.get("messages") or []
        system = next((m["content"] for m in messages if m.get("role") == "system"), "")
        last = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")
        if "JSON object" in system:
            assert body.get("format"), "the structure stage must send a format"
            if self.bad_json > 0:
                self.bad_json -= 1
                if self.bad_kind == "schema":
                    return json.dumps({"character": "someone", "action": 3})
                return '{"character": "someone", "action": '
            words = last.split()
            return json.dumps({name: " ".join(words[i::len(FIELDS)]) or name
                               for i, name in enumerate(FIELDS)})
        if "prompt" in system:
            fields = [line.split(":", 1)[1].strip() for line in last.splitlines() if ":" in line]
            if "tags" in system:
                return ", ".join(fields)
            return ". ".join(fields) + "."
        return f"A detailed picture of {last}, in soft morning light, seen from eye level"

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        model = str(body.get("model", ""))
        if not self._installed(model):
            return web.json_response(
                {"error": f'model "{model}" not found, try pulling it first'}, status=404)
        text = self._answer(body)
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        final = {"model": model, "created_at": created,
                 "message": {"role": "assistant", "content": ""}, "done": True,
                 "done_reason": "stop", "total_duration": 1000, "eval_count": len(text)}
        if body.get("stream") is False:
            final["message"]["content"] = text  # type: ignore[index]
            return web.json_response(final)
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        self.open_streams += 1
        try:
            for chunk in _chunks(text):
                if self.chunk_delay:
                    await asyncio.sleep(self.chunk_delay)
                line = {"model": model, "created_at": created,
                        "message": {"role": "assistant", "content": chunk}, "done": False}
                await response.write(json.dumps(line).encode() + b"\n")
            await response.write(json.dumps(final).encode() + b"\n")
            await response.write_eof()
        except ConnectionResetError:             # the client went away (a cancel): as Ollama
            self.cancelled_streams += 1
        finally:
            self.open_streams -= 1
        return response


def _chunks(text: str, size: int = 3) -> Iterator[str]:
    words = text.split(" ")
    for i in range(0, len(words), size):
        yield " ".join(words[i:i + size]) + (" " if i + size < len(words) else "")


@pytest.fixture
def ollama_double() -> Iterator[OllamaDouble]:
    double = OllamaDouble()
    double.start()
    try:
        yield double
    finally:
        double.stop()
