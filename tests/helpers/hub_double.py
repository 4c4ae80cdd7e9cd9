"""A stand-in for the Hugging Face Hub's model API on a :class:`DownloadHost`: the revision
and tree endpoints and ``resolve/`` files of a tiny repo the test makes.

What it answers, each rule as huggingface_hub 2.4.0 (our venv's copy) reads the real Hub:
- ``/api/models/{repo}/revision/{rev}`` → JSON with ``sha`` = the commit
  (``hf_api.py:3201-3205``, ``ModelInfo`` reads ``sha`` at ``hf_api.py:916``).
- ``/api/models/{repo}/tree/{rev}`` (``hf_api.py:4022-4034``) with ``recursive``: a JSON list
  of ``{"type": "file", "oid", "size", "path", "lfs": {"oid", "size", "pointerSize"}}`` and
  ``{"type": "directory", "oid", "size": 0, "path"}`` entries (``RepoFile.__init__``
  ``hf_api.py:711-718``, ``RepoFolder.__init__`` ``hf_api.py:761-763``); ``oid`` of a file in
  git is its blob SHA-1, ``lfs.oid`` the SHA-256 of an LFS file. Without ``recursive`` only the
  top level is listed. ``page_size`` entries a page, the next page's URL (query included) in
  a ``Link: <url>; rel="next"`` header (``utils/_pagination.py:26-53``, ``_get_next_page``).
- Errors with ``X-Error-Code`` (``utils/_http.py:871-892, 933-943``): an unknown repo 401
  without a token / 404 with one (``RepoNotFound``); an unknown revision 404
  (``RevisionNotFound``); a gated repo 401 without a token / 403 with a token that has no
  access (``GatedRepo``) on ``resolve/``, and on the API too unless ``gated_api`` is off.
  Whether the real Hub lists a gated repo's files to a user who has not accepted its licence
  was not checked (the Hub cannot be reached from here), so the tests cover both: a refused
  listing, and an open listing whose files are refused.
- ``POST /api/models/{repo}/paths-info/{rev}`` with form fields ``paths`` (repeated) and
  ``expand``: the entries of those paths, a path that does not exist left out
  (``hf_api.py:4270-4342`` ``get_paths_info``).
- ``/{repo}/resolve/{rev}/{path}``: the file (Range, faults: :class:`HostedFile`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from aiohttp import web

from tests.helpers.download_host import DownloadHost, HostedFile

__all__ = ["HubRepo", "git_blob_sha1"]

LFS_SUFFIXES = (".safetensors", ".bin", ".model", ".onnx", ".pt")   # HF's default .gitattributes


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\x00" % len(data) + data).hexdigest()


@dataclass
class HubRepo:
    """One model repo served by ``host``: ``files`` maps a path to its bytes. Call
    :meth:`serve` after filling it. ``gated``/``token``: who may read it."""

    host: DownloadHost
    repo: str
    files: dict[str, bytes]
    commit: str = "0123456789abcdef0123456789abcdef01234567"
    branches: tuple[str, ...] = ("main",)
    page_size: int = 1000
    gated: bool = False
    gated_api: bool = True
    token: str = ""
    hosted: dict[str, HostedFile] = field(default_factory=dict)

    def _refused(self, request: web.Request) -> web.Response | None:
        if not (self.gated and self.gated_api):
            return None
        auth = request.headers.get("Authorization", "")
        if auth == f"Bearer {self.token}":
            return None
        return web.Response(status=401 if not auth else 403,
                            headers={"X-Error-Code": "GatedRepo"},
                            text="Access to model is restricted.")

    def entries(self) -> list[dict]:
        out: list[dict] = []
        folders = sorted({"/".join(p.split("/")[:i]) for p in self.files
                          for i in range(1, p.count("/") + 1)})
        for folder in folders:
            out.append({"type": "directory", "oid": hashlib.sha1(folder.encode()).hexdigest(),
                        "size": 0, "path": folder})
        for path, data in sorted(self.files.items()):
            entry: dict = {"type": "file", "oid": git_blob_sha1(data), "size": len(data),
                           "path": path}
            if path.endswith(LFS_SUFFIXES):
                pointer = (f"version https://git-lfs.github.com/spec/v1\noid sha256:"
                           f"{hashlib.sha256(data).hexdigest()}\nsize {len(data)}\n").encode()
                entry["oid"] = git_blob_sha1(pointer)
                entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data),
                                "pointerSize": len(pointer)}
            out.append(entry)
        return out

    def serve(self) -> HubRepo:
        api = f"/api/models/{self.repo}"
        for rev in (*self.branches, self.commit):
            self.host.routes[f"{api}/revision/{rev}"] = self._revision
            self.host.routes[f"{api}/tree/{rev}"] = self._tree
            self.host.routes[f"{api}/paths-info/{rev}"] = self._paths_info
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
        if request.query.get("recursive", "false").lower() not in ("true", "1"):
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
        if request.method != "POST":
            return web.Response(status=405, text="Method Not Allowed")
        refused = self._refused(request)
        if refused is not None:
            return refused
        form = await request.post()
        wanted = set(form.getall("paths", []))
        return web.json_response([e for e in self.entries() if e["path"] in wanted])

    def unknown_routes(self) -> None:
        """Answer the Hub's errors for another repo and another revision of this one."""
        async def no_repo(request: web.Request) -> web.Response:
            auth = request.headers.get("Authorization", "")
            return web.Response(status=401 if not auth else 404,
                                headers={"X-Error-Code": "RepoNotFound",
                                         "X-Error-Message": "Repository not found"},
                                text='{"error":"Repository not found"}')

        async def no_revision(request: web.Request) -> web.Response:
            return web.Response(status=404, headers={"X-Error-Code": "RevisionNotFound"},
                                text='{"error":"Invalid rev id: nope"}')
        self.host.routes["/api/models/nobody/missing/revision/main"] = no_repo
        self.host.routes[f"/api/models/{self.repo}/revision/nope"] = no_revision
