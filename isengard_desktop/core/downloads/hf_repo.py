"""List a Hugging Face model repo's files at a revision, and choose the ones a transformers
folder needs (Qt-free, async over the caller's ``httpx.AsyncClient``).

What the Hub answers, as huggingface_hub reads it (version 2.4.0, the copy in our venv; the
same endpoints are in the stored ``huggingface/huggingface_hub`` sources):

- ``GET {endpoint}/api/models/{repo}/revision/{revision}`` → the model's JSON, whose ``sha``
  is the commit the revision points at (``hf_api.py:3201-3205``, ``model_info``; ``ModelInfo``
  reads ``sha`` at ``hf_api.py:916``). A branch such as ``main`` is resolved to its commit
  first, so every file of one download comes from the same commit (``snapshot_download``
  does the same, ``_snapshot_download.py:280-296``).
- ``GET {endpoint}/api/models/{repo}/tree/{commit}?recursive=true&expand=false`` → a JSON
  list; an entry is ``{"type": "file", "path", "size", "oid", "lfs": {"oid", "size",
  "pointerSize"}}`` or ``{"type": "directory", "path", "oid"}`` (``hf_api.py:4022-4034``
  ``_iter_repo_tree_pages``; ``RepoFile.__init__`` ``hf_api.py:711-718`` needs ``path``,
  ``size``, ``oid`` and reads ``lfs.oid`` as the SHA-256; ``RepoFolder.__init__`` ``hf_api.py:761-763``).
  A file outside LFS has no SHA-256 at all: its ``oid`` is the git blob SHA-1 (of
  ``"blob <size>\\0" + content``), so such files are checked by size only.
- More pages: a ``Link: <url>; rel="next"`` header whose URL already carries the query
  (``utils/_pagination.py:26-53`` ``_paginate_pages`` / ``_get_next_page``); 1000 entries a
  page (50 with ``expand``; ``hf_api.py:4013``).
- Errors carry ``X-Error-Code``: ``RepoNotFound``, ``RevisionNotFound``, ``GatedRepo``; a 401
  comes for private and gated repos without a token and for repos that do not exist
  (``utils/_http.py:871-892, 933-943``).
- A file is fetched from ``{endpoint}/{repo}/resolve/{revision}/{quoted path}``
  (``constants.py:70``, ``file_download.py:289-291``).
- One file's entry: ``POST {endpoint}/api/models/{repo}/paths-info/{revision}`` with the form
  fields ``paths`` (repeated) and ``expand``; the answer is a list of tree entries, a path
  that does not exist is left out (``hf_api.py:4270-4342`` ``get_paths_info``).
  :func:`file_info` uses it to fill the SHA-256 and size of a catalogue file whose URL is a
  Hub ``resolve/`` URL when the catalogue does not know them.

Tokens follow :class:`~.tokens.HostTokens`: the Hugging Face token goes to Hugging Face hosts
only (asked again for every URL, next pages included).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import httpx
from loguru import logger

from .errors import DownloadError
from .fetch import format_bytes
from .tokens import HostTokens, host_of

__all__ = ["HF_ENDPOINT", "HubFile", "HubListing", "file_info", "list_repo", "parse_resolve_url",
           "parse_tree_page", "resolve_url", "transformers_files"]

HF_ENDPOINT = "https://huggingface.co"
MAX_PAGES = 200
_SHA256 = re.compile(r"[0-9a-f]{64}")
_COMMIT = re.compile(r"[0-9a-f]{40}")
# owner/name: letters, digits, "-", "_", "." (never first, never "..")
_REPO_ID = re.compile(r"(?!.*\.\.)[A-Za-z0-9_][\w.-]*/[A-Za-z0-9_][\w.-]*")

# what a transformers ``save_pretrained`` folder is read from (config, tokenizer, processor,
# chat template, weights); everything else (README.md, .gitattributes, images, *.py remote
# code, other weight formats) is left on the Hub
_KEEP_SUFFIXES = (".json", ".txt", ".safetensors", ".model", ".tiktoken", ".jinja")


@dataclass(frozen=True)
class HubFile:
    """One file of a repo: its path in the repo, size in bytes and SHA-256 (lower-case hex;
    empty for a file outside LFS, whose only id is a git SHA-1: checked by size only)."""

    path: str
    size: int
    sha256: str = ""


@dataclass(frozen=True)
class HubListing:
    """A repo's files at one commit (``revision`` as asked, ``commit`` what it pointed at)."""

    repo: str
    revision: str
    commit: str
    files: tuple[HubFile, ...]
    endpoint: str = HF_ENDPOINT

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)

    def url(self, file: HubFile) -> str:
        return resolve_url(self.repo, self.commit, file.path, self.endpoint)

    def describe(self) -> str:
        n = len(self.files)
        return (f"{n} file{'s' if n != 1 else ''}, {format_bytes(self.total_size)} from "
                f"{self.repo} at {self.commit[:10]}")


def resolve_url(repo: str, revision: str, path: str, endpoint: str = HF_ENDPOINT) -> str:
    return (f"{endpoint.rstrip('/')}/{repo}/resolve/{quote(revision, safe='')}/"
            f"{quote(path)}")


def _safe_path(path: str) -> bool:
    """A relative POSIX path that stays inside the folder it is written to."""
    if not path or path.startswith("/") or "\\" in path or "\x00" in path:
        return False
    return all(part not in ("", ".", "..") for part in path.split("/"))


def parse_tree_page(data: Any, repo: str) -> list[HubFile]:
    """The files of one page of the tree API (directories are skipped). A page that is not
    shaped like the Hub's raises :class:`DownloadError` (``bad_answer``) naming the repo,
    the entry and the field."""
    if not isinstance(data, list):
        raise DownloadError("bad_answer", f"{repo}: the Hub's file list is not a JSON list "
                            f"(got {type(data).__name__}); try again later.")
    out: list[HubFile] = []
    for i, entry in enumerate(data):
        where = f"{repo}: entry {i} of the Hub's file list"
        if not isinstance(entry, dict) or not isinstance(entry.get("type"), str):
            raise DownloadError("bad_answer", f"{where} has no 'type'.")
        if entry["type"] != "file":
            continue                       # "directory": its files are listed on their own
        path, size = entry.get("path"), entry.get("size")
        if not isinstance(path, str) or not _safe_path(path):
            raise DownloadError("bad_answer", f"{where} has a missing or unsafe 'path' "
                                f"({path!r}).")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise DownloadError("bad_answer", f"{where} ({path}) has no valid 'size'.")
        if not isinstance(entry.get("oid"), str):
            raise DownloadError("bad_answer", f"{where} ({path}) has no 'oid'.")
        sha256 = ""
        lfs = entry.get("lfs")
        if lfs is not None:
            oid = lfs.get("oid") if isinstance(lfs, dict) else None
            lfs_size = lfs.get("size") if isinstance(lfs, dict) else None
            if not isinstance(oid, str) or not _SHA256.fullmatch(oid.lower()):
                raise DownloadError("bad_answer", f"{where} ({path}) has no SHA-256 in "
                                    "'lfs.oid'.")
            if not isinstance(lfs_size, int) or isinstance(lfs_size, bool):
                raise DownloadError("bad_answer", f"{where} ({path}) has no 'lfs.size'.")
            sha256, size = oid.lower(), lfs_size
        out.append(HubFile(path, size, sha256))
    return out


def transformers_files(files: tuple[HubFile, ...] | list[HubFile], repo: str = ""
                       ) -> tuple[HubFile, ...]:
    """The files a transformers folder loads from: top-level config / tokenizer / processor
    files (``.json``, ``.txt``, ``.model``, ``.tiktoken``, ``.jinja``) and ``.safetensors``
    weights. Subfolders (``onnx/``, ``openvino/``…), README/markdown, ``.gitattributes``,
    remote code and pickle weights (``*.bin``, ``*.pt``) are skipped: the app loads
    safetensors only, so a repo without them raises :class:`DownloadError` naming it."""
    chosen = tuple(f for f in files
                   if "/" not in f.path and f.path.lower().endswith(_KEEP_SUFFIXES))
    if not any(f.path.lower().endswith(".safetensors") for f in chosen):
        raise DownloadError("not_found", f"{repo or 'The repo'} has no .safetensors weights "
                            "at its top level; this app loads only safetensors. Choose a "
                            "folder you have with “Model folder…”.")
    if not any(f.path == "config.json" for f in chosen):
        raise DownloadError("not_found", f"{repo or 'The repo'} has no config.json: it is not "
                            "a transformers model folder.")
    return chosen


def _error_for(response: httpx.Response, repo: str, revision: str, had_token: bool,
               endpoint: str) -> DownloadError:
    status = response.status_code
    code = response.headers.get("x-error-code", "")
    page = f"{endpoint.rstrip('/')}/{repo}"
    token_hint = ("The Hugging Face token in Settings was sent but has no access: check that "
                  "it is a read token of the account that accepted the licence."
                  if had_token else
                  "No Hugging Face token is set: create a read token at "
                  "https://huggingface.co/settings/tokens and paste it in Settings → "
                  "Hugging Face token.")
    if status == 401 and response.headers.get("x-error-message") == (
            "Invalid credentials in Authorization header"):      # utils/_http.py:935
        return DownloadError("gated", f"{repo}: Hugging Face did not accept the token in "
                             "Settings → Hugging Face token (HTTP 401: invalid credentials). "
                             "It may be revoked or mistyped: create a read token at "
                             "https://huggingface.co/settings/tokens and paste it again.")
    if code == "GatedRepo" or (status == 403 and code != "RepoNotFound"):
        return DownloadError("gated", f"{repo}: Hugging Face refused the file list (HTTP "
                             f"{status}); it is a gated model. Open {page} while logged in, "
                             f"accept its licence, then try again. {token_hint}")
    if code == "RevisionNotFound":
        return DownloadError("not_found", f"{repo}: revision {revision!r} was not found "
                             "(HTTP 404). The app's catalogue names a revision the repo no "
                             "longer has; update the app.")
    if status == 401 or code == "RepoNotFound" or status == 404:
        extra = "" if had_token else (" If it is private or gated, " + token_hint[0].lower()
                                      + token_hint[1:])
        return DownloadError("not_found", f"{repo}: Hugging Face has no such model, or it "
                             f"is private (HTTP {status}). Check {page}.{extra}")
    if status == 429 or status >= 500:
        return DownloadError("http", f"{repo}: {host_of(str(response.url))} is busy or "
                             f"failing (HTTP {status}); try again in a few minutes.")
    return DownloadError("http", f"{repo}: {host_of(str(response.url))} answered HTTP "
                         f"{status} to the file list.")


async def _get_json(client: httpx.AsyncClient, url: str, repo: str, revision: str,
                    tokens: HostTokens, timeout: httpx.Timeout, endpoint: str,
                    params: dict[str, str] | None = None,
                    form: dict[str, Any] | None = None) -> tuple[Any, httpx.Response]:
    headers = {"Accept": "application/json", **tokens.headers_for(url)}
    try:
        if form is not None:
            response = await client.post(url, data=form, headers=headers, timeout=timeout,
                                         follow_redirects=False)
        else:
            response = await client.get(url, params=params, headers=headers, timeout=timeout,
                                        follow_redirects=False)
    except httpx.TimeoutException as exc:
        raise DownloadError("network", f"{repo}: {host_of(url)} did not answer in "
                            f"{timeout.read:g} s. Check your connection and try again.") from exc
    except httpx.TransportError as exc:
        raise DownloadError("network", f"{repo}: cannot reach {host_of(url)} "
                            f"({type(exc).__name__}). Check your connection and try "
                            "again.") from exc
    if response.status_code != 200:
        raise _error_for(response, repo, revision, "Authorization" in headers, endpoint)
    try:
        return response.json(), response
    except ValueError as exc:
        raise DownloadError("bad_answer", f"{repo}: {host_of(url)} answered something that "
                            "is not JSON to the file list; try again later (a proxy or "
                            "captive portal may be in the way).") from exc


async def list_repo(client: httpx.AsyncClient, repo: str, revision: str = "main", *,
                    endpoint: str = HF_ENDPOINT, tokens: HostTokens | None = None,
                    timeout_s: float = 30.0) -> HubListing:
    """Every file of model repo ``repo`` at ``revision`` (a branch is resolved to its commit
    first). Raises :class:`DownloadError` whose message names the repo and what to do."""
    if not _REPO_ID.fullmatch(repo):
        raise DownloadError("not_found", f"{repo!r} is not a Hugging Face repo id "
                            "(owner/name).")
    tokens = tokens or HostTokens()
    timeout = httpx.Timeout(timeout_s)
    base = endpoint.rstrip("/")
    commit = revision
    if not _COMMIT.fullmatch(revision):
        info, _ = await _get_json(client, f"{base}/api/models/{repo}/revision/"
                                  f"{quote(revision, safe='')}", repo, revision, tokens,
                                  timeout, base)
        sha = info.get("sha") if isinstance(info, dict) else None
        if not isinstance(sha, str) or not _COMMIT.fullmatch(sha):
            raise DownloadError("bad_answer", f"{repo}: the Hub did not say which commit "
                                f"{revision!r} is (no 'sha' in its answer).")
        commit = sha
    url: str | None = f"{base}/api/models/{repo}/tree/{commit}"
    params: dict[str, str] | None = {"recursive": "true", "expand": "false"}
    files: list[HubFile] = []
    pages = 0
    while url is not None:
        pages += 1
        if pages > MAX_PAGES:
            raise DownloadError("bad_answer", f"{repo}: the file list goes on for more than "
                                f"{MAX_PAGES} pages; this is not a model folder.")
        data, response = await _get_json(client, url, repo, revision, tokens, timeout, base,
                                         params)
        files.extend(parse_tree_page(data, repo))
        url = response.links.get("next", {}).get("url")   # it carries the query itself
        params = None
    logger.info("hub: {} at {} ({}): {} files in {} page(s)", repo, commit[:10], revision,
                len(files), pages)
    return HubListing(repo, revision, commit, tuple(files), base)


def parse_resolve_url(url: str) -> tuple[str, str, str, str] | None:
    """``(endpoint, repo, revision, path)`` of a model repo's ``resolve/`` URL, else None
    (dataset and Space URLs, other hosts' URLs)."""
    parts = urlsplit(url)
    segments = parts.path.split("/")
    # "", owner, name, "resolve", revision, path...
    if (len(segments) < 6 or segments[3] != "resolve" or segments[1] in ("datasets", "spaces")
            or not parts.scheme or not parts.netloc):
        return None
    repo = f"{segments[1]}/{segments[2]}"
    path = unquote("/".join(segments[5:]))
    if not _REPO_ID.fullmatch(repo) or not _safe_path(path):
        return None
    return f"{parts.scheme}://{parts.netloc}", repo, unquote(segments[4]), path


async def file_info(client: httpx.AsyncClient, url: str, *, tokens: HostTokens | None = None,
                    timeout_s: float = 30.0) -> HubFile | None:
    """The Hub's entry (size, LFS SHA-256) for the file a ``resolve/`` URL names; None when
    the URL is not one or the repo does not list that path. Raises :class:`DownloadError`
    as :func:`list_repo` does."""
    parsed = parse_resolve_url(url)
    if parsed is None:
        return None
    endpoint, repo, revision, path = parsed
    api = f"{endpoint}/api/models/{repo}/paths-info/{quote(revision, safe='')}"
    data, _ = await _get_json(client, api, repo, revision, tokens or HostTokens(),
                              httpx.Timeout(timeout_s), endpoint,
                              form={"paths": [path], "expand": "false"})
    return next((f for f in parse_tree_page(data, repo) if f.path == path), None)
