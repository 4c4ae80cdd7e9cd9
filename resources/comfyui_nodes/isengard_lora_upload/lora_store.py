"""Isengard LoRA upload: the HTTP handlers, free of ComfyUI (imports only aiohttp + stdlib).

``POST /isengard/lora`` stores one ``.safetensors`` file in a single folder (ComfyUI's
``models/loras/isengard/``). The body is the file itself (``application/octet-stream``), or a
``multipart/form-data`` form whose first file field is the file. Headers:

``X-Isengard-Token``   the upload token (or ``Authorization: Bearer <token>``); compared in
                       constant time with the token the server was given. No token configured
                       on the server means every upload is refused (503).
``X-Isengard-Name``    the bare file name (``me-sdxl.safetensors``): no folders, no ``..``, no
                       drive, no reserved Windows name, ``.safetensors`` only.
``X-Isengard-Sha256``  the file's SHA-256 (64 hex digits); the body is hashed while it is
                       written and must match, or nothing is kept.

Answers: 201 stored, 200 already there (same name and same hash: not written again),
400 bad name/hash/body, 401 token missing or wrong, 409 a different file has that name (it is
never overwritten), 413 over the size limit (refused from ``Content-Length`` before reading,
and again while streaming), 503 no token configured. Every answer is JSON with ``message``.

``GET /isengard/lora?name=…&sha256=…`` (same token) says whether that file is there:
``{"present": bool, "conflict": bool, "name": "isengard/<name>"}``, so a client uploads once.

The body goes to a hidden temp file in the same folder, then is linked into place (which fails
when the name exists, so a racing upload cannot be overwritten) and the temp file is removed.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

__all__ = ["DEFAULT_MAX_BYTES", "ROUTE", "LoraStore", "NameError_", "check_name",
           "read_token"]

ROUTE = "/isengard/lora"
DEFAULT_MAX_BYTES = 2 * 1024**3           # 2 GiB: an SDXL rank-128 LoRA is ~0.9 GB
CHUNK = 1 << 20
MAX_NAME = 200
TOKEN_FILE = "token.txt"
TOKEN_ENV = "ISENGARD_UPLOAD_TOKEN"
MAX_BYTES_ENV = "ISENGARD_UPLOAD_MAX_MB"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_RESERVED = {"con", "prn", "aux", "nul", "conin$", "conout$",
             *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}
_BAD_CHARS = set('/\\:*?"<>|') | {chr(c) for c in range(32)} | {"\x7f"}


class NameError_(ValueError):  # noqa: N801 - "NameError" is a builtin
    """The file name cannot be used; ``str(e)`` says why."""


def check_name(name: str) -> str:
    """``name`` when it is a safe bare ``.safetensors`` file name; NameError_ otherwise."""
    if not name:
        raise NameError_("the file name is missing (header X-Isengard-Name)")
    if len(name) > MAX_NAME:
        raise NameError_(f"the file name is longer than {MAX_NAME} characters")
    bad = sorted(set(name) & _BAD_CHARS)
    if bad:
        raise NameError_("the file name must be a bare name without folders, drives or "
                         f"special characters (found {''.join(repr(c) for c in bad)})")
    if ".." in name or name.startswith("."):
        raise NameError_("the file name must not start with '.' or contain '..'")
    if name != name.strip() or name.endswith("."):
        raise NameError_("the file name must not start or end with a space or end with '.'")
    if not name.endswith(".safetensors") or name == ".safetensors":
        raise NameError_("only .safetensors files are accepted")
    stem = name[: -len(".safetensors")]
    if stem.split(".")[0].strip().casefold() in _RESERVED:
        raise NameError_(f"{stem!r} is a reserved file name on Windows")
    return name


def read_token(folder: Path) -> str | None:
    """The upload token: ``$ISENGARD_UPLOAD_TOKEN``, else ``<folder>/token.txt`` (first line,
    stripped); None when neither is set."""
    value = os.environ.get(TOKEN_ENV, "").strip()
    if value:
        return value
    try:
        text = (folder / TOKEN_FILE).read_text(encoding="utf-8")
    except OSError:
        return None
    lines = text.strip().splitlines()
    return lines[0].strip() or None if lines else None


def max_bytes_from_env(default: int = DEFAULT_MAX_BYTES) -> int:
    """The size limit: ``$ISENGARD_UPLOAD_MAX_MB`` megabytes (MiB), else ``default``."""
    raw = os.environ.get(MAX_BYTES_ENV, "").strip()
    try:
        return int(float(raw) * 1024 * 1024) if raw else default
    except ValueError:
        return default


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _answer(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"message": message, **extra}, status=status)


class LoraStore:
    """The upload and check handlers for one folder (see the module docstring).

    ``token`` is called on every request (so a new ``token.txt`` works without a restart);
    ``max_bytes`` caps one upload.
    """

    def __init__(self, folder: Path, token: Callable[[], str | None], *,
                 max_bytes: int = DEFAULT_MAX_BYTES, subfolder: str = "isengard") -> None:
        self.folder = Path(folder)
        self.token = token
        self.max_bytes = int(max_bytes)
        self.subfolder = subfolder
        self._locks: dict[str, asyncio.Lock] = {}
        self._hashes: dict[tuple[str, int, int], str] = {}   # (name, size, mtime) -> sha256

    # -- registration --------------------------------------------------------------------
    def add_to(self, routes: Any) -> None:
        """Register both handlers on an aiohttp ``RouteTableDef`` or ``UrlDispatcher``."""
        if isinstance(routes, web.RouteTableDef):
            routes.post(ROUTE)(self.post)
            routes.get(ROUTE)(self.get)
        else:
            routes.add_post(ROUTE, self.post)
            routes.add_get(ROUTE, self.get)

    # -- checks ----------------------------------------------------------------------------
    def _authorise(self, request: web.Request) -> None:
        expected = self.token()
        if not expected:
            raise _Refused(503, "LoRA upload is switched off on this server: put a token in "
                                f"{TOKEN_FILE} next to the isengard_lora_upload node (or set "
                                f"{TOKEN_ENV}) and restart ComfyUI.")
        given = request.headers.get("X-Isengard-Token", "")
        auth = request.headers.get("Authorization", "")
        if not given and auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        if not given:
            raise _Refused(401, "The upload token is missing (header X-Isengard-Token).")
        if not hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8")):
            raise _Refused(401, "The upload token is wrong.")

    @staticmethod
    def _name(raw: str) -> str:
        try:
            return check_name(raw)
        except NameError_ as exc:
            raise _Refused(400, f"Bad file name {raw!r}: {exc}.") from None

    @staticmethod
    def _sha(raw: str) -> str:
        value = raw.strip().lower()
        if not _HEX64.match(value):
            raise _Refused(400, "The SHA-256 must be 64 hex digits (header X-Isengard-Sha256).")
        return value

    def _target(self, name: str) -> Path:
        target = (self.folder / name).resolve()
        if target.parent != self.folder.resolve():      # belt and braces after check_name
            raise _Refused(400, f"Bad file name {name!r}.")
        return target

    async def _existing_hash(self, path: Path) -> str | None:
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        key = (path.name, st.st_size, st.st_mtime_ns)
        if key not in self._hashes:
            loop = asyncio.get_running_loop()
            self._hashes[key] = await loop.run_in_executor(None, _sha256_file, path)
        return self._hashes[key]

    def _listed(self, name: str) -> str:
        return f"{self.subfolder}/{name}"

    # -- GET ------------------------------------------------------------------------------
    async def get(self, request: web.Request) -> web.Response:
        try:
            self._authorise(request)
            name = self._name(request.query.get("name", ""))
            sha = self._sha(request.query.get("sha256", ""))
            have = await self._existing_hash(self._target(name))
        except _Refused as exc:
            return _answer(exc.status, exc.message)
        present = have == sha
        return _answer(200, "present" if present else ("a different file has that name"
                                                       if have else "not there"),
                       present=present, conflict=have is not None and not present,
                       name=self._listed(name), max_bytes=self.max_bytes)

    # -- POST -----------------------------------------------------------------------------
    async def post(self, request: web.Request) -> web.Response:
        try:
            self._authorise(request)
            length = request.content_length
            if length is not None and length > self.max_bytes:
                raise _Refused(413, f"The file is {length} bytes; this server accepts at most "
                                    f"{self.max_bytes} bytes.")
            reader, filename = await self._body(request)
            name = self._name(request.headers.get("X-Isengard-Name", "") or filename)
            sha = self._sha(request.headers.get("X-Isengard-Sha256", ""))
            target = self._target(name)
            lock = self._locks.setdefault(name, asyncio.Lock())
            async with lock:
                have = await self._existing_hash(target)
                if have == sha:
                    return _answer(200, "already there", name=self._listed(name),
                                   sha256=sha, already=True)
                if have is not None:
                    raise _Refused(409, f"A different file named {name} is already in "
                                        f"{self.subfolder}/ on this server; it is never "
                                        "overwritten. Rename the LoRA or remove that file.")
                size = await self._receive(reader, target, sha)
        except _Refused as exc:
            return _answer(exc.status, exc.message)
        return _answer(201, "stored", name=self._listed(name), sha256=sha, size=size)

    async def _body(self, request: web.Request) -> tuple[Any, str]:
        """The byte stream of the file and the file name the form gave ("" for raw)."""
        if request.content_type.startswith("multipart/"):
            form = await request.multipart()
            while True:
                part = await form.next()
                if part is None:
                    raise _Refused(400, "The form holds no file.")
                if getattr(part, "filename", None):
                    return part, str(part.filename)
        return request.content, ""

    async def _receive(self, reader: Any, target: Path, sha: str) -> int:
        """Stream the body to a temp file, check size and hash, link it into place."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, lambda: self.folder.mkdir(parents=True, exist_ok=True))
        temp = self.folder / f".upload-{uuid.uuid4().hex}.part"
        digest = hashlib.sha256()
        size = 0
        handle = await loop.run_in_executor(None, open, temp, "xb")
        try:
            try:
                while True:
                    if hasattr(reader, "read_chunk"):
                        chunk = await reader.read_chunk(CHUNK)
                    else:
                        chunk = await reader.read(CHUNK)
                    if not chunk:
                        break
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise _Refused(413, f"The file is larger than this server accepts "
                                            f"({self.max_bytes} bytes).")
                    digest.update(chunk)
                    await loop.run_in_executor(None, handle.write, chunk)
                await loop.run_in_executor(None, lambda: (handle.flush(),
                                                          os.fsync(handle.fileno())))
            finally:
                await loop.run_in_executor(None, handle.close)
            got = digest.hexdigest()
            if got != sha:
                raise _Refused(400, f"The file's SHA-256 is {got}, not the declared {sha}; "
                                    "nothing was kept (the upload was damaged, try again).")
            await loop.run_in_executor(None, _place, temp, target)
        except FileExistsError:
            raise _Refused(409, f"A file named {target.name} appeared during the upload; it "
                                "was not overwritten.") from None
        except OSError as exc:
            raise _Refused(500, f"Could not store {target.name}: "
                                f"{exc.strerror or exc}.") from None
        finally:
            try:
                temp.unlink()
            except FileNotFoundError:
                pass
        return size


def _place(temp: Path, target: Path) -> None:
    """Put ``temp`` at ``target`` without ever replacing an existing file."""
    try:
        os.link(temp, target)            # fails with FileExistsError when the name is taken
    except FileExistsError:
        raise
    except OSError:                      # no hard links on this file system
        if target.exists():
            raise FileExistsError(str(target)) from None
        os.rename(temp, target)          # (on Windows rename never replaces either)
