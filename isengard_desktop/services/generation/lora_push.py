"""Before a LoRA job: push the character's LoRA to remote servers that have our upload node.

:class:`LoraPusher` (used by :class:`~.jobs.JobRunner`) looks at the healthy remote servers
that could run the job apart from the LoRA, and for each one with an upload token in the OS
keyring (:meth:`~...core.secrets.SecretStore.server_token`) makes the LoRA available there as
``isengard/<file>`` through :func:`~...core.comfy.lora_upload.push_lora` (asked first,
uploaded only when missing, with progress). A file pushed in this session is not asked about
again while the server lists it. Then those servers' model lists are re-read, so routing finds
``isengard/<file>`` and the workflow names it. A server without the node (404) or without a
token is left alone: the routing's "copy the LoRA" message stays. Other refusals (wrong token,
a different file of that name, too large) are kept and added to the job's error when no server
can run it. :meth:`LoraPusher.probe` says ahead of a job whether a server can take pushes, so
the Generate tab counts the LoRA as available there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from functools import partial
from pathlib import Path
from typing import Any

from loguru import logger

from ...core.comfy.lora_upload import (LoraConflict, NoUploadNode, UploadError, check_lora,
                                         push_lora, sha256_of)
from ...core.comfy.routing import ModelNeed, rank_servers, resolve_name
from ...core.types import Progress
from ..ops import await_executor

__all__ = ["LoraPusher"]


class LoraPusher:
    """See the module docstring. ``tokens(url)`` reads the server's upload token (blocking:
    it is called on ``io``); None or "" means no token."""

    def __init__(self, pool: Any, io: Executor,
                 tokens: Callable[[str], str | None] | None = None) -> None:
        self.pool = pool
        self.io = io
        self.tokens = tokens
        self._hashes: dict[tuple[str, int, int], str] = {}      # (path, size, mtime) -> sha
        self._pushed: dict[tuple[str, str], str] = {}           # (url, sha) -> listed name
        self._http: Any = None
        # server key -> (LoRAs can be pushed there, why not): read by probe()
        self.state: dict[str, tuple[bool, str]] = {}

    async def aclose(self) -> None:
        http, self._http = self._http, None
        if http is not None:
            await http.aclose()

    def _client(self, server: Any) -> Any:
        if server.http is not None:          # plain-HTTP servers: the pool's own client
            return server.http
        if self._http is None:
            import httpx

            self._http = httpx.AsyncClient(timeout=httpx.Timeout(60.0))
        return self._http

    async def _sha(self, path: Path) -> str:
        st = await await_executor(self.io, path.stat)
        key = (str(path), st.st_size, st.st_mtime_ns)
        if key not in self._hashes:
            self._hashes[key] = await await_executor(self.io, lambda: sha256_of(path))
        return self._hashes[key]

    async def probe(self, server: Any) -> tuple[bool, str]:
        """Whether LoRAs can be pushed to ``server`` (a token is set, the node answers and
        takes it); kept in :attr:`state`. A server without the node or token: (False, "")."""
        result: tuple[bool, str] = (False, "")
        tokens = self.tokens
        if tokens is not None and server.kind == "remote":
            try:
                token = await await_executor(self.io, partial(tokens, server.url))
            except Exception as exc:       # keyring locked or refusing
                token, result = None, (False, f"the upload token could not be read ({exc})")
            if token:
                try:
                    await check_lora(self._client(server), server.url, token,
                                     "probe.safetensors", "0" * 64)
                    result = (True, "")
                except NoUploadNode:
                    result = (False, "")
                except UploadError as exc:
                    result = (False, str(exc))
        self.state[server.key] = result
        return result

    async def push(self, lora_path: str, needs: list[ModelNeed], job_id: str,
                   progress: Callable[[Progress], None]
                   ) -> tuple[list[str], dict[str, str]]:
        """Push the LoRA where it can help. Returns the refusals (messages to show if the job
        then finds no server) and the servers that must not run it (key -> why: a different
        file of the LoRA's name is in their ``isengard/`` folder)."""
        blocked: dict[str, str] = {}
        if self.tokens is None:
            return [], blocked
        others = [n for n in needs if n.folder != "loras"]
        routes, _ = rank_servers(self.pool.views(), others,
                                 model=others[0].name if others else "")
        candidates = [self.pool.get(r.server) for r in routes]
        candidates = [s for s in candidates if s is not None and s.kind == "remote"]
        if not candidates:
            return [], blocked
        path = Path(lora_path)
        problems: list[str] = []
        refreshed: list[str] = []
        sha = ""
        tokens = self.tokens
        for server in candidates:
            try:
                token = await await_executor(self.io, partial(tokens, server.url))
            except Exception as exc:       # keyring locked or refusing: say so, go on
                problems.append(f"{server.label}: the upload token could not be read ({exc})")
                continue
            if not token:
                continue
            if not sha:
                try:
                    sha = await self._sha(path)
                except OSError as exc:
                    problems.append(f"cannot read the LoRA {path}: {exc.strerror or exc}")
                    return problems, blocked
            listed = self._pushed.get((server.url, sha))
            models = (server.models or {}).get("loras", ())
            if listed and resolve_name(models, listed) == listed:
                continue                    # pushed in this session and still listed there
            try:
                result = await push_lora(self._client(server), server.url, token, path,
                                         sha256=sha, progress=progress, job_id=job_id,
                                         server_key=server.key)
            except NoUploadNode:
                logger.info("job {}: {} has no upload node; the LoRA must be copied there",
                            job_id, server.label)
                continue
            except LoraConflict as exc:
                logger.warning("job {}: {}", job_id, exc)
                blocked[server.key] = str(exc)
                problems.append(str(exc))
                continue
            except UploadError as exc:
                logger.warning("job {}: LoRA upload to {} refused: {}", job_id, server.label,
                               exc)
                problems.append(str(exc))
                continue
            logger.info("job {}: LoRA {} {} {} as {}", job_id, path.name,
                        "uploaded to" if result.uploaded else "already on", server.label,
                        result.name)
            self._pushed[(server.url, sha)] = result.name
            if resolve_name(models, result.name) != result.name:
                refreshed.append(server.key)
        if refreshed:
            await self.pool.refresh(refreshed)
            await asyncio.sleep(0)
        return problems, blocked
