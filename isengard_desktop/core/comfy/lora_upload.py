"""Pushing a LoRA to a remote ComfyUI that has our upload node (Qt-free, async httpx).

The node (``resources/comfyui_nodes/isengard_lora_upload/``, rules in its ``lora_store.py``)
answers ``GET /isengard/lora?name=&sha256=`` (is it there?) and ``POST /isengard/lora`` (store
it in ``models/loras/isengard/``). :func:`push_lora` asks first and uploads only when the file
is not there yet, streaming it from disk with its SHA-256 and reporting
:class:`~..types.Progress`. A server without the node answers 404: :class:`NoUploadNode`, and
the caller keeps the manual "copy the LoRA" message. Every other refusal is an
:class:`UploadError` whose text names the server and the file and says what to do.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from ..types import Progress

__all__ = ["NODE_FOLDER", "NODE_NAME", "ROUTE", "SUBFOLDER", "LoraConflict", "NoUploadNode", "PushResult",
           "UploadError", "check_lora", "install_node", "node_folder", "push_lora",
           "sha256_of"]

NODE_NAME = "isengard_lora_upload"
NODE_FOLDER = Path(__file__).resolve().parents[3] / "resources" / "comfyui_nodes" / NODE_NAME


def node_folder() -> Path:
    """The shipped node folder (source tree, or ``resources/`` of a PyInstaller bundle, as
    ``core/models_catalogue.py`` finds it)."""
    import sys

    bundle = getattr(sys, "_MEIPASS", None)
    return Path(bundle) / "resources" / "comfyui_nodes" / NODE_NAME if bundle else NODE_FOLDER
ROUTE = "/isengard/lora"
SUBFOLDER = "isengard"
CHUNK = 1 << 20


class UploadError(Exception):
    """The server refused or the upload broke; ``str(e)`` says what and what to do."""


class LoraConflict(UploadError):
    """A different file of that name is already in the server's ``isengard/`` folder."""


class NoUploadNode(UploadError):
    """The server does not have the upload node (it answered 404)."""


@dataclass(frozen=True)
class PushResult:
    name: str            # as the server lists it: "isengard/<file>"
    uploaded: bool       # False: it was there already (same hash)
    size: int


def sha256_of(path: Path) -> str:
    """The file's SHA-256 (blocking: run it on an executor)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def install_node(custom_nodes: Path, source: Path | None = None) -> Path:
    """Copy our node package into a ComfyUI's ``custom_nodes`` folder (blocking; worker
    thread). Only its ``.py`` files travel (never a ``token.txt``, never ``__pycache__``); a
    copy that is already the same is left alone. Returns the installed folder."""
    from ..fsutil import atomic_write_bytes

    source = source or node_folder()
    target = custom_nodes / source.name
    target.mkdir(parents=True, exist_ok=True)
    for src in sorted(source.glob("*.py")):
        data = src.read_bytes()
        dest = target / src.name
        try:
            if dest.read_bytes() == data:
                continue
        except OSError:
            pass
        atomic_write_bytes(dest, data)
    return target


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    return str(body.get("message", "")) if isinstance(body, dict) else str(body)[:300]


def _refusal(server: str, name: str, response: httpx.Response) -> UploadError:
    why = _message(response)
    status = response.status_code
    if status == 404:
        return NoUploadNode(f"ComfyUI at {server} has no Isengard upload node.")
    if status == 401:
        return UploadError(f"ComfyUI at {server} refused the upload token ({why}). Paste the "
                           "token from the node's token.txt into Settings → ComfyUI → Upload "
                           "token.")
    if status == 503:
        return UploadError(f"ComfyUI at {server}: {why}")
    if status == 409:
        return LoraConflict(f"ComfyUI at {server} already has a different {name} in "
                           f"models/loras/{SUBFOLDER}/ and never overwrites it: rename the "
                           "LoRA here or remove that file there.")
    if status == 413:
        return UploadError(f"{name} is too large for ComfyUI at {server}: {why} (set "
                           "ISENGARD_UPLOAD_MAX_MB there and restart it).")
    return UploadError(f"ComfyUI at {server} did not take {name} (HTTP {status}: {why}).")


async def check_lora(http: httpx.AsyncClient, server: str, token: str, name: str,
                     sha256: str) -> dict[str, Any]:
    """The node's answer for ``name``/``sha256`` (``present``, ``conflict``, ``name``);
    :class:`NoUploadNode` when the server has no node, :class:`UploadError` otherwise."""
    url = server.rstrip("/") + ROUTE
    try:
        response = await http.get(url, params={"name": name, "sha256": sha256},
                                  headers={"X-Isengard-Token": token})
    except httpx.HTTPError as exc:
        raise UploadError(f"Could not reach ComfyUI at {server}: {exc}.") from exc
    if response.status_code != 200:
        raise _refusal(server, name, response)
    body = response.json()
    if not isinstance(body, dict):
        raise UploadError(f"ComfyUI at {server} answered the LoRA check oddly: {body!r}.")
    return body


async def _stream(path: Path, report: Callable[[int], None]
                  ) -> AsyncIterator[bytes]:
    """The file in chunks, read on a worker thread (the loop never waits on the disk)."""
    sent = 0
    handle = await asyncio.to_thread(open, path, "rb")
    try:
        while chunk := await asyncio.to_thread(handle.read, CHUNK):
            sent += len(chunk)
            report(sent)
            yield chunk
    finally:
        handle.close()


async def push_lora(http: httpx.AsyncClient, server: str, token: str, path: Path, *,
                    sha256: str, progress: Callable[[Progress], None] | None = None,
                    job_id: str = "", server_key: str = "") -> PushResult:
    """Make ``path`` available as ``isengard/<name>`` on ``server``: checked first, uploaded
    only when missing (streamed, with its hash). Raises :class:`NoUploadNode` or
    :class:`UploadError`."""
    name = path.name
    try:
        size = (await asyncio.to_thread(path.stat)).st_size
    except OSError as exc:
        raise UploadError(f"Cannot read the LoRA {path}: {exc.strerror or exc}.") from exc
    label = f"Uploading {name}"
    answer = await check_lora(http, server, token, name, sha256)
    listed = str(answer.get("name") or f"{SUBFOLDER}/{name}")
    if answer.get("present"):
        return PushResult(listed, False, size)
    if answer.get("conflict"):
        raise LoraConflict(f"ComfyUI at {server} already has a different {name} in "
                          f"models/loras/{SUBFOLDER}/ and never overwrites it: rename the "
                          "LoRA here or remove that file there.")

    def report(sent: int) -> None:
        if progress is not None:
            progress(Progress(label, sent, size, detail=f"to {server}", job_id=job_id,
                              server=server_key, overall=sent / size if size else None))

    report(0)
    headers = {"X-Isengard-Token": token, "X-Isengard-Name": name,
               "X-Isengard-Sha256": sha256, "Content-Type": "application/octet-stream",
               "Content-Length": str(size)}
    try:
        response = await http.post(server.rstrip("/") + ROUTE, headers=headers,
                                   content=_stream(path, report),
                                   timeout=httpx.Timeout(60.0, write=300.0))
    except OSError as exc:
        raise UploadError(f"Cannot read the LoRA {path}: {exc.strerror or exc}.") from exc
    except httpx.HTTPError as exc:
        raise UploadError(f"Uploading {name} to ComfyUI at {server} failed: {exc}.") from exc
    if response.status_code not in (200, 201):
        raise _refusal(server, name, response)
    body = response.json()
    return PushResult(str(body.get("name") or listed), response.status_code == 201, size)
