"""The ComfyUI test double speaks like the recordings in tests/fixtures/comfyui/.

Everything goes over real sockets with httpx + websockets (not the app's client). Message
sequences are compared with the recorded ``ws_messages`` after normalising prompt ids (P0, P1,
... in order of appearance), timestamps and the double's folders.
"""

from __future__ import annotations

import asyncio
import copy
import io
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import websockets
from PIL import Image

from tests.helpers import comfy_double as double_module
from tests.helpers.comfy_double import ComfyDouble

# the double's fixtures (plain assignments: no conftest, no F811 on the parameters)
comfy_double = double_module.comfy_double
make_comfy_double = double_module.make_comfy_double

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "comfyui"
FAKE_MAIN = Path(__file__).resolve().parents[1] / "helpers" / "fake_comfyui_main.py"
TINY = "isengard_tiny_sd15.safetensors"


def load(name: str) -> Any:
    return json.loads((FIX / name).read_text(encoding="utf-8"))


# ------------------------------------------------------------------------------------------------
# normalisation


class Norm:
    """Turns messages into comparable tuples; prompt ids become P0, P1, ... by first appearance."""

    def __init__(self, loose_files: bool = False) -> None:
        self.ids: dict[str, str] = {}
        self.loose_files = loose_files

    def pid(self, value: Any) -> Any:
        if isinstance(value, str) and len(value) == 36 and value.count("-") == 4:
            return self.ids.setdefault(value, f"P{len(self.ids)}")
        return value

    def text(self, msg: dict[str, Any]) -> tuple:
        t, d = msg["type"], copy.deepcopy(msg["data"])
        d.pop("timestamp", None)
        if "sid" in d:
            d["sid"] = "<sid>"
        if "prompt_id" in d:
            d["prompt_id"] = self.pid(d["prompt_id"])
        if t == "progress_state":
            d["nodes"] = {n: (v["state"], json.dumps(v["value"]), json.dumps(v["max"]),
                              sorted(v)) for n, v in d["nodes"].items()}
        if t == "execution_error":
            d["exception_message"] = d["exception_message"].rsplit("/", 1)[-1]
            d["traceback"] = bool(d["traceback"])
            d["current_inputs"] = sorted(d["current_inputs"])
        if t == "execution_interrupted":
            d["executed"] = sorted(d["executed"])
        text = json.dumps(d, sort_keys=True)
        return (t, loosen(text) if self.loose_files else text)

    def binary(self, event: int, fmt: Any, meta: Any) -> tuple:
        if isinstance(meta, dict):
            meta = dict(meta, prompt_id=self.pid(meta["prompt_id"]))
        return ("binary", event, fmt, json.dumps(meta, sort_keys=True))

    def frame(self, frame: str | bytes) -> tuple:
        if isinstance(frame, bytes):
            event = struct.unpack(">I", frame[:4])[0]
            if event == 1:
                return self.binary(1, struct.unpack(">I", frame[4:8])[0], None)
            n = struct.unpack(">I", frame[4:8])[0]
            return self.binary(event, None, json.loads(frame[8:8 + n]))
        return self.text(json.loads(frame))


def loosen(text: str) -> str:
    """Forget the counters of saved file names (they depend on what ran before)."""
    return re.sub(r"_\d{5}_\.png", "_#_.png", text)


def recorded(messages: list[dict[str, Any]], loose_files: bool = False) -> list[tuple]:
    norm = Norm(loose_files)
    out = []
    for m in messages:
        if m.get("kind") == "text":
            out.append(norm.text(m["msg"]))
        elif m.get("kind") == "binary":
            out.append(norm.binary(m["event_type"], m.get("image_format"), m.get("metadata")))
    return out


def ours(frames: list[str | bytes], loose_files: bool = False) -> list[tuple]:
    norm = Norm(loose_files)
    return [norm.frame(f) for f in frames]


def types(seq: list[tuple]) -> list[str]:
    return [s[0] if s[0] != "binary" else f"binary{s[1]}" for s in seq]


# ------------------------------------------------------------------------------------------------
# clients


class Sock:
    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.frames: list[str | bytes] = []

    @classmethod
    async def open(cls, double: ComfyDouble, cid: str | None = None, flags: bool = False) -> Sock:
        url = double.ws_url + (f"?clientId={cid}" if cid else "")
        ws = await websockets.connect(url, compression=None)
        if flags:
            await ws.send(json.dumps({"type": "feature_flags",
                                      "data": {"supports_preview_metadata": True}}))
        return cls(ws)

    async def until(self, pred: Any, timeout: float = 10.0) -> list[str | bytes]:
        start = len(self.frames)
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.ws.recv()
                self.frames.append(frame)
                if pred(frame):
                    return self.frames[start:]

    async def until_done(self, prompt_id: str, timeout: float = 10.0) -> list[str | bytes]:
        def done(f: str | bytes) -> bool:
            if isinstance(f, bytes):
                return False
            m = json.loads(f)
            return m["type"] == "executing" and m["data"].get("node") is None \
                and m["data"].get("prompt_id") == prompt_id
        return await self.until(done, timeout)

    async def until_type(self, typ: str, timeout: float = 10.0, **fields: Any) -> list:
        def match(f: str | bytes) -> bool:
            if isinstance(f, bytes):
                return False
            m = json.loads(f)
            return m["type"] == typ and all(m["data"].get(k) == v for k, v in fields.items())
        return await self.until(match, timeout)

    async def quiet(self, seconds: float = 0.15) -> list[str | bytes]:
        got: list[str | bytes] = []
        try:
            async with asyncio.timeout(seconds):
                while True:
                    got.append(await self.ws.recv())
        except TimeoutError:
            pass
        self.frames += got
        return got

    async def close(self) -> None:
        await self.ws.close()


def http(double: ComfyDouble) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=double.url, timeout=10)


def graph_01(color: int = 3368652, blur: int = 3, prefix: str = "isengard_test") -> dict:
    return {"1": {"class_type": "EmptyImage", "inputs": {"width": 512, "height": 512,
                                                         "batch_size": 2, "color": color}},
            "2": {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": blur,
                                                        "sigma": 1.0}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0],
                                                        "filename_prefix": prefix}}}


def strip_history(entry: dict, loose_files: bool = False) -> dict:
    norm = Norm()
    e = json.loads(loosen(json.dumps(entry))) if loose_files else copy.deepcopy(entry)
    e["prompt"][1] = norm.pid(e["prompt"][1])
    e["prompt"][0] = "<n>"
    e["prompt"][3].pop("client_id", None)
    for m in e["status"]["messages"]:
        m[1].pop("timestamp", None)
        m[1]["prompt_id"] = norm.pid(m[1]["prompt_id"])
        if m[0] == "execution_error":
            m[1]["exception_message"] = m[1]["exception_message"].rsplit("/", 1)[-1]
            m[1]["traceback"] = bool(m[1]["traceback"])
        if "executed" in m[1]:
            m[1]["executed"] = sorted(m[1]["executed"])
    return e


def only_entry(history_body: dict) -> dict:
    assert len(history_body) == 1
    return next(iter(history_body.values()))


# ------------------------------------------------------------------------------------------------
# connect, normal, cached, partial cache


@pytest.mark.asyncio
async def test_connect_handshakes(comfy_double: ComfyDouble) -> None:
    rec = load("ws/connect_handshakes.json")
    a = await Sock.open(comfy_double, str(uuid.uuid4()))
    b = await Sock.open(comfy_double, str(uuid.uuid4()), flags=True)
    n = await Sock.open(comfy_double)
    got_a = await a.until(lambda f: True)
    got_b = await b.until_type("feature_flags")
    got_n = await n.until(lambda f: True)
    assert ours(got_a) == recorded(rec["A_plain_client"])
    assert ours(got_b) == recorded(rec["B_feature_flags_client"])
    assert ours(got_n) == recorded(rec["N_no_clientId"])
    sid = json.loads(got_n[0])["data"]["sid"]
    assert len(sid) == 32 and int(sid, 16) >= 0
    for s in (a, b, n):
        await s.close()


@pytest.mark.asyncio
async def test_normal_cached_and_partial_runs(comfy_double: ComfyDouble) -> None:
    cid = str(uuid.uuid4())
    sock = await Sock.open(comfy_double, cid)
    await sock.until(lambda f: True)
    async with http(comfy_double) as h:
        for name, body in (
            ("run_01_normal.json", {"prompt": graph_01(), "client_id": cid}),
            ("run_02_cached_identical.json", {"prompt": graph_01(), "client_id": cid}),
            ("run_03_partial_cache_own_prompt_id.json",
             {"prompt": graph_01(blur=5), "client_id": cid, "prompt_id": str(uuid.uuid4()),
              "extra_data": {"isengard": {"note": "x"}}}),
        ):
            rec = load(name)
            r = await h.post("/prompt", json=body)
            assert r.status_code == 200
            resp = r.json()
            assert set(resp) == {"prompt_id", "number", "node_errors"}
            assert resp["number"] == rec["post"]["body"]["number"]
            if "prompt_id" in body:
                assert resp["prompt_id"] == body["prompt_id"]
            frames = await sock.until_done(resp["prompt_id"])
            assert ours(frames) == recorded(rec["ws_messages"]), name
            hist = (await h.get(f"/history/{resp['prompt_id']}")).json()
            assert strip_history(only_entry(hist)) == strip_history(only_entry(rec["history"]["body"]))
        # /view of the first run's files, as recorded
        for view in load("run_01_normal.json")["view"]:
            r = await h.get(view["url"])
            assert r.status_code == 200
            assert r.headers["content-type"] == view["headers"]["content-type"]
            assert r.headers["content-disposition"] == view["headers"]["content-disposition"]
            if view["headers"]["content-type"] == "image/png":
                assert len(r.content) == view["byte_count"]  # same PNG, prompt chunk included
                assert {"etag", "last-modified", "accept-ranges"} <= set(r.headers)
                img = Image.open(io.BytesIO(r.content))
                assert img.size == (512, 512)
                assert json.loads(img.info["prompt"]) == graph_01()
            else:
                assert r.content[:4] == b"RIFF"
        assert (await h.get("/view", params={"filename": "nope.png"})).status_code == 404
        assert (await h.get("/view", params={"filename": "isengard_test_00001_.png",
                                            "type": "bogus"})).status_code == 400
    await sock.close()
    assert comfy_double.requests["/prompt"] == 3
    assert comfy_double.accepted_prompts[2]["extra_data"] == {"isengard": {"note": "x"}}


@pytest.mark.asyncio
async def test_queue_snapshot_and_http_shapes(comfy_double: ComfyDouble) -> None:
    comfy_double.hold_queue = True
    async with http(comfy_double) as h:
        for name in ("GET_system_stats", "GET_queue_idle", "GET_history_empty", "GET_prompt_get",
                     "GET_features", "GET_embeddings", "GET_models", "GET_models_checkpoints",
                     "GET_models_loras", "GET_models_vae", "GET_history_unknown_id",
                     "GET_object_info_unknown_node", "GET_models_unknown_folder",
                     "GET_view_missing_file", "GET_view_bad_type"):
            rec = load(f"http/{name}.json")
            r = await h.get(rec["request"]["url"])
            assert r.status_code == rec["status"], name
            if "body" in rec:
                assert r.json() == rec["body"], name
            else:
                assert r.content == b"", name
        r = await h.post("/free", json={"unload_models": True, "free_memory": True})
        assert (r.status_code, r.content) == (200, b"")
        assert comfy_double.frees == [{"unload_models": True, "free_memory": True}]
        ext = (await h.get("/extensions")).json()
        assert ext and all(e.startswith("/extensions/") for e in ext)
        info = (await h.get("/object_info")).json()
        assert info == load("object_info/object_info_full.json")
        selected = load("object_info/object_info_selected.json")
        for node, entry in selected.items():
            assert (await h.get(f"/object_info/{node}")).json() == {node: entry}
        # a queued prompt: the 5-element list of /queue, extra_data included
        body = {"prompt": graph_01(), "client_id": "c1", "extra_data": {"isengard": {"job": 1}}}
        pid = (await h.post("/prompt", json=body)).json()["prompt_id"]
        q = (await h.get("/queue")).json()
        assert q["queue_running"] == []
        assert q["queue_pending"] == [[0, pid, graph_01(), {"isengard": {"job": 1},
                                                             "client_id": "c1"}, ["3"]]]
        assert (await h.get("/prompt")).json() == {"exec_info": {"queue_remaining": 1}}
        comfy_double.hold_queue = False
        await asyncio.to_thread(comfy_double.wait_for_prompt, pid)
        assert (await h.get("/queue")).json() == {"queue_running": [], "queue_pending": []}


# ------------------------------------------------------------------------------------------------
# validation


def _norm_error_body(body: dict) -> dict:
    b = copy.deepcopy(body)
    b.pop("prompt_id", None)
    b.pop("number", None)
    return b


@pytest.mark.asyncio
async def test_validation_errors_match_recordings(make_comfy_double: Any) -> None:
    double = make_comfy_double()
    cid = str(uuid.uuid4())
    sock = await Sock.open(double, cid)
    await sock.until(lambda f: True)
    files = sorted((FIX / "errors").glob("validation_*.json"))
    assert len(files) == 19
    numbers = []
    expected_number = [p.name for p in files if "invalid_json" not in p.name].index(
        "validation_one_good_one_bad_output.json")
    async with http(double) as h:
        for path in files:
            rec = json.loads(path.read_text())
            if path.name == "validation_invalid_json_body.json":
                r = await h.post("/prompt", content=b"{not json",
                                 headers={"content-type": "application/json"})
                assert r.status_code == 500
                assert r.text == rec["body_text"]
                assert r.headers["content-type"] == rec["headers"]["content-type"]
                continue
            body = copy.deepcopy(rec["request"]["json"])
            if "client_id" in body:
                body["client_id"] = cid
            r = await h.post("/prompt", json=body)
            assert r.status_code == rec["status"], path.name
            assert _norm_error_body(r.json()) == _norm_error_body(rec["body"]), path.name
            if r.status_code == 200:
                numbers.append(r.json()["number"])
                frames = await sock.until_done(r.json()["prompt_id"])
                hist = (await h.get(f"/history/{r.json()['prompt_id']}")).json()
                assert strip_history(only_entry(hist)) == \
                    strip_history(only_entry(rec["history"]["body"]))
                assert "executed" in types(ours(frames))
        assert numbers == [expected_number]  # rejected prompts use up numbers too
        # a checkpoint list with a model in it (ksampler capture)
        kd = make_comfy_double(models={"checkpoints": [TINY]})
        rec = load("ksampler/errors/validation_checkpoint_not_found_nonempty_list.json")
        async with http(kd) as h2:
            r = await h2.post("/prompt", json=rec["request"]["json"])
            assert (r.status_code, r.json()) == (400, rec["body"])
            r = await h2.get("/object_info/CheckpointLoaderSimple")
            assert r.json() == load("ksampler/http/GET_object_info_CheckpointLoaderSimple.json")["body"]
            assert (await h2.get("/models/checkpoints")).json() == [TINY]
    # rejected prompts sent nothing: the socket only saw the accepted (partly valid) run
    assert [t for t in types(ours(sock.frames)) if t == "execution_start"] == ["execution_start"]
    await sock.close()


@pytest.mark.asyncio
async def test_front_numbers_and_queue_ops_and_global_interrupt(make_comfy_double: Any) -> None:
    """run_06: 4 long prompts (4th with front), delete, clear, POST /interrupt without body."""
    rec = load("run_06_interrupt_and_queue_ops.json")
    double = make_comfy_double(node_delay=0.3)
    a_id, b_id = str(uuid.uuid4()), str(uuid.uuid4())
    a = await Sock.open(double, a_id)
    b = await Sock.open(double, b_id, flags=True)
    await a.until(lambda f: True)
    await b.until_type("feature_flags")
    long_graph = rec["posts"][0]["request"]["json"]["prompt"]

    def colored(color: int) -> dict:
        g = copy.deepcopy(long_graph)
        g["1"]["inputs"]["color"] = color
        return g

    async with http(double) as h:
        r1 = (await h.post("/prompt", json={"prompt": long_graph, "client_id": a_id})).json()
        await a.until_type("execution_start")
        r2 = (await h.post("/prompt", json={"prompt": colored(2236962), "client_id": a_id})).json()
        r3 = (await h.post("/prompt", json={"prompt": colored(3355443), "client_id": a_id})).json()
        r4 = (await h.post("/prompt", json={"prompt": colored(4473924), "client_id": a_id,
                                            "front": True})).json()
        assert [r1["number"], r2["number"], r3["number"], r4["number"]] == [0, 1, 2, -3]
        q = (await h.get("/queue")).json()
        assert [x[1] for x in q["queue_running"]] == [r1["prompt_id"]]
        # heap order, as recorded: front first, then 26, 25
        assert [x[0] for x in q["queue_pending"]] == [-3, 2, 1]
        assert all(len(x) == 5 for x in q["queue_pending"] + q["queue_running"])
        r = await h.post("/queue", json={"delete": [r2["prompt_id"]]})
        assert (r.status_code, r.content) == (200, b"")
        assert [x[0] for x in (await h.get("/queue")).json()["queue_pending"]] == [-3, 2]
        r = await h.post("/queue", json={"clear": True})
        assert (r.status_code, r.content) == (200, b"")
        assert (await h.get("/queue")).json()["queue_pending"] == []
        await a.until_type("executing", node="11")
        r = await h.post("/interrupt")
        assert (r.status_code, r.content) == (200, b"")
        await a.until_done(r1["prompt_id"])
        hist = (await h.get(f"/history/{r1['prompt_id']}")).json()
        assert strip_history(only_entry(hist)) == \
            strip_history(only_entry(rec["history_interrupted"]["body"]))
        assert (await h.get(f"/history/{r2['prompt_id']}")).json() == {}
        assert (await h.get("/queue")).json() == rec["queue_after_interrupt"]["body"]
    got = ours(a.frames[1:])
    want = recorded(rec["ws_messages_A"])
    # the status broadcasts interleave by timing; compare them apart
    assert [s for s in got if s[0] != "status"] == [s for s in want if s[0] != "status"]
    assert [s for s in got if s[0] == "status"] == [s for s in want if s[0] == "status"]
    await b.quiet(0.05)
    assert types(ours(b.frames[2:])) == ["status"] * 8  # B only saw the broadcasts
    assert double.interrupts == [{}]
    await a.close()
    await b.close()


@pytest.mark.asyncio
async def test_targeted_interrupt(make_comfy_double: Any) -> None:
    rec = load("run_07_targeted_interrupt.json")
    double = make_comfy_double(node_delay=0.3)
    cid = str(uuid.uuid4())
    a = await Sock.open(double, cid)
    await a.until(lambda f: True)
    async with http(double) as h:
        body = copy.deepcopy(rec["post"]["request"]["json"])
        body["client_id"] = cid
        pid = (await h.post("/prompt", json=body)).json()["prompt_id"]
        await a.until_type("executing", node="10")
        r = await h.post("/interrupt", json={"prompt_id": "00000000-0000-0000-0000-000000000000"})
        assert (r.status_code, r.content) == (200, b"")
        await a.until_type("executing", node="11")
        await h.post("/interrupt", json={"prompt_id": pid})
        await a.until_done(pid)
        r = await h.post("/interrupt", json={})
        assert (r.status_code, r.content) == (200, b"")
        hist = (await h.get(f"/history/{pid}")).json()
        assert strip_history(only_entry(hist)) == strip_history(only_entry(rec["history"]["body"]))
    assert ours(a.frames[1:]) == recorded(rec["ws_messages"])
    await a.close()


# ------------------------------------------------------------------------------------------------
# uploads and runtime errors


@pytest.mark.asyncio
async def test_upload_and_runtime_error(comfy_double: ComfyDouble) -> None:
    rec = load("upload.json")
    png = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 20, 30)).save(png, format="PNG")
    data = png.getvalue()
    other = io.BytesIO()
    Image.new("RGB", (64, 48), (99, 20, 30)).save(other, format="PNG")
    async with http(comfy_double) as h:
        async def up(content: bytes, name: str = "isengard_upload.png", **fields: str) -> httpx.Response:
            return await h.post("/upload/image", files={"image": (name, content, "image/png")},
                                data=fields)
        r = await up(data, type="input", overwrite="true")
        assert r.json() == rec["upload_overwrite_true"]["body"]
        assert (await up(data)).json() == rec["upload_same_name_again_no_overwrite"]["body"]
        assert (await up(other.getvalue())).json() == \
            rec["upload_same_name_different_bytes_no_overwrite"]["body"]
        assert (await up(data, subfolder="isengard", type="input")).json() == \
            rec["upload_into_subfolder"]["body"]
        assert (await up(data, type="temp")).json() == rec["upload_type_temp"]["body"]
        r = await h.post("/upload/image", files={"other": ("x.png", data, "image/png")})
        assert (r.status_code, r.content) == (400, b"")
        r = await up(b"this is not an image\n", "isengard_corrupt.png")
        assert r.json() == rec["upload_corrupt_png"]["body"]
        r = await h.get("/view", params={"filename": "isengard_upload.png", "type": "input",
                                         "subfolder": ""})
        assert r.content == data
        assert r.headers["content-disposition"] == 'filename="isengard_upload.png"'
        info = (await h.get("/object_info/LoadImage")).json()
        assert info == rec["object_info_LoadImage_after_upload"]
        # LoadImage of the uploads (run_04/run_04b) and of the corrupt file (run_05)
        cid = str(uuid.uuid4())
        a = await Sock.open(comfy_double, cid)
        await a.until(lambda f: True)
        for name in ("run_04_load_uploaded_image.json", "run_04b_load_uploaded_image_subfolder.json",
                     "run_05_runtime_execution_error.json"):
            rec_run = load(name)
            body = copy.deepcopy(rec_run["post"]["request"]["json"])
            body["client_id"] = cid
            pid = (await h.post("/prompt", json=body)).json()["prompt_id"]
            frames = await a.until_done(pid)
            assert ours(frames, True) == recorded(rec_run["ws_messages"], True), name
            hist = (await h.get(f"/history/{pid}")).json()
            assert strip_history(only_entry(hist), True) == \
                strip_history(only_entry(rec_run["history"]["body"]), True), name
        err = [json.loads(f) for f in frames if isinstance(f, str)]
        err = next(m["data"] for m in err if m["type"] == "execution_error")
        assert err["exception_type"] == "PIL.UnidentifiedImageError"
        assert err["exception_message"] == \
            f"cannot identify image file '{comfy_double.input_dir / 'isengard_corrupt.png'}'\n"
        await a.close()
    assert len(comfy_double.uploads) == 6


# ------------------------------------------------------------------------------------------------
# binary frames, no client id, reconnect quirk


@pytest.mark.asyncio
async def test_save_image_websocket_frames(comfy_double: ComfyDouble) -> None:
    a_id, b_id = str(uuid.uuid4()), str(uuid.uuid4())
    a = await Sock.open(comfy_double, a_id)
    b = await Sock.open(comfy_double, b_id, flags=True)
    await a.until(lambda f: True)
    await b.until_type("feature_flags")
    async with http(comfy_double) as h:
        for sock, cid, name in ((a, a_id, "run_08a_save_image_websocket_plain_client.json"),
                                (b, b_id, "run_08b_save_image_websocket_preview_metadata_client.json")):
            rec = load(name)
            body = copy.deepcopy(rec["post"]["request"]["json"])
            body["client_id"] = cid
            await sock.quiet(0.05)  # drop the broadcasts of the previous run
            pid = (await h.post("/prompt", json=body)).json()["prompt_id"]
            frames = await sock.until_done(pid)
            assert ours(frames) == recorded(rec["ws_messages"]), name
            hist = (await h.get(f"/history/{pid}")).json()
            assert strip_history(only_entry(hist)) == strip_history(only_entry(rec["history"]["body"]))
            binary = [f for f in frames if isinstance(f, bytes)]
            assert len(binary) == 2
            if sock is a:
                assert binary[0] == (FIX / "binary_samples" / "A_event1_fmt2.bin").read_bytes()
            else:
                n = struct.unpack(">I", binary[0][4:8])[0]
                assert n == 165
                img = Image.open(io.BytesIO(binary[0][8 + n:]))
                assert (img.format, img.size, img.getpixel((0, 0))) == ("PNG", (64, 64), (255, 136, 0))
    await a.close()
    await b.close()


@pytest.mark.asyncio
async def test_prompt_without_client_id(comfy_double: ComfyDouble) -> None:
    rec = load("run_09_prompt_without_client_id.json")
    a = await Sock.open(comfy_double, str(uuid.uuid4()))
    b = await Sock.open(comfy_double, str(uuid.uuid4()), flags=True)
    await a.until(lambda f: True)
    await b.until_type("feature_flags")
    async with http(comfy_double) as h:
        pid = (await h.post("/prompt", json=rec["post"]["request"]["json"])).json()["prompt_id"]
        last = lambda f: json.loads(f) == {"type": "status", "data": {"status": {
            "exec_info": {"queue_remaining": 0}}}}
        got_a = await a.until(last)
        got_b = await b.until(last)
        assert ours(got_a) == recorded(rec["ws_messages_A"])
        assert ours(got_b) == recorded(rec["ws_messages_B"])
        hist = (await h.get(f"/history/{pid}")).json()
        assert strip_history(only_entry(hist), True) == \
            strip_history(only_entry(rec["history"]["body"]), True)
        assert only_entry(hist)["prompt"][3] == {}
    await a.close()
    await b.close()


@pytest.mark.asyncio
async def test_reconnect_quirk(make_comfy_double: Any) -> None:
    rec = load("run_10_reconnect_same_client_id.json")
    double = make_comfy_double(node_delay=0.3)
    cid = str(uuid.uuid4())
    c1 = await Sock.open(double, cid)
    await c1.until(lambda f: True)
    async with http(double) as h:
        body = copy.deepcopy(rec["post"]["request"]["json"])
        body["client_id"] = cid
        pid = (await h.post("/prompt", json=body)).json()["prompt_id"]
        await c1.until_type("executing", node="10")
        c2 = await Sock.open(double, cid)
        await c2.until_done(pid)
        assert ours(c1.frames) == recorded(rec["C1_first_socket"])
        assert ours(c2.frames) == recorded(rec["C2_second_socket_same_clientId"])
        assert await c1.quiet(0.05) == []
        await c1.close()
        async with asyncio.timeout(5):
            while double.connected_clients():
                await asyncio.sleep(0.01)
        body2 = copy.deepcopy(rec["post_after_old_socket_closed"]["request"]["json"])
        body2["client_id"] = cid
        pid2 = (await h.post("/prompt", json=body2)).json()["prompt_id"]
        await asyncio.to_thread(double.wait_for_prompt, pid2)
        assert await c2.quiet(0.1) == []  # not even the status broadcasts
        c3 = await Sock.open(double, cid)   # reconnecting again works
        assert types(ours(await c3.until(lambda f: True))) == ["status"]
        await c2.close()
        await c3.close()


# ------------------------------------------------------------------------------------------------
# KSampler runs (ksampler capture)


def ks_graph(seed: int, steps: int = 6) -> dict:
    return load("ksampler/run_ks1_first_run_plain_client.json")["post"]["request"]["json"][
        "prompt"] | {"3": {"class_type": "KSampler", "inputs": {
            "seed": seed, "steps": steps, "cfg": 7.0, "sampler_name": "euler",
            "scheduler": "normal", "denoise": 1.0, "model": ["4", 0], "positive": ["6", 0],
            "negative": ["7", 0], "latent_image": ["5", 0]}}}


@pytest.mark.asyncio
async def test_ksampler_runs(make_comfy_double: Any) -> None:
    double = make_comfy_double(models={"checkpoints": [TINY]}, preview_method="latent2rgb",
                               step_delay=0.005)
    a_id, b_id = str(uuid.uuid4()), str(uuid.uuid4())
    a = await Sock.open(double, a_id)
    b = await Sock.open(double, b_id, flags=True)
    await a.until(lambda f: True)
    await b.until_type("feature_flags")
    async with http(double) as h:
        assert (await h.get("/models/checkpoints")).json() == \
            load("ksampler/http/GET_models_checkpoints.json")["body"]
        for sock, cid, name in ((a, a_id, "run_ks1_first_run_plain_client.json"),
                                (a, a_id, "run_ks2_identical_cached.json"),
                                (a, a_id, "run_ks3_new_seed_partial_cache.json"),
                                (b, b_id, "run_ks4_preview_metadata_client.json")):
            rec = load(f"ksampler/{name}")
            body = copy.deepcopy(rec["post"]["request"]["json"])
            body["client_id"] = cid
            await sock.quiet(0.05)  # drop the broadcasts of the previous run
            resp = (await h.post("/prompt", json=body)).json()
            assert resp["number"] == rec["post"]["body"]["number"]
            frames = await sock.until_done(resp["prompt_id"])
            assert ours(frames) == recorded(rec["ws_messages"]), name
            hist = (await h.get(f"/history/{resp['prompt_id']}")).json()
            assert strip_history(only_entry(hist)) == strip_history(only_entry(rec["history"]["body"]))
            for f in frames:
                if isinstance(f, bytes):
                    jpeg = f[8:] if f[3] == 1 else f[8 + struct.unpack(">I", f[4:8])[0]:]
                    assert Image.open(io.BytesIO(jpeg)).size == (512, 512)
        # ks5: interrupt after step 3 of 200
        rec = load("ksampler/run_ks5_interrupt_mid_sampling.json")
        double.step_delay = 0.02
        body = copy.deepcopy(rec["post"]["request"]["json"])
        body["client_id"] = a_id
        await a.quiet(0.05)
        start = len(a.frames)
        pid = (await h.post("/prompt", json=body)).json()["prompt_id"]
        await a.until_type("progress", value=3)
        await h.post("/interrupt", json={"prompt_id": pid})
        await a.until_done(pid)
        want = recorded(rec["ws_messages"])
        got = ours(a.frames[start:])
        # the interrupt lands at the next step's check; a busy machine may run a step or two more
        def step(item: tuple) -> int:
            return json.loads(item[1]).get("value", 0) if item[0] == "progress" else 0
        while len(got) > len(want) and step(got[-5]) > 3:
            del got[-6:-3]
        assert got == want
        hist = (await h.get(f"/history/{pid}")).json()
        assert strip_history(only_entry(hist)) == strip_history(only_entry(rec["history"]["body"]))
    await a.close()
    await b.close()


# ------------------------------------------------------------------------------------------------
# history listing


@pytest.mark.asyncio
async def test_history_listing(comfy_double: ComfyDouble) -> None:
    async with http(comfy_double) as h:
        ids = []
        for color in (1, 2, 3):
            r = await h.post("/prompt", json={"prompt": graph_01(color=color, blur=color)})
            ids.append(r.json()["prompt_id"])
        for pid in ids:
            await asyncio.to_thread(comfy_double.wait_for_prompt, pid)
        assert list((await h.get("/history")).json()) == ids
        assert list((await h.get("/history", params={"max_items": 2})).json()) == ids[1:]
        assert list((await h.get("/history", params={"max_items": 1, "offset": 0})).json()) == ids[:1]
        r = await h.post("/history", json={"delete": [ids[1]]})
        assert (r.status_code, r.content) == (200, b"")
        assert (await h.get(f"/history/{ids[1]}")).json() == {}
        assert list((await h.get("/history")).json()) == [ids[0], ids[2]]
        await h.post("/history", json={"clear": True})
        assert (await h.get("/history")).json() == {}


# ------------------------------------------------------------------------------------------------
# run-time switches


@pytest.mark.asyncio
async def test_fail_500_latency_and_counters(comfy_double: ComfyDouble) -> None:
    async with http(comfy_double) as h:
        comfy_double.fail_500 = {"/system_stats", "/history*"}
        r = await h.get("/system_stats")
        assert (r.status_code, r.text) == (500, "500 Internal Server Error\n\nServer got itself in trouble")
        assert r.headers["content-type"] == "text/plain; charset=utf-8"
        assert (await h.get("/history/abc")).status_code == 500
        assert (await h.get("/queue")).status_code == 200
        comfy_double.fail_500 = True
        assert (await h.get("/queue")).status_code == 500
        with pytest.raises(websockets.InvalidStatus):
            await websockets.connect(comfy_double.ws_url)
        comfy_double.fail_500 = False
        assert (await h.get("/system_stats")).status_code == 200
        comfy_double.latency = 0.2
        t0 = time.monotonic()
        await h.get("/queue")
        assert time.monotonic() - t0 >= 0.2
        comfy_double.latency = 0
    assert comfy_double.requests["/system_stats"] == 2
    assert comfy_double.requests_by_method["GET /queue"] == 3
    assert ("GET", "/history/abc") in comfy_double.request_log
    comfy_double.reset_counters()
    assert comfy_double.requests == {}


@pytest.mark.asyncio
async def test_drop_sockets_after(make_comfy_double: Any) -> None:
    double = make_comfy_double(node_delay=0.02)
    cid = str(uuid.uuid4())
    a = await Sock.open(double, cid)
    await a.until(lambda f: True)
    double.drop_sockets_after = 5
    async with http(double) as h:
        first = (await h.post("/prompt", json={"prompt": graph_01(), "client_id": cid})).json()
        got = []
        with pytest.raises(websockets.ConnectionClosedError):
            while True:
                got.append(await a.ws.recv())
        assert len(got) == 5
        await double.wait_for_prompt_async(first["prompt_id"])
        b = await Sock.open(double, cid)   # a new socket is not affected
        second = (await h.post("/prompt", json={"prompt": graph_01(color=1), "client_id": cid})
                  ).json()
        frames = await b.until_done(second["prompt_id"])
        assert types(ours(frames))[:2] == ["status", "status"]
        double.drop_sockets()
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(b.ws.recv(), 5)


@pytest.mark.asyncio
async def test_kill_mid_run_and_restart(make_comfy_double: Any) -> None:
    double = make_comfy_double(node_delay=0.2)
    port = double.port
    cid = str(uuid.uuid4())
    a = await Sock.open(double, cid)
    await a.until(lambda f: True)
    async with http(double) as h:
        first = (await h.post("/prompt", json={"prompt": graph_01(), "client_id": cid})).json()
        done = (await h.post("/prompt", json={"prompt": graph_01(color=7), "client_id": cid})).json()
        await a.until_done(first["prompt_id"])
        await a.until_type("executing", node="2")
        await asyncio.to_thread(double.kill)
        with pytest.raises(websockets.ConnectionClosed):
            async with asyncio.timeout(5):
                while True:
                    await a.ws.recv()
        with pytest.raises(httpx.ConnectError):
            await h.get("/queue")
    assert not double.running
    url = await asyncio.to_thread(double.restart)
    assert double.port == port and url == f"http://127.0.0.1:{port}"
    async with http(double) as h:
        assert (await h.get("/history")).json() == {}
        assert (await h.get("/queue")).json() == {"queue_running": [], "queue_pending": []}
        assert (await h.get(f"/history/{done['prompt_id']}")).json() == {}
        r = await h.get("/view", params={"filename": "isengard_test_00001_.png"})
        assert r.status_code == 200  # files survive
        r = (await h.post("/prompt", json={"prompt": graph_01()})).json()
        assert r["number"] == 0   # a fresh process
        entry = await asyncio.to_thread(double.wait_for_prompt, r["prompt_id"])
        assert entry["status"]["messages"][1][1]["nodes"] == []   # cache is empty
        assert entry["outputs"]["3"]["images"][0]["filename"] == "isengard_test_00003_.png"
    await asyncio.to_thread(double.kill)
    await asyncio.to_thread(double.start)   # start() after kill also reuses the port
    assert double.port == port


@pytest.mark.asyncio
async def test_hang_hold_queue_and_cancel_pending(comfy_double: ComfyDouble) -> None:
    cid = str(uuid.uuid4())
    a = await Sock.open(comfy_double, cid)
    await a.until(lambda f: True)
    async with http(comfy_double) as h:
        comfy_double.hang_next_prompt = True
        p1 = (await h.post("/prompt", json={"prompt": graph_01(), "client_id": cid})).json()
        await a.until_type("executing", node="1")
        await asyncio.sleep(0.1)
        q = (await h.get("/queue")).json()
        assert [x[1] for x in q["queue_running"]] == [p1["prompt_id"]]
        # a socket connecting with the running client id is told the node
        again = await Sock.open(comfy_double, cid)
        assert types(ours(await again.until_type("executing"))) == ["status", "executing"]
        assert json.loads(again.frames[1]) == {"type": "executing", "data": {"node": "1"}}
        await asyncio.to_thread(comfy_double.release_hang)
        await again.until_done(p1["prompt_id"])
        await again.close()
        comfy_double.hold_queue = True
        p2 = (await h.post("/prompt", json={"prompt": graph_01(color=5), "client_id": cid})).json()
        await asyncio.sleep(0.1)
        assert comfy_double.queue_state() == ([], [p2["prompt_id"]])
        await h.post("/queue", json={"delete": [p2["prompt_id"]]})
        assert comfy_double.queue_state() == ([], [])
        comfy_double.hold_queue = False
        # hang + interrupt: the hanging node is the one interrupted
        comfy_double.hang_next_prompt = True
        p3 = (await h.post("/prompt", json={"prompt": graph_01(color=9), "client_id": cid})).json()
        s3 = await Sock.open(comfy_double, str(uuid.uuid4()))
        await asyncio.sleep(0.1)
        await h.post("/interrupt", json={"prompt_id": p3["prompt_id"]})
        entry = await comfy_double.wait_for_prompt_async(p3["prompt_id"])
        last = entry["status"]["messages"][-1]
        assert last[0] == "execution_interrupted" and last[1]["node_id"] == "1"
        await s3.close()
    assert comfy_double.interrupts == [{"prompt_id": p3["prompt_id"]}]
    await a.close()


def test_context_manager_and_fail_nodes() -> None:
    """Plain (sync) use: the double's own folders, a node made to fail at run time."""
    with ComfyDouble(models={"checkpoints": [TINY]},
                     fail_nodes={"KSampler": ("torch.OutOfMemoryError", "Allocation on device")}
                     ) as double:
        folders = (double.output_dir, double.input_dir, double.temp_dir)
        assert (double.input_dir / "example.png").is_file()
        with httpx.Client(base_url=double.url) as h:
            pid = h.post("/prompt", json={"prompt": ks_graph(1), "client_id": "x"}).json()[
                "prompt_id"]
            entry = double.wait_for_prompt(pid)
            assert entry["status"]["status_str"] == "error"
            err = entry["status"]["messages"][-1]
            assert err[0] == "execution_error"
            assert (err[1]["node_id"], err[1]["node_type"], err[1]["exception_type"],
                    err[1]["exception_message"]) == ("3", "KSampler", "torch.OutOfMemoryError",
                                                     "Allocation on device\n")
            double.fail_nodes = {}
            pid = h.post("/prompt", json={"prompt": ks_graph(1)}).json()["prompt_id"]
            assert double.wait_for_prompt(pid)["status"]["status_str"] == "success"
        assert double.accepted_prompts[1] == {"prompt": ks_graph(1)}
    assert not double.running
    assert not any(f.exists() for f in folders)


# ------------------------------------------------------------------------------------------------
# node simulation on real workflows


FLUX_GRAPH = {
    "1": {"class_type": "UNETLoader", "inputs": {"unet_name": "flux1-dev.safetensors",
                                                 "weight_dtype": "default"}},
    "2": {"class_type": "DualCLIPLoader", "inputs": {"clip_name1": "clip_l.safetensors",
                                                     "clip_name2": "t5xxl.safetensors",
                                                     "type": "flux"}},
    "3": {"class_type": "VAELoader", "inputs": {"vae_name": "ae.safetensors"}},
    "4": {"class_type": "LoraLoaderModelOnly", "inputs": {"model": ["1", 0],
                                                          "lora_name": "me.safetensors",
                                                          "strength_model": 0.8}},
    "5": {"class_type": "CLIPTextEncode", "inputs": {"text": "a portrait", "clip": ["2", 0]}},
    "6": {"class_type": "FluxGuidance", "inputs": {"conditioning": ["5", 0], "guidance": 3.5}},
    "7": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 96, "height": 64,
                                                          "batch_size": 2}},
    "8": {"class_type": "BasicGuider", "inputs": {"model": ["4", 0], "conditioning": ["6", 0]}},
    "9": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
    "10": {"class_type": "BasicScheduler", "inputs": {"model": ["4", 0], "scheduler": "simple",
                                                      "steps": 4, "denoise": 1.0}},
    "11": {"class_type": "RandomNoise", "inputs": {"noise_seed": 7}},
    "12": {"class_type": "SamplerCustomAdvanced", "inputs": {
        "noise": ["11", 0], "guider": ["8", 0], "sampler": ["9", 0], "sigmas": ["10", 0],
        "latent_image": ["7", 0]}},
    "13": {"class_type": "VAEDecode", "inputs": {"samples": ["12", 0], "vae": ["3", 0]}},
    "14": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": "2x_fast.pth"}},
    "15": {"class_type": "ImageUpscaleWithModel", "inputs": {"upscale_model": ["14", 0],
                                                             "image": ["13", 0]}},
    "16": {"class_type": "FaceDetailer", "inputs": {"image": ["15", 0], "model": ["4", 0],
                                                    "guide_size": 512}},
    "17": {"class_type": "SaveImage", "inputs": {"images": ["16", 0], "filename_prefix": "flux/f"}},
    "18": {"class_type": "PreviewImage", "inputs": {"images": ["13", 0]}},
}
MODELS = {"unet": ["flux1-dev.safetensors"], "clip": ["clip_l.safetensors", "t5xxl.safetensors"],
          "vae": ["ae.safetensors"], "loras": ["me.safetensors"],
          "upscale_models": ["2x_fast.pth", "4x_ultra.pth"], "ipadapter": ["ip.bin"]}
FACE_DETAILER = {"input": {"required": {"image": ["IMAGE"], "model": ["MODEL"],
                                        "guide_size": ["INT", {"default": 384, "min": 64,
                                                               "max": 8192}]}},
                 "output": ["IMAGE", "IMAGE", "MASK"], "category": "ImpactPack/Simple"}


@pytest.mark.asyncio
async def test_flux_workflow_with_custom_node_and_upscale(make_comfy_double: Any) -> None:
    double = make_comfy_double(models=MODELS, extra_nodes={"FaceDetailer": FACE_DETAILER},
                               remove_nodes={"ImageSharpen"}, preview_method="auto",
                               gpu_name="NVIDIA GeForce RTX 4090", vram_total=24 << 30,
                               vram_free=20 << 30)
    cid = str(uuid.uuid4())
    b = await Sock.open(double, cid, flags=True)
    await b.until_type("feature_flags")
    async with http(double) as h:
        info = (await h.get("/object_info")).json()
        assert "ImageSharpen" not in info and info["FaceDetailer"]["output"][0] == "IMAGE"
        assert info["UNETLoader"]["input"]["required"]["unet_name"][0] == ["flux1-dev.safetensors"]
        assert info["DualCLIPLoader"]["input"]["required"]["clip_name2"][0] == \
            ["clip_l.safetensors", "t5xxl.safetensors"]
        assert info["VAELoader"]["input"]["required"]["vae_name"][0] == ["ae.safetensors",
                                                                         "pixel_space"]
        assert info["UpscaleModelLoader"]["input"]["required"]["model_name"][1]["options"] == \
            ["2x_fast.pth", "4x_ultra.pth"]
        assert info["LoraLoader"]["input"]["required"]["lora_name"][0] == ["me.safetensors"]
        assert "ipadapter" in (await h.get("/models")).json()
        assert (await h.get("/models/diffusion_models")).json() == ["flux1-dev.safetensors"]
        stats = (await h.get("/system_stats")).json()
        assert stats["devices"][0]["name"] == "cuda:0 NVIDIA GeForce RTX 4090 : cudaMallocAsync"
        assert (stats["devices"][0]["vram_total"], stats["devices"][0]["vram_free"]) == \
            (24 << 30, 20 << 30)
        bad = copy.deepcopy(FLUX_GRAPH)
        bad["4"]["inputs"]["lora_name"] = "missing.safetensors"
        r = await h.post("/prompt", json={"prompt": bad, "client_id": cid})
        assert r.status_code == 400
        err = r.json()["node_errors"]["4"]["errors"][0]
        assert err["details"] == "lora_name: 'missing.safetensors' not in ['me.safetensors']"
        pid = (await h.post("/prompt", json={"prompt": FLUX_GRAPH, "client_id": cid,
                                             "extra_data": {"extra_pnginfo": {"workflow": {"a": 1}}}
                                             })).json()["prompt_id"]
        frames = await b.until_done(pid)
        kinds = types(ours(frames))
        assert kinds.count("progress") == 4 and kinds.count("binary4") == 4
        executing = [json.loads(f)["data"]["node"] for f in frames
                     if isinstance(f, str) and json.loads(f)["type"] == "executing"]
        assert executing.index("12") < executing.index("13") < executing.index("15")
        hist = (await h.get(f"/history/{pid}")).json()[pid]
        saved = hist["outputs"]["17"]["images"]
        assert saved == [{"filename": "f_00001_.png", "subfolder": "flux", "type": "output"},
                         {"filename": "f_00002_.png", "subfolder": "flux", "type": "output"}]
        assert hist["outputs"]["18"]["images"][0]["type"] == "temp"
        r = await h.get("/view", params={"filename": "f_00001_.png", "subfolder": "flux"})
        img = Image.open(io.BytesIO(r.content))
        assert img.size == (192, 128)   # 96x64 latent decoded, x2 upscale model
        assert json.loads(img.info["workflow"]) == {"a": 1}
        prev = hist["outputs"]["18"]["images"][0]
        r = await h.get("/view", params=prev)
        assert Image.open(io.BytesIO(r.content)).size == (96, 64)
        # KSamplerAdvanced runs end-start steps; ImageScale/ImageScaleBy sizes; VAEEncode
        g2 = {"1": {"class_type": "EmptyImage", "inputs": {"width": 80, "height": 40,
                                                           "batch_size": 1, "color": 255}},
              "2": {"class_type": "ImageScaleBy", "inputs": {"image": ["1", 0],
                                                             "upscale_method": "area",
                                                             "scale_by": 1.5}},
              "3": {"class_type": "ImageScale", "inputs": {"image": ["2", 0],
                                                           "upscale_method": "area", "width": 0,
                                                           "height": 30, "crop": "disabled"}},
              "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0],
                                                          "filename_prefix": "scaled"}}}
        pid2 = (await h.post("/prompt", json={"prompt": g2, "client_id": cid})).json()["prompt_id"]
        await b.until_done(pid2)
        r = await h.get("/view", params={"filename": "scaled_00001_.png"})
        assert Image.open(io.BytesIO(r.content)).size == (60, 30)
    await b.close()


# ------------------------------------------------------------------------------------------------
# fake_comfyui_main.py


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_fake(tmp_path: Path, *args: str, env: dict[str, str] | None = None
               ) -> subprocess.Popen:
    full_env = dict(os.environ, **(env or {}))
    return subprocess.Popen([sys.executable, str(FAKE_MAIN), *args], cwd=tmp_path, env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_line(proc: subprocess.Popen, needle: str, timeout: float = 15) -> list[str]:
    """Lines of stderr up to the one containing needle."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    assert proc.stderr is not None
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if needle in line:
            return lines
    raise AssertionError(f"{needle!r} not seen in {lines}")


@pytest.mark.skipif(sys.platform == "win32",
                    reason="a SIGTERM handler ends the fake ComfyUI with 0; on Windows SIGTERM is TerminateProcess")
def test_fake_main_serves_and_lists_extra_loras(tmp_path: Path) -> None:
    loras = tmp_path / "shared" / "loras"
    loras.mkdir(parents=True)
    (loras / "me_v1.safetensors").write_bytes(b"x")
    (tmp_path / "models" / "checkpoints").mkdir(parents=True)
    (tmp_path / "models" / "checkpoints" / "base.safetensors").write_bytes(b"x")
    cfg = tmp_path / "extra_model_paths.yaml"
    cfg.write_text(f"isengard:\n  base_path: {tmp_path / 'shared'}\n  loras: |\n    loras\n"
                   f"    more_loras\n")
    port = free_port()
    proc = start_fake(tmp_path, "--listen", "127.0.0.1", "--port", str(port), "--cpu",
                      "--disable-auto-launch", "--extra-model-paths-config", str(cfg),
                      "--preview-method", "auto", "--some-unknown-flag")
    try:
        lines = wait_line(proc, "To see the GUI go to:")
        assert lines[-1] == f"To see the GUI go to: http://127.0.0.1:{port}"
        assert "Starting server" in lines
        assert f"Adding extra search path loras {loras}" in lines
        assert "Device: cpu" in lines
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as h:
            assert h.get("/models/loras").json() == ["me_v1.safetensors"]
            assert h.get("/models/checkpoints").json() == ["base.safetensors"]
            (loras / "late.safetensors").write_bytes(b"x")   # rescanned on each /object_info
            info = h.get("/object_info/LoraLoader").json()
            assert info["LoraLoader"]["input"]["required"]["lora_name"][0] == \
                ["late.safetensors", "me_v1.safetensors"]
            argv = h.get("/system_stats").json()["system"]["argv"]
            assert argv[:3] == ["main.py", "--listen", "127.0.0.1"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def test_fake_main_switches(tmp_path: Path) -> None:
    # fails before listening
    proc = start_fake(tmp_path, "--port", str(free_port()), env={"FAKE_COMFY_FAIL_START": "1"})
    out, err = proc.communicate(timeout=15)
    assert proc.returncode == 1
    assert "Traceback (most recent call last)" in err and "No module named 'torch'" in err
    assert "To see the GUI" not in err + out
    # delayed start, then a crash with a traceback; a grandchild left behind
    pidfile = tmp_path / "child.pid"
    port = free_port()
    t0 = time.monotonic()
    proc = start_fake(tmp_path, "--port", str(port), "--log-stdout",
                      env={"FAKE_COMFY_START_DELAY": "0.5", "FAKE_COMFY_CRASH_AFTER": "0.3",
                           "FAKE_COMFY_SPAWN_CHILD": str(pidfile)})
    try:
        out, err = proc.communicate(timeout=20)
        assert proc.returncode == 1
        assert time.monotonic() - t0 >= 0.8
        assert f"To see the GUI go to: http://127.0.0.1:{port}" in out   # --log-stdout
        assert "Traceback (most recent call last)" in err
        child = int(pidfile.read_text())
        assert psutil.pid_exists(child)   # still alive: whole-tree stop is the caller's test
    finally:
        if pidfile.exists():
            try:
                psutil.Process(int(pidfile.read_text())).kill()
            except psutil.NoSuchProcess:
                pass
