"""Prompt refinement against the Ollama double over real sockets: the three stages, the
structure stage's retry and error, Ollama down, a missing model, and a cancel mid-stream that
leaves no connection open."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket

import pytest

from isengard_desktop.core.ollama import (OllamaClient, OllamaError, OllamaModelMissing,
                                          OllamaNotRunning)
from isengard_desktop.core.prompt_refine import (CONCEPT_FIELDS, RefineError, expand,
                                                 final_prompt, structure)
from tests.helpers.ollama_double import OllamaDouble, ollama_double  # noqa: F401

MODEL = "llama3.2:latest"


def open_sockets(server_port: int) -> dict[int, socket.socket]:
    """This process's open sockets, less the double's own (it runs in a thread here)."""
    found = {}
    for o in gc.get_objects():
        if issubclass(type(o), socket.socket) and o.fileno() != -1:
            with contextlib.suppress(OSError):
                name = o.getsockname()
                if not (isinstance(name, tuple) and name[1] == server_port):
                    found[id(o)] = o
    return found


def chat_of(client: OllamaClient, model: str = MODEL):
    def chat(messages, *, format=None):
        return client.chat(model, messages, format=format)
    return chat


@pytest.mark.asyncio
async def test_tags_lists_installed_models(ollama_double: OllamaDouble):
    ollama_double.models = ["llama3.2:latest", "qwen2.5:7b"]
    client = OllamaClient(ollama_double.url)
    try:
        assert await client.tags() == ["llama3.2:latest", "qwen2.5:7b"]
    finally:
        await client.aclose()


@pytest.mark.asyncio
@pytest.mark.parametrize("family, tags", [("sdxl", True), ("flux", False)])
async def test_three_stages_end_to_end(ollama_double: OllamaDouble, family: str, tags: bool):
    client = OllamaClient(ollama_double.url)
    chunks: list[str] = []
    try:
        chat = chat_of(client)
        text = await expand(chat, "ohwx woman reading in a cafe", trigger="ohwx",
                            emit=chunks.append)
        assert len(chunks) > 1 and "".join(chunks).strip() == text
        assert "reading in a cafe" in text
        concept = await structure(chat, text, trigger="ohwx")
        assert set(concept) == set(CONCEPT_FIELDS)
        assert "ohwx" in concept["character"]
        prompt = await final_prompt(chat, concept, family=family, trigger="ohwx")
    finally:
        await client.aclose()
    assert "ohwx" in prompt
    assert ("." not in prompt) == tags          # tags: commas only; sentences end with "."
    structure_request = ollama_double.requests[1]
    assert structure_request["format"]["required"] == list(CONCEPT_FIELDS)
    assert structure_request["stream"] is True
    assert all(r["model"] == MODEL for r in ollama_double.requests)


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["syntax", "schema"])
async def test_invalid_structure_is_retried_once_with_the_error(ollama_double, kind):
    ollama_double.bad_json, ollama_double.bad_kind = 1, kind
    retries: list[str] = []
    client = OllamaClient(ollama_double.url)
    try:
        concept = await structure(chat_of(client), "a knight on a horse at dusk",
                                  on_retry=retries.append)
    finally:
        await client.aclose()
    assert set(concept) == set(CONCEPT_FIELDS)
    assert len(retries) == 1
    assert ("not valid JSON" if kind == "syntax" else "lacks the field") in retries[0]
    retry_messages = ollama_double.requests[-1]["messages"]
    assert retry_messages[-1]["role"] == "user" and retries[0] in retry_messages[-1]["content"]


@pytest.mark.asyncio
async def test_invalid_structure_twice_is_a_clear_error(ollama_double):
    ollama_double.bad_json = 2
    client = OllamaClient(ollama_double.url)
    try:
        with pytest.raises(RefineError, match=r"did not give usable concept fields twice "
                                              r"\(the answer is not valid JSON"):
            await structure(chat_of(client), "a knight on a horse at dusk")
    finally:
        await client.aclose()
    assert len(ollama_double.requests) == 2


@pytest.mark.asyncio
async def test_ollama_down_says_how_to_start_it(ollama_double):
    ollama_double.stop()
    client = OllamaClient(ollama_double.url)
    try:
        with pytest.raises(OllamaNotRunning, match=r"Ollama is not running at "
                           + ollama_double.url.replace(".", r"\.") + r".*`ollama serve`"):
            await client.tags()
        with pytest.raises(OllamaNotRunning):
            await expand(chat_of(client), "a cat")
    finally:
        await client.aclose()


@pytest.mark.asyncio
async def test_model_missing_gives_the_pull_line(ollama_double):
    client = OllamaClient(ollama_double.url)
    try:
        with pytest.raises(OllamaModelMissing,
                           match=r"model mistral:7b is not installed.*`ollama pull mistral:7b`"):
            await expand(chat_of(client, "mistral:7b"), "a cat")
    finally:
        await client.aclose()


@pytest.mark.asyncio
async def test_cancel_mid_stream_leaves_no_connection_open(ollama_double):
    ollama_double.chunk_delay = 0.2
    before = set(open_sockets(ollama_double.port))
    client = OllamaClient(ollama_double.url)
    got: list[str] = []
    started = asyncio.Event()

    def emit(chunk: str) -> None:
        got.append(chunk)
        started.set()

    task = asyncio.ensure_future(expand(chat_of(client), "a very long idea " * 10, emit=emit))
    await asyncio.wait_for(started.wait(), 5)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert task.cancelled() and len(got) >= 1
    for _ in range(5):                       # a transport's close ends in a loop callback
        await asyncio.sleep(0)
    # closed by the cancel itself (a half-read answer cannot go back to the pool), not later
    # by aclose
    assert [repr(s) for k, s in open_sockets(ollama_double.port).items() if k not in before] == []
    await client.aclose()
    for _ in range(5):
        await asyncio.sleep(0)
    assert [repr(s) for k, s in open_sockets(ollama_double.port).items() if k not in before] == []
    for _ in range(50):                      # the server saw the client go away
        if ollama_double.open_streams == 0:
            break
        await asyncio.sleep(0.05)
    assert ollama_double.open_streams == 0 and ollama_double.cancelled_streams == 1


@pytest.mark.asyncio
async def test_aclose_stops_a_stream_in_flight(ollama_double):
    ollama_double.chunk_delay = 0.3
    before = set(open_sockets(ollama_double.port))
    client = OllamaClient(ollama_double.url)
    task = asyncio.ensure_future(expand(chat_of(client), "a long idea " * 10))
    await asyncio.sleep(0.4)
    await asyncio.wait_for(client.aclose(), 3)
    with pytest.raises(OllamaError, match="was closed during /api/chat"):
        await task
    assert [repr(s) for k, s in open_sockets(ollama_double.port).items() if k not in before] == []
