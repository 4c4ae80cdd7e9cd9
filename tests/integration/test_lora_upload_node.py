"""Our ComfyUI upload node's handlers on a real aiohttp server, spoken to over real sockets
(raw httpx requests, and the app's own client ``core/comfy/lora_upload.py``)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from aiohttp import web

from isengard_desktop.core.comfy.lora_upload import (NoUploadNode, UploadError, push_lora,
                                                     sha256_of)
from tests.helpers.lora_node import lora_store_module

TOKEN = "s3cret-upload-token-123"
ROUTE = "/isengard/lora"


class Node:
    def __init__(self, url: str, folder: Path, store) -> None:
        self.url, self.folder, self.store = url, folder, store

    def files(self) -> list[str]:
        return sorted(p.name for p in self.folder.iterdir()) if self.folder.exists() else []


@pytest_asyncio.fixture
async def node(tmp_path):
    """The node's routes on a real aiohttp server; size limit 1 MiB."""
    mod = lora_store_module()
    folder = tmp_path / "models" / "loras" / "isengard"
    store = mod.LoraStore(folder, lambda: TOKEN, max_bytes=1024 * 1024)
    app = web.Application()
    store.add_to(app.router)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield Node(f"http://127.0.0.1:{port}", folder, store)
    await runner.cleanup()


def headers(name: str, data: bytes, token: str | None = TOKEN, sha: str | None = None) -> dict:
    out = {"X-Isengard-Name": name,
           "X-Isengard-Sha256": sha or hashlib.sha256(data).hexdigest()}
    if token is not None:
        out["X-Isengard-Token"] = token
    return out


async def post(url: str, name: str, data: bytes, **kw) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.post(url + ROUTE, content=data, headers=headers(name, data, **kw))


@pytest.mark.asyncio
async def test_success_lands_the_bytes_and_a_second_push_is_already_there(node):
    data = os.urandom(300_000)
    response = await post(node.url, "alice-sdxl.safetensors", data)
    assert response.status_code == 201, response.text
    assert response.json()["name"] == "isengard/alice-sdxl.safetensors"
    assert (node.folder / "alice-sdxl.safetensors").read_bytes() == data
    assert node.files() == ["alice-sdxl.safetensors"]          # no temp file left
    stamp = (node.folder / "alice-sdxl.safetensors").stat().st_mtime_ns
    again = await post(node.url, "alice-sdxl.safetensors", data)
    assert again.status_code == 200 and again.json()["already"] is True
    assert (node.folder / "alice-sdxl.safetensors").stat().st_mtime_ns == stamp   # untouched


@pytest.mark.asyncio
async def test_multipart_form_upload(node):
    data = os.urandom(5000)
    async with httpx.AsyncClient() as http:
        response = await http.post(
            node.url + ROUTE, files={"file": ("form.safetensors", data)},
            headers={"X-Isengard-Token": TOKEN,
                     "X-Isengard-Sha256": hashlib.sha256(data).hexdigest()})
    assert response.status_code == 201, response.text
    assert (node.folder / "form.safetensors").read_bytes() == data


@pytest.mark.asyncio
@pytest.mark.parametrize("token", [None, "", "wrong", TOKEN + "x", "Bearer " + TOKEN])
async def test_token_missing_or_wrong_is_401_and_nothing_is_written(node, token):
    response = await post(node.url, "a.safetensors", b"x" * 10, token=token)
    assert response.status_code == 401
    assert "token" in response.json()["message"]
    assert node.files() == []


@pytest.mark.asyncio
async def test_bearer_authorization_is_accepted(node):
    data = b"y" * 100
    async with httpx.AsyncClient() as http:
        response = await http.post(node.url + ROUTE, content=data, headers={
            **headers("b.safetensors", data, token=None), "Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 201


@pytest.mark.asyncio
async def test_no_token_configured_refuses_everything(tmp_path):
    mod = lora_store_module()
    store = mod.LoraStore(tmp_path / "l", lambda: None)
    app = web.Application()
    store.add_to(app.router)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        response = await post(url, "a.safetensors", b"z", token="")
        assert response.status_code == 503 and "token.txt" in response.json()["message"]
        response = await post(url, "a.safetensors", b"z", token="anything")
        assert response.status_code == 503
    finally:
        await runner.cleanup()
    assert not (tmp_path / "l").exists()


@pytest.mark.asyncio
async def test_size_limit_from_content_length_and_while_streaming(node):
    big = b"\0" * (1024 * 1024 + 1)
    response = await post(node.url, "big.safetensors", big)       # Content-Length says it
    assert response.status_code == 413
    assert node.files() == []

    async def chunks():                                            # no Content-Length
        for _ in range(3):
            yield b"\1" * (512 * 1024)

    async with httpx.AsyncClient() as http:
        response = await http.post(node.url + ROUTE, content=chunks(),
                                    headers=headers("big.safetensors", b"", sha="0" * 64))
    assert response.status_code == 413
    assert node.files() == []                                      # temp file removed


@pytest.mark.asyncio
@pytest.mark.parametrize("name", [
    "../escape.safetensors", "..\\escape.safetensors", "sub/x.safetensors",
    "/etc/x.safetensors", "C:x.safetensors", "C:\\x.safetensors", "..safetensors",
    "x..safetensors", ".hidden.safetensors", "x.ckpt", "x.safetensors.exe", "x.pt",
    "CON.safetensors", "nul.safetensors", "com1.safetensors", "a\0b.safetensors",
    " x.safetensors", ".safetensors", "", "a" * 300 + ".safetensors",
])
async def test_path_traversal_and_bad_names_are_400(node, name, tmp_path):
    data = b"payload"
    async with httpx.AsyncClient() as http:
        raw = headers("ok.safetensors", data)
        # header values cannot carry NUL or edge spaces; those go as a query name to GET
        if "\0" in name or name != name.strip():
            response = await http.get(node.url + ROUTE, params={
                "name": name, "sha256": raw["X-Isengard-Sha256"]},
                headers={"X-Isengard-Token": TOKEN})
        else:
            raw["X-Isengard-Name"] = name
            response = await http.post(node.url + ROUTE, content=data, headers=raw)
    assert response.status_code == 400, (name, response.text)
    assert node.files() == []
    assert not (tmp_path / "models" / "escape.safetensors").exists()
    assert not (tmp_path / "models" / "loras" / "escape.safetensors").exists()


@pytest.mark.asyncio
async def test_hash_mismatch_is_400_and_the_temp_file_is_removed(node):
    data = os.urandom(2000)
    response = await post(node.url, "h.safetensors", data, sha="ab" * 32)
    assert response.status_code == 400 and "SHA-256" in response.json()["message"]
    assert node.files() == []
    response = await post(node.url, "h.safetensors", data, sha="not-hex")
    assert response.status_code == 400


@pytest.mark.asyncio
async def test_same_name_different_file_is_409_and_the_first_stays(node):
    first, second = os.urandom(1000), os.urandom(1000)
    assert (await post(node.url, "c.safetensors", first)).status_code == 201
    response = await post(node.url, "c.safetensors", second)
    assert response.status_code == 409
    assert (node.folder / "c.safetensors").read_bytes() == first
    assert node.files() == ["c.safetensors"]


@pytest.mark.asyncio
async def test_get_says_present_conflict_or_missing(node):
    data = os.urandom(100)
    sha = hashlib.sha256(data).hexdigest()
    async with httpx.AsyncClient() as http:
        def ask(sha256: str):
            return http.get(node.url + ROUTE, params={"name": "g.safetensors", "sha256": sha256},
                            headers={"X-Isengard-Token": TOKEN})
        assert (await ask(sha)).json()["present"] is False
        await post(node.url, "g.safetensors", data)
        body = (await ask(sha)).json()
        assert body["present"] is True and body["name"] == "isengard/g.safetensors"
        other = (await ask("0" * 64)).json()
        assert other["present"] is False and other["conflict"] is True
        no_token = await http.get(node.url + ROUTE, params={"name": "g.safetensors",
                                                             "sha256": sha})
        assert no_token.status_code == 401


@pytest.mark.asyncio
async def test_app_client_pushes_once_with_progress(node, tmp_path):
    lora = tmp_path / "me-v1.safetensors"
    lora.write_bytes(os.urandom(700_000))
    sha = sha256_of(lora)
    seen = []
    async with httpx.AsyncClient() as http:
        result = await push_lora(http, node.url, TOKEN, lora, sha256=sha, progress=seen.append)
        assert result.uploaded and result.name == "isengard/me-v1.safetensors"
        assert seen[-1].done == seen[-1].total == 700_000 and seen[0].done == 0
        again = await push_lora(http, node.url, TOKEN, lora, sha256=sha)
        assert not again.uploaded
        with pytest.raises(UploadError, match="Upload token"):
            await push_lora(http, node.url, "bad", lora, sha256=sha)
        with pytest.raises(NoUploadNode):
            await push_lora(http, node.url + "/nothing-here", TOKEN, lora, sha256=sha)
    assert (node.folder / lora.name).read_bytes() == lora.read_bytes()


def test_node_package_imports_outside_comfyui():
    """The package's __init__ is inert without ComfyUI (no server module)."""
    import importlib.util

    from isengard_desktop.core.comfy.lora_upload import NODE_FOLDER

    spec = importlib.util.spec_from_file_location(
        "isengard_lora_upload_pkg", NODE_FOLDER / "__init__.py",
        submodule_search_locations=[str(NODE_FOLDER)])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.NODE_CLASS_MAPPINGS == {}


def test_check_name_accepts_plain_names():
    check = lora_store_module().check_name
    for name in ("alice.safetensors", "Alice Smith v2.safetensors", "a-b_c.1.safetensors"):
        assert check(name) == name


@pytest.mark.asyncio
async def test_node_package_registers_its_routes_inside_comfyui(tmp_path, monkeypatch):
    """ComfyUI's way: PromptServer.instance.routes is a RouteTableDef that server.add_routes()
    adds to the app after custom nodes load; folder_paths.get_folder_paths("loras") lists the
    LoRA folders, the first being models/loras. Stand-ins for both modules, then the real
    package __init__ loaded like ComfyUI's load_custom_node (a package spec from the folder)."""
    import importlib.util
    import sys
    import types

    from isengard_desktop.core.comfy.lora_upload import NODE_FOLDER

    routes = web.RouteTableDef()
    server_mod = types.ModuleType("server")
    server_mod.PromptServer = type("PromptServer", (), {})  # type: ignore[attr-defined]
    server_mod.PromptServer.instance = types.SimpleNamespace(routes=routes)
    loras = tmp_path / "ComfyUI" / "models" / "loras"
    folder_paths = types.ModuleType("folder_paths")
    folder_paths.get_folder_paths = lambda name: [str(loras)] if name == "loras" else []
    monkeypatch.setitem(sys.modules, "server", server_mod)
    monkeypatch.setitem(sys.modules, "folder_paths", folder_paths)
    monkeypatch.setenv("ISENGARD_UPLOAD_TOKEN", TOKEN)
    name = "custom_nodes.isengard_lora_upload_test"
    spec = importlib.util.spec_from_file_location(
        name, NODE_FOLDER / "__init__.py", submodule_search_locations=[str(NODE_FOLDER)])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    assert module.NODE_CLASS_MAPPINGS == {}
    app = web.Application()
    app.add_routes(routes)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        data = os.urandom(1234)
        response = await post(url, "glue.safetensors", data)
        assert response.status_code == 201, response.text
    finally:
        await runner.cleanup()
    assert (loras / "isengard" / "glue.safetensors").read_bytes() == data
