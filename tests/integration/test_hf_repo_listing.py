"""Listing a Hugging Face repo over real HTTP against the Hub double
(``tests/helpers/hub_double.py``): branch → commit, pagination through ``Link`` headers, the
Hub's errors turned into messages naming the repo, and the token only for its own host; then
the real huggingface_hub 2.4.0 client against the double, which must read each answer
(listing, LFS, every error) as it reads the real Hub's."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import httpx
import pytest
from aiohttp import web
from huggingface_hub import HfApi
from huggingface_hub.errors import (
    GatedRepoError, HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError,
)
from huggingface_hub.utils import get_session, hf_raise_for_status

from isengard_desktop.core.downloads import DownloadError, HostTokens
from isengard_desktop.core.downloads.hf_repo import file_info, list_repo, transformers_files
from tests.helpers.download_host import DownloadHost
from tests.helpers.hub_double import HubRepo

REPO = "tiny-org/tiny-florence"
FILES = {
    "config.json": b'{"model_type": "florence2"}',
    "tokenizer.json": b'{"version": "1.0"}',
    "model.safetensors": bytes(range(256)) * 40,
    "README.md": b"# tiny",
    ".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
                      b"*.onnx filter=lfs diff=lfs merge=lfs -text\n",
    "onnx/model.onnx": b"onnx" * 10,
}


@pytest.fixture
def host() -> Iterator[DownloadHost]:
    with DownloadHost() as h:
        yield h


async def _list(host: DownloadHost, repo: str = REPO, revision: str = "main",
                tokens: HostTokens | None = None):
    async with httpx.AsyncClient(trust_env=False) as client:
        return await list_repo(client, repo, revision, endpoint=host.url(""), tokens=tokens)


@pytest.mark.asyncio
async def test_a_branch_is_listed_at_its_commit_across_pages(host):
    hub = HubRepo(host, REPO, dict(FILES), page_size=2).serve()
    listing = await _list(host)
    assert listing.commit == hub.commit and listing.revision == "main"
    by_path = {f.path: f for f in listing.files}
    assert set(by_path) == set(FILES)            # 7 entries (one directory) on 4 pages
    tree_calls = [r for r in host.requests if "/tree/" in r.path]
    assert len(tree_calls) == 4 and all(r.path.endswith(hub.commit) for r in tree_calls)
    weights = by_path["model.safetensors"]
    assert weights.sha256 == hashlib.sha256(FILES["model.safetensors"]).hexdigest()
    assert by_path["config.json"].sha256 == "" and by_path["config.json"].size == 27
    chosen = [f.path for f in transformers_files(listing.files, REPO)]
    assert sorted(chosen) == ["config.json", "model.safetensors", "tokenizer.json"]
    assert listing.url(weights) == host.url(f"/{REPO}/resolve/{hub.commit}/model.safetensors")


@pytest.mark.asyncio
async def test_a_pinned_commit_is_listed_without_asking_for_the_branch(host):
    hub = HubRepo(host, REPO, dict(FILES)).serve()
    listing = await _list(host, revision=hub.commit)
    assert listing.commit == hub.commit and len(listing.files) == len(FILES)
    assert not any("/revision/" in r.path for r in host.requests)


@pytest.mark.asyncio
async def test_gated_repo_without_and_with_a_wrong_token_then_the_right_one(host):
    HubRepo(host, REPO, dict(FILES), gated=True, token="hf_good").serve()
    with pytest.raises(DownloadError) as info:
        await _list(host)
    assert info.value.kind == "gated" and REPO in info.value.message
    assert "accept its licence" in info.value.message and "No Hugging Face token" in str(
        info.value)
    wrong = HostTokens({"127.0.0.1": "hf_wrong"})
    with pytest.raises(DownloadError) as info:
        await _list(host, tokens=wrong)
    assert info.value.kind == "gated" and "was sent but has no access" in info.value.message
    listing = await _list(host, tokens=HostTokens({"127.0.0.1": "hf_good"}))
    assert len(listing.files) == len(FILES)


@pytest.mark.asyncio
async def test_the_token_goes_only_to_its_own_host(host):
    HubRepo(host, REPO, dict(FILES)).serve()
    await _list(host, tokens=HostTokens({"localhost": "hf_secret"}))   # another host name
    assert host.requests and all(r.authorization == "" for r in host.requests)


@pytest.mark.asyncio
async def test_missing_repo_and_missing_revision_are_named(host):
    HubRepo(host, REPO, dict(FILES)).serve()
    with pytest.raises(DownloadError) as info:
        await _list(host, repo="nobody/missing")
    assert info.value.kind == "not_found"
    assert "nobody/missing: Hugging Face has no such model, or it is private (HTTP 401)" in (
        info.value.message)
    with pytest.raises(DownloadError) as info:
        await _list(host, revision="nope")
    assert info.value.kind == "not_found" and "revision 'nope' was not found" in str(info.value)
    with pytest.raises(DownloadError, match="is not a Hugging Face repo id"):
        await _list(host, repo="../etc")


@pytest.mark.asyncio
async def test_an_answer_that_is_not_json_or_lacks_fields_is_named(host):
    hub = HubRepo(host, REPO, dict(FILES)).serve()

    async def portal(_request: web.Request) -> web.Response:
        return web.Response(text="<html>Please log in to the Wi-Fi</html>",
                            content_type="text/html")

    async def no_size(_request: web.Request) -> web.Response:
        return web.json_response([{"type": "file", "path": "config.json", "oid": "ab"}])

    host.routes[("GET", f"/api/models/{REPO}/tree/{hub.commit}")] = portal
    with pytest.raises(DownloadError) as info:
        await _list(host)
    assert info.value.kind == "bad_answer" and "is not JSON" in info.value.message
    host.routes[("GET", f"/api/models/{REPO}/tree/{hub.commit}")] = no_size
    with pytest.raises(DownloadError, match=f"{REPO}: entry 0 .*config.json.*'size'"):
        await _list(host)


@pytest.mark.asyncio
async def test_an_unreachable_hub_is_a_network_error_naming_the_repo():
    async with httpx.AsyncClient(trust_env=False) as client:
        with pytest.raises(DownloadError) as info:
            await list_repo(client, REPO, endpoint="http://127.0.0.1:9", timeout_s=5)
    assert info.value.kind == "network" and REPO in info.value.message


@pytest.mark.asyncio
async def test_one_files_entry_from_its_resolve_url(host):
    hub = HubRepo(host, REPO, dict(FILES)).serve()
    async with httpx.AsyncClient(trust_env=False) as client:
        weights = await file_info(client, host.url(f"/{REPO}/resolve/main/model.safetensors"))
        config = await file_info(client, host.url(f"/{REPO}/resolve/main/config.json"))
        nested = await file_info(client, host.url(f"/{REPO}/resolve/{hub.commit}/onnx/model.onnx"))
        missing = await file_info(client, host.url(f"/{REPO}/resolve/main/nothing.safetensors"))
        not_hub = await file_info(client, host.url("/some/file.bin"))
    assert weights is not None
    assert weights.sha256 == hashlib.sha256(FILES["model.safetensors"]).hexdigest()
    assert config is not None and config.sha256 == "" and config.size == len(FILES["config.json"])
    assert nested is not None and nested.path == "onnx/model.onnx" and nested.sha256
    assert missing is None and not_hub is None
    posts = [r for r in host.requests if "/paths-info/" in r.path]
    assert len(posts) == 4 and all(r.status == 200 for r in posts)


@pytest.mark.asyncio
async def test_a_token_the_hub_does_not_accept_is_named(host):
    HubRepo(host, REPO, dict(FILES), valid_tokens=frozenset({"hf_good"})).serve()
    with pytest.raises(DownloadError) as info:
        await _list(host, tokens=HostTokens({"127.0.0.1": "hf_revoked"}))
    assert info.value.kind == "gated" and "did not accept the token" in info.value.message
    assert REPO in info.value.message and "hf_revoked" not in info.value.message


# -- the double against the real client: huggingface_hub 2.4.0 (a dependency of transformers,
# diffusers and peft in our venv) classifies every answer as it would the real Hub's ------------

def test_the_real_client_lists_the_double_and_reads_lfs_from_gitattributes(host):
    files = {**FILES, "nested/weights.bin": b"w" * 50, "nested/notes.txt": b"plain"}
    files[".gitattributes"] = b"# lfs\n*.safetensors filter=lfs diff=lfs merge=lfs -text\n" \
                              b"nested/*.bin filter=lfs diff=lfs merge=lfs -text\n"
    hub = HubRepo(host, REPO, files, page_size=3).serve()
    api = HfApi(endpoint=host.url(""), token=False)
    assert api.model_info(REPO, revision="main").sha == hub.commit
    assert api.model_info(REPO).sha == hub.commit                  # /api/models/{repo}
    tree = {e.path: e for e in api.list_repo_tree(REPO, recursive=True)}
    assert set(tree) == set(files) | {"onnx", "nested"}
    lfs = {path for path, e in tree.items() if getattr(e, "lfs", None) is not None}
    assert lfs == {"model.safetensors", "nested/weights.bin"}      # onnx: no pattern here
    assert tree["model.safetensors"].lfs.sha256 == hashlib.sha256(
        files["model.safetensors"]).hexdigest()
    assert tree["config.json"].blob_id == hashlib.sha1(
        b"blob 27\x00" + files["config.json"]).hexdigest()
    top = {e.path for e in api.list_repo_tree(REPO)}             # recursive=False
    assert top == {p for p in tree if "/" not in p}
    info = api.get_paths_info(REPO, ["config.json", "absent.txt", "nested/weights.bin"])
    assert [e.path for e in info] == ["config.json", "nested/weights.bin"]
    bare = HubRepo(host, "tiny-org/no-attributes", {"model.safetensors": b"x" * 9}).serve()
    assert [getattr(e, "lfs", None) for e in api.list_repo_tree(bare.repo)] == [None]


def test_the_real_client_reads_the_doubles_errors(host):
    HubRepo(host, REPO, dict(FILES)).serve()
    HubRepo(host, "tiny-org/gated", dict(FILES), gated=True, token="hf_access",
            valid_tokens=frozenset({"hf_member"})).serve()
    api = HfApi(endpoint=host.url(""), token=False)
    with pytest.raises(RepositoryNotFoundError) as missing:
        api.model_info("nobody/missing")
    assert missing.value.response.status_code == 401
    with pytest.raises(RepositoryNotFoundError) as missing:
        list(api.list_repo_tree("nobody/missing", token="hf_member"))
    assert missing.value.response.status_code == 404
    with pytest.raises(RevisionNotFoundError):
        api.model_info(REPO, revision="nope")
    with pytest.raises(RevisionNotFoundError):
        list(api.list_repo_tree(REPO, revision="nope"))
    for token, status in ((False, 401), ("hf_member", 403)):
        with pytest.raises(GatedRepoError) as gated:
            api.model_info("tiny-org/gated", revision="main", token=token)
        assert gated.value.response.status_code == status
        answer = get_session().get(host.url("/tiny-org/gated/resolve/main/config.json"),
                                   headers={"Authorization": f"Bearer {token}"} if token else {})
        with pytest.raises(GatedRepoError):                     # resolve/: the same refusal
            hf_raise_for_status(answer)
        assert answer.status_code == status
    with pytest.raises(HfHubHTTPError) as invalid:
        api.model_info("tiny-org/gated", revision="main", token="hf_revoked")
    assert invalid.value.response.status_code == 401
    assert not isinstance(invalid.value, RepositoryNotFoundError)  # not read as a missing repo
    assert api.model_info("tiny-org/gated", revision="main", token="hf_access").sha
    paths_info = get_session().get(host.url(f"/api/models/{REPO}/paths-info/main"))
    assert paths_info.status_code == 405                          # a POST route
