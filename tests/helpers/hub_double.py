"""A stand-in for the Hugging Face Hub's model API on a :class:`DownloadHost`: the revision
and tree endpoints and ``resolve/`` files of a tiny repo the test makes.

What it answers, each rule as huggingface_hub 2.4.0 (our venv's copy) reads the real Hub:
- ``/api/models/{repo}/revision/{rev}`` and ``/api/models/{repo}`` (the default branch) → JSON
  with ``sha`` = the commit (``hf_api.py:3201-3205``, ``ModelInfo`` reads ``sha`` at ``hf_api.py:916``).
- ``/api/models/{repo}/tree/{rev}`` (``hf_api.py:4022-4034``): a JSON list of
  ``{"type": "file", "oid", "size", "path", "lfs": {"oid", "size", "pointerSize"}}`` and
  ``{"type": "directory", "oid", "size": 0, "path"}`` entries (``RepoFile.__init__``
  ``hf_api.py:711-718``, ``RepoFolder.__init__`` ``hf_api.py:761-763``); ``oid`` of a file in
  git is its blob SHA-1, ``lfs.oid`` the SHA-256 of an LFS file. Which files are in LFS comes
  from the repo's own ``.gitattributes`` (the ``filter=lfs`` patterns; every Hub repo's first
  commit makes one, ``hf_api.py:4222``, and it is listed as a plain file, ``lfs=None``,
  ``hf_api.py:3929``); a repo without one has no LFS files. ``recursive``: the client sends
  the boolean ``recursive`` parameter, default ``False`` (``hf_api.py:3887-3888, 4025``), as
  ``true``/``false``; without ``true`` only the top level is listed (what "recursive" means in
  that docstring). ``page_size`` entries a page, 1000 by default as the Hub caps it
  (``hf_api.py:4013``), the next page's URL (query included) in a ``Link: <url>; rel="next"``
  header (``utils/_pagination.py:27-53``, ``_get_next_page`` ``:68-69``).
- ``POST /api/models/{repo}/paths-info/{rev}`` with form fields ``paths`` (repeated) and
  ``expand``: the entries of those paths, a path that does not exist left out
  (``hf_api.py:4270-4342`` ``get_paths_info``).
- ``/{repo}/resolve/{rev}/{path}``: the file (Range, faults: :class:`HostedFile`).
- Errors with ``X-Error-Code``, which the client reads before the status
  (``utils/_http.py:871-953``):
  - any other ``/api/models/...`` path: ``RepoNotFound`` for a repo this host does not serve,
    401 without a token and 404 with one (``utils/_http.py:932-941``: 401 also comes for
    private and gated repos without a token); ``RevisionNotFound`` 404 for a served repo at a
    revision it does not have (``utils/_http.py:880-882``).
  - a token the Hub does not know (``valid_tokens`` set and the token not in it): 401 with
    ``X-Error-Message: Invalid credentials in Authorization header`` and no error code, the one
    401 the client does not read as RepoNotFound (``utils/_http.py:933-936``).
  - a gated repo: :func:`~tests.helpers.download_host.gated_refusal` (401 without a token, 403
    with one that has no access, ``X-Error-Code: GatedRepo``) on ``resolve/``, and on the API
    routes while ``gated_api`` is on (the default). What is cited: the client's own example of a
    gated repo's ``model_info`` (``/api/models/{repo}``) failing with a 403 ``GatedRepoError``
    (``errors.py:350-361``), and ``repo_exists`` catching ``GatedRepoError`` from
    ``repo_info`` (``hf_api.py:3713-3717``). NOT checked (the Hub cannot be reached from here):
    whether the ``tree``/``paths-info`` routes refuse a gated repo the same way, or list its
    files to a user who has not accepted the licence. ``gated_api=False`` is that other
    reading (an open listing, refused files); the tests cover both.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
from dataclasses import dataclass, field

from aiohttp import web

from tests.helpers.download_host import DownloadHost, HostedFile, gated_refusal

__all__ = ["HubRepo", "git_blob_sha1", "lfs_patterns"]

_API = re.compile(r"^/api/models/(?P<repo>[^/]+(?:/[^/]+)?)(?:/(?:revision|tree|paths-info)/|$)")
INVALID_CREDENTIALS = "Invalid credentials in Authorization header"


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\x00" % len(data) + data).hexdigest()


def lfs_patterns(gitattributes: bytes) -> list[str]:
    """The patterns a ``.gitattributes`` puts in LFS (``filter=lfs``)."""
    out = []
    for line in gitattributes.decode("utf-8", "replace").splitlines():
        parts = line.split()
        if len(parts) > 1 and not parts[0].startswith("#") and "filter=lfs" in parts[1:]:
            out.append(parts[0])
    return out


def _in_lfs(path: str, patterns: list[str]) -> bool:
    """gitattributes(5): a pattern without a slash matches the name at any depth, one with a
    slash the path from the repo root."""
    name = path.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatchcase(path, p.lstrip("/")) if "/" in p
               else fnmatch.fnmatchcase(name, p) for p in patterns)


def _served_repos(host: DownloadHost) -> set[str]:
    return {m.group("repo") for _method, path in host.routes if (m := _API.match(path))}


async def _unknown_api(host: DownloadHost, request: web.Request) -> web.Response:
    """An ``/api/models/...`` path no route answers: RevisionNotFound for a served repo,
    RepoNotFound otherwise (module docstring)."""
    if any(path == request.path for _method, path in host.routes):
        return web.Response(status=405, text="Method Not Allowed")   # e.g. GET on paths-info
    match = _API.match(request.path)
    if match is not None and match.group("repo") in _served_repos(host):
        return web.Response(status=404, content_type="application/json",
                            headers={"X-Error-Code": "RevisionNotFound",
                                     "X-Error-Message": "Invalid rev id"},
                            text='{"error":"Invalid rev id"}')
    auth = request.headers.get("Authorization", "")
    return web.Response(status=401 if not auth else 404, content_type="application/json",
                        headers={"X-Error-Code": "RepoNotFound",
                                 "X-Error-Message": "Repository not found"},
                        text='{"error":"Repository not found"}')


@dataclass
class HubRepo:
    """One model repo served by ``host``: ``files`` maps a path to its bytes. Call
    :meth:`serve` after filling it. ``gated``/``token``: who may read it (``token`` opens a
    gated repo). ``valid_tokens``: the tokens the Hub knows (``None``: any token is some
    account's); another is refused as invalid credentials. ``gated_api``: see the module
    docstring (what is and is not cited)."""

    host: DownloadHost
    repo: str
    files: dict[str, bytes]
    commit: str = "0123456789abcdef0123456789abcdef01234567"
    branches: tuple[str, ...] = ("main",)
    page_size: int = 1000
    gated: bool = False
    gated_api: bool = True
    token: str = ""
    valid_tokens: frozenset[str] | None = None
    hosted: dict[str, HostedFile] = field(default_factory=dict)

    def _refused(self, request: web.Request) -> web.Response | None:
        auth = request.headers.get("Authorization", "")
        sent = auth.removeprefix("Bearer ")
        if auth and self.valid_tokens is not None and sent not in self.valid_tokens | {
                self.token}:
            return web.Response(status=401, content_type="application/json",
                                headers={"X-Error-Message": INVALID_CREDENTIALS},
                                text=json.dumps({"error": INVALID_CREDENTIALS}))
        if not (self.gated and self.gated_api) or auth == f"Bearer {self.token}":
            return None
        return gated_refusal(auth)

    def entries(self) -> list[dict]:
        out: list[dict] = []
        folders = sorted({"/".join(p.split("/")[:i]) for p in self.files
                          for i in range(1, p.count("/") + 1)})
        for folder in folders:
            out.append({"type": "directory", "oid": hashlib.sha1(folder.encode()).hexdigest(),
                        "size": 0, "path": folder})
        patterns = lfs_patterns(self.files.get(".gitattributes", b""))
        for path, data in sorted(self.files.items()):
            entry: dict = {"type": "file", "oid": git_blob_sha1(data), "size": len(data),
                           "path": path}
            if path != ".gitattributes" and _in_lfs(path, patterns):
                pointer = (f"version https://git-lfs.github.com/spec/v1\noid sha256:"
                           f"{hashlib.sha256(data).hexdigest()}\nsize {len(data)}\n").encode()
                entry["oid"] = git_blob_sha1(pointer)
                entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data),
                                "pointerSize": len(pointer)}
            out.append(entry)
        return out

    def serve(self) -> HubRepo:
        api = f"/api/models/{self.repo}"
        self.host.routes[("GET", api)] = self._revision
        for rev in (*self.branches, self.commit):
            self.host.routes[("GET", f"{api}/revision/{rev}")] = self._revision
            self.host.routes[("GET", f"{api}/tree/{rev}")] = self._tree
            self.host.routes[("POST", f"{api}/paths-info/{rev}")] = self._paths_info
        host = self.host
        host.prefix_routes["/api/models/"] = lambda request: _unknown_api(host, request)
        for path, data in self.files.items():
            hosted = HostedFile(data=data, gated=self.gated, token=self.token)
            self.hosted[path] = hosted
            for rev in (*self.branches, self.commit):
                self.host.add(f"/{self.repo}/resolve/{rev}/{path}", hosted)
        return self

    async def _revision(self, request: web.Request) -> web.Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        return web.json_response({"id": self.repo, "modelId": self.repo, "sha": self.commit,
                                  "private": False, "gated": "manual" if self.gated else False,
                                  "siblings": [{"rfilename": p} for p in sorted(self.files)]})

    async def _tree(self, request: web.Request) -> web.Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        entries = self.entries()
        if request.query.get("recursive", "false").lower() != "true":
            entries = [e for e in entries if "/" not in e["path"]]
        start = int(request.query.get("cursor", "0"))
        page = entries[start:start + self.page_size]
        headers = {}
        if start + self.page_size < len(entries):
            nxt = request.url.update_query({"cursor": str(start + self.page_size)})
            headers["Link"] = f'<{nxt}>; rel="next"'
        return web.Response(text=json.dumps(page), content_type="application/json",
                            headers=headers)

    async def _paths_info(self, request: web.Request) -> web.Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        form = await request.post()
        wanted = set(form.getall("paths", []))
        return web.json_response([e for e in self.entries() if e["path"] in wanted])
