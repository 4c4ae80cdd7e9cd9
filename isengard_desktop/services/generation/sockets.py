"""Closing the generation service's network connections when no asyncio loop runs any more.

At app quit the service's clients normally close on the running loop. When ``shutdown()``
comes after the loop stopped (``__main__`` closes its qasync loop before ``ctx.shutdown()``;
a test's loop fixture may be torn down before the app), the transports' own close can never
run: it needs loop callbacks. :func:`close_transports_now` closes their sockets synchronously
instead, so nothing leaks (and no "unclosed transport" warning fires when they are collected).

It relies on two CPython asyncio details present in the selector loops since 3.4
(``loop._transports``: fd -> transport; ``transport._sock``) and skips, never raises, where
they are missing.
"""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any
from collections.abc import Iterable
from urllib.parse import urlsplit

from loguru import logger

__all__ = ["cancel_quietly", "close_transports_now", "url_peer"]

_LOOPBACK = {"127.0.0.1", "::1"}


def url_peer(url: str) -> tuple[str, int]:
    """(host, port) a client for ``url`` connects to; host "" when it is a name other than
    localhost (then any address on that port matches)."""
    parts = urlsplit(url if "://" in url else "http://" + url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        port = 0
    host = (parts.hostname or "").lower()
    if host == "localhost":
        return "localhost", port
    try:
        return str(ipaddress.ip_address(host)), port
    except ValueError:
        return "", port


def _matches(peer: Any, wanted: set[tuple[str, int]]) -> bool:
    if not isinstance(peer, tuple) or len(peer) < 2:
        return False
    try:
        host, port = str(ipaddress.ip_address(str(peer[0]).split("%")[0])), int(peer[1])
    except ValueError:
        return False
    for want_host, want_port in wanted:
        if want_port != port:
            continue
        if want_host == "" or want_host == host or (want_host == "localhost"
                                                    and host in _LOOPBACK):
            return True
    return False


def close_transports_now(loop: asyncio.AbstractEventLoop,
                         peers: Iterable[tuple[str, int]]) -> int:
    """Close, synchronously, ``loop``'s socket transports connected to one of ``peers``
    (see :func:`url_peer`); returns how many. For a loop that is closed, stopped, or about
    to be torn down. On a loop that is not closed, a transport already closing is left to
    the callback that finishes its close; closed ones ignore later close()/abort() calls."""
    wanted = set(peers)
    transports = getattr(loop, "_transports", None)
    if not wanted or transports is None:
        return 0
    closed = 0
    try:
        candidates = list(transports.items())
    except Exception:            # a weak dict changing under us: nothing we can do
        return 0
    for fd, transport in candidates:
        sock = getattr(transport, "_sock", None)
        if sock is None:
            continue
        try:
            if not _matches(transport.get_extra_info("peername"), wanted):
                continue
            if not loop.is_closed():
                if transport.is_closing():   # its connection_lost callback closes it
                    continue
                loop._remove_reader(fd)      # type: ignore[attr-defined]
                loop._remove_writer(fd)      # type: ignore[attr-defined]
            transport._closing = True        # later close() and abort() do nothing
            transport._conn_lost += 1
            sock.close()
            transport._sock = None           # its __del__ would warn and close it again
            closed += 1
        except Exception as exc:
            logger.debug("could not close a connection at shutdown: {}", exc)
    return closed


def cancel_quietly(task: asyncio.Future) -> None:
    """``task.cancel()``, ignoring a closed loop (cancelling then needs the loop to run)."""
    try:
        task.cancel()
    except RuntimeError:
        pass
