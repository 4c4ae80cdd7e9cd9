"""A cancelled ComfyUI request leaves no connection open (ComfyAPI against the ComfyUI double
over real sockets).

httpcore closes the pool's expired connections (here: the server went away) at the start and
end of a request, in clean-up it shields from anyio cancellation only; a caller cancelled
with ``Task.cancel()`` while that clean-up waited used to cut it short, and the connections
already taken out of the pool stayed open (the leak behind the generation tests' "unclosed
socket" warnings). The cancel is tried at every point of a request's first steps."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket

import pytest

from isengard_desktop.core.comfy.api import ComfyAPI
from isengard_desktop.core.comfy.errors import ComfyConnectionError
from tests.helpers.comfy_double import make_comfy_double  # noqa: F401  (fixture)

KEEPALIVE = 3          # idle connections left in the pool before the server goes away
CANCEL_POINTS = 12     # loop iterations after which the request is cancelled: 1, 2, ...


def open_sockets() -> dict[int, socket.socket]:
    """Every socket of this process that is still open, by id. ``type(o)``, not
    ``isinstance``: isinstance falls back to ``o.__class__``, which some objects of libraries
    other tests imported (torch's deprecated ``reduce_op``) answer with a warning."""
    return {id(o): o for o in gc.get_objects()
            if issubclass(type(o), socket.socket) and o.fileno() != -1}


async def cancelled_request_leaves(make_double, steps: int) -> list[str]:
    """Sockets left open by a request cancelled ``steps`` loop iterations after it started,
    once the API is closed."""
    double = make_double()
    before = set(open_sockets())
    api = ComfyAPI(double.url, timeout=5.0)
    try:
        await asyncio.gather(*(api.queue() for _ in range(KEEPALIVE)))   # kept alive, idle
        double.kill()                     # their server is gone: the pool finds them expired
        await asyncio.sleep(0.05)
        task = asyncio.ensure_future(api.queue())
        for _ in range(steps):
            await asyncio.sleep(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, ComfyConnectionError):
            await task
    finally:
        await api.aclose()
    for _ in range(5):                    # a transport's close ends in a loop callback
        await asyncio.sleep(0)
    return [repr(s) for key, s in open_sockets().items() if key not in before]


@pytest.mark.asyncio
async def test_a_cancelled_request_leaves_no_connection_open(make_comfy_double):
    leaks = {steps: await cancelled_request_leaves(make_comfy_double, steps)
             for steps in range(1, CANCEL_POINTS + 1)}
    assert {steps: left for steps, left in leaks.items() if left} == {}


@pytest.mark.asyncio
async def test_aclose_stops_a_request_in_flight_and_waits_for_it(make_comfy_double):
    """Closing the API while a request waits for its answer ends that request (with a clear
    error) before the HTTP client closes: nothing is left open."""
    double = make_comfy_double(latency=3.0)      # every answer comes 3 s late
    before = set(open_sockets())
    api = ComfyAPI(double.url, timeout=5.0)
    task = asyncio.ensure_future(api.queue())
    await asyncio.sleep(0.2)
    assert not task.done()
    await asyncio.wait_for(api.aclose(), 2)
    assert task.done()
    with pytest.raises(ComfyConnectionError, match=r"was closed during GET /queue"):
        task.result()
    assert [s for key, s in open_sockets().items() if key not in before] == []
