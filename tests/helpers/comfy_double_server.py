"""The aiohttp application of the ComfyUI test double (see comfy_double.py for the manual).

One :class:`DoubleServer` lives inside the double's own event loop (its own thread). It holds
what a ComfyUI process holds: the queue, the history, the node cache, the websockets by client
id, and the worker that runs prompts one at a time.
"""

from __future__ import annotations

import asyncio
import copy
import heapq
import json
import struct
import time
import uuid
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from tests.helpers.comfy_double_exec import PromptRun
from tests.helpers.comfy_double_files import FilesMixin
from tests.helpers.comfy_double_nodes import MODEL_FOLDERS, build_object_info
from tests.helpers.comfy_double_validate import image_exists_in, validate_prompt

if TYPE_CHECKING:
    from tests.helpers.comfy_double import ComfyDouble

ERROR_500 = "500 Internal Server Error\n\nServer got itself in trouble"
FEATURES = {"supports_preview_metadata": True, "max_upload_size": 104857600}
SENSITIVE_EXTRA_DATA_KEYS = ("auth_token_comfy_org", "api_key_comfy_org")
EXTENSIONS = [
    "/extensions/core/groupNode.js", "/extensions/core/maskEditorOld.js",
    "/extensions/core/clipspace.js", "/extensions/core/maskEditorLayerFilenames.js",
    "/extensions/core/widgetInputs.js", "/extensions/core/groupNodeManage.js",
]
PREVIEW_IMAGE = 1
PREVIEW_IMAGE_WITH_METADATA = 4


def now_ms() -> int:
    return int(time.time() * 1000)


class DoubleServer(FilesMixin):
    def __init__(self, double: ComfyDouble, loop: asyncio.AbstractEventLoop):
        self.double = double
        self.loop = loop
        self.sockets: dict[str, web.WebSocketResponse] = {}
        self.sockets_metadata: dict[str, dict[str, Any]] = {}
        self.ws_requests: dict[web.WebSocketResponse, web.Request] = {}
        self.outboxes: dict[web.WebSocketResponse, asyncio.Queue] = {}
        self.drop_budget: dict[web.WebSocketResponse, int] = {}
        self.queue: list[tuple] = []
        self.running: dict[str, tuple] = {}
        self.history: dict[str, dict[str, Any]] = {}
        self.number = 0
        self.client_id: str | None = None
        self.last_node_id: str | None = None
        self.last_prompt_id: str | None = None
        self.interrupt_flag = False
        self.cache: dict[str, Any] = {}
        self.wake = asyncio.Event()
        self.hang_release = asyncio.Event()
        self.messages: asyncio.Queue[tuple[Any, Any, str | None]] = asyncio.Queue()
        self.tasks: list[asyncio.Task] = []
        self.runner: web.AppRunner | None = None

    # ------------------------------------------------------------------ lifecycle
    async def start(self, host: str, port: int) -> int:
        app = web.Application(client_max_size=FEATURES["max_upload_size"],
                              middlewares=[self.middleware])
        r = app.router
        r.add_get("/ws", self.ws_handler)
        r.add_get("/system_stats", self.get_system_stats)
        r.add_get("/features", self.json_handler(lambda: FEATURES))
        r.add_get("/embeddings", self.json_handler(list))
        r.add_get("/extensions", self.json_handler(lambda: EXTENSIONS))
        r.add_get("/models", self.get_models)
        r.add_get("/models/{folder}", self.get_models_folder)
        r.add_get("/object_info", self.get_object_info)
        r.add_get("/object_info/{node_class}", self.get_object_info_node)
        r.add_get("/prompt", self.json_handler(self.queue_info))
        r.add_post("/prompt", self.post_prompt)
        r.add_get("/queue", self.get_queue)
        r.add_post("/queue", self.post_queue)
        r.add_post("/interrupt", self.post_interrupt)
        r.add_post("/free", self.post_free)
        r.add_get("/history", self.get_history)
        r.add_get("/history/{prompt_id}", self.get_history_item)
        r.add_post("/history", self.post_history)
        r.add_get("/view", self.get_view)
        r.add_post("/upload/image", self.post_upload)
        r.add_get("/", self.get_root)
        if self.double.upload_node is not None:      # custom node routes, as add_routes() does
            self.double.upload_node.add_routes(r)
        self.runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5,
                                    access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, host, port, reuse_address=True)
        await site.start()
        sockets = self.runner.addresses
        self.tasks.append(asyncio.ensure_future(self.worker()))
        self.tasks.append(asyncio.ensure_future(self.publisher()))
        return int(sockets[0][1])

    @staticmethod
    def json_handler(make: Any) -> Any:
        async def handler(request: web.Request) -> web.Response:
            return web.json_response(make())
        return handler

    async def get_root(self, request: web.Request) -> web.Response:
        return web.Response(text="<html><title>ComfyUI</title></html>", content_type="text/html")

    async def shutdown(self, abrupt: bool) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks.clear()
        assert self.runner is not None
        if abrupt:
            for site in list(self.runner.sites):
                server = getattr(site, "_server", None)
                if server is not None:
                    server.close()
            if self.runner.server is not None:
                for handler in self.runner.server.connections:
                    if handler.transport is not None:
                        handler.transport.abort()
        else:
            async def close(ws: web.WebSocketResponse) -> None:
                try:
                    await asyncio.wait_for(ws.close(code=1001, message=b"Server shutdown"), 0.5)
                except (TimeoutError, ConnectionError, RuntimeError):
                    self.abort_ws(ws)
            await asyncio.gather(*(close(ws) for ws in list(self.ws_requests)))
        await asyncio.sleep(0)
        await self.runner.cleanup()

    # ------------------------------------------------------------------ middleware
    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        d = self.double
        d._count_request(request.method, request.path, request.path_qs)
        latency = d.latency
        if latency and request.path != "/ws":
            await asyncio.sleep(latency)
        if d._should_fail(request.path):
            return self.error_500()
        return await handler(request)

    @staticmethod
    def error_500() -> web.Response:
        resp = web.Response(status=500, text=ERROR_500, content_type="text/plain")
        resp.force_close()
        return resp

    # ------------------------------------------------------------------ messaging
    def queue_info(self) -> dict[str, Any]:
        return {"exec_info": {"queue_remaining": len(self.queue) + len(self.running)}}

    def queue_updated(self) -> None:
        self.emit("status", {"status": self.queue_info()})

    def emit(self, event: Any, data: Any, sid: str | None = None) -> None:
        """Queue a message like ComfyUI's send_sync (sent in order by the publisher)."""
        self.messages.put_nowait((event, data, sid))

    def supports_metadata(self, sid: str | None) -> bool:
        if sid is None:
            return False
        meta = self.sockets_metadata.get(sid, {})
        return bool(meta.get("feature_flags", {}).get("supports_preview_metadata"))

    def targets(self, sid: str | None) -> list[web.WebSocketResponse]:
        if sid is None:
            return list(self.sockets.values())
        return [self.sockets[sid]] if sid in self.sockets else []

    async def publisher(self) -> None:
        """Resolves each message's sockets when it is its turn (like ComfyUI's send loop)."""
        while True:
            event, data, sid = await self.messages.get()
            if event == "_hook":  # a callback that must run in message order
                data()
                continue
            if isinstance(event, int):
                payload: str | bytes = self.encode_binary(event, data)
            else:
                payload = json.dumps({"type": event, "data": data})
            for ws in self.targets(sid):
                self.enqueue(ws, payload)

    @staticmethod
    def encode_binary(event: int, data: Any) -> bytes:
        if event == PREVIEW_IMAGE:
            fmt, payload = data
            return struct.pack(">II", PREVIEW_IMAGE, fmt) + payload
        meta, payload = data
        meta_bytes = json.dumps(meta).encode("utf-8")
        return struct.pack(">II", PREVIEW_IMAGE_WITH_METADATA, len(meta_bytes)) + meta_bytes + payload

    def enqueue(self, ws: web.WebSocketResponse, payload: str | bytes) -> None:
        box = self.outboxes.get(ws)
        if box is not None:
            box.put_nowait(payload)

    async def sender(self, ws: web.WebSocketResponse, box: asyncio.Queue) -> None:
        """One per socket, so a client that does not read never holds up the others."""
        while True:
            payload = await box.get()
            if ws.closed:
                return
            try:
                if isinstance(payload, bytes):
                    await ws.send_bytes(payload)
                else:
                    await ws.send_str(payload)
            except (ConnectionError, RuntimeError):
                return
            self.double._count_ws_message()
            if ws in self.drop_budget:
                self.drop_budget[ws] -= 1
                if self.drop_budget[ws] <= 0:
                    del self.drop_budget[ws]
                    self.abort_ws(ws)
                    return

    def abort_ws(self, ws: web.WebSocketResponse) -> None:
        req = self.ws_requests.get(ws)
        transport = req.transport if req is not None else None
        if transport is not None:
            transport.abort()

    def set_drop_budget(self, n: int | None) -> None:
        if n is None:
            self.drop_budget.clear()
            return
        for ws in list(self.ws_requests):
            if n <= 0:
                self.abort_ws(ws)
            else:
                self.drop_budget[ws] = n

    # ------------------------------------------------------------------ websocket
    async def ws_handler(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=FEATURES["max_upload_size"])
        await ws.prepare(request)
        sid = request.query.get("clientId", "")
        box: asyncio.Queue = asyncio.Queue()
        self.outboxes[ws] = box
        self.ws_requests[ws] = request
        sender = asyncio.ensure_future(self.sender(ws, box))
        self.double._count_ws_connect(sid)
        # no await between registering and queueing the handshake: it is always first
        if sid:
            self.sockets.pop(sid, None)  # the newest socket of a client id wins
        else:
            sid = uuid.uuid4().hex
        self.sockets[sid] = ws
        self.sockets_metadata[sid] = {"feature_flags": {}}
        self.enqueue(ws, json.dumps({"type": "status", "data": {
            "status": self.queue_info(), "sid": sid}}))
        if self.client_id == sid and self.last_node_id is not None:
            self.enqueue(ws, json.dumps({"type": "executing", "data": {
                "node": self.last_node_id}}))
        try:
            first = True
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    try:
                        data = json.loads(msg.data)
                    except ValueError:
                        data = None
                    if first and isinstance(data, dict) and data.get("type") == "feature_flags":
                        flags = data.get("data") or {}
                        if sid in self.sockets_metadata:
                            self.sockets_metadata[sid]["feature_flags"] = flags
                        self.enqueue(ws, json.dumps({"type": "feature_flags", "data": FEATURES}))
                    first = False
                elif msg.type == WSMsgType.ERROR:
                    break
        finally:
            # the real server deletes the entry of this client id, even when a newer socket
            # took it over (the reconnect quirk of run_10)
            self.sockets.pop(sid, None)
            self.sockets_metadata.pop(sid, None)
            self.ws_requests.pop(ws, None)
            self.outboxes.pop(ws, None)
            self.drop_budget.pop(ws, None)
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
        return ws

    # ------------------------------------------------------------------ simple GETs
    async def get_system_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.double._system_stats())

    def models(self) -> dict[str, list[str]]:
        return self.double._current_models()

    async def get_models(self, request: web.Request) -> web.Response:
        folders = list(MODEL_FOLDERS)
        folders += [f for f in self.models() if f not in folders]
        return web.json_response(folders)

    async def get_models_folder(self, request: web.Request) -> web.Response:
        folder = request.match_info["folder"]
        models = self.models()
        if folder not in MODEL_FOLDERS and folder not in models:
            return web.Response(status=404)
        return web.json_response(list(models.get(folder, [])))

    def object_info(self) -> dict[str, Any]:
        d = self.double
        return build_object_info(self.models(), d.extra_nodes, d.remove_nodes, d.input_dir)

    async def get_object_info(self, request: web.Request) -> web.Response:
        return web.json_response(self.object_info())

    async def get_object_info_node(self, request: web.Request) -> web.Response:
        name = request.match_info["node_class"]
        info = self.object_info()
        return web.json_response({name: info[name]} if name in info else {})

    # ------------------------------------------------------------------ prompt + queue
    async def post_prompt(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return self.error_500()
        if not isinstance(body, dict):
            return self.error_500()
        sent = copy.deepcopy(body)
        if "number" in body:
            number: float | int = float(body["number"])
        else:
            number = self.number
            if body.get("front"):
                number = -number
            self.number += 1
        if "prompt" not in body:
            self.double._record_prompt(sent, accepted=False)
            return web.json_response({"error": {"type": "no_prompt", "message": "No prompt provided",
                                                "details": "No prompt provided", "extra_info": {}},
                                      "node_errors": {}}, status=400)
        prompt = body["prompt"]
        prompt_id = str(body.get("prompt_id", uuid.uuid4()))
        d = self.double
        try:
            valid = validate_prompt(prompt, self.object_info(),
                                    image_exists_in(d.input_dir, d.output_dir, d.temp_dir),
                                    body.get("partial_execution_targets"))
        except Exception:  # noqa: BLE001 - the real server answers 500 here too
            return self.error_500()
        extra_data = body.get("extra_data", {})
        if not isinstance(extra_data, dict):
            extra_data = {}
        if "client_id" in body:
            extra_data["client_id"] = body["client_id"]
        for key in SENSITIVE_EXTRA_DATA_KEYS:
            extra_data.pop(key, None)
        d._record_prompt(sent, accepted=bool(valid[0]))
        if not valid[0]:
            return web.json_response({"error": valid[1], "node_errors": valid[3]}, status=400)
        item = (number, prompt_id, prompt, extra_data, valid[2])
        heapq.heappush(self.queue, item)
        self.queue_updated()
        self.wake.set()
        return web.json_response({"prompt_id": prompt_id, "number": number,
                                  "node_errors": valid[3]})

    async def get_queue(self, request: web.Request) -> web.Response:
        return web.json_response({"queue_running": [list(x) for x in self.running.values()],
                                  "queue_pending": [list(x) for x in self.queue]})

    async def read_json(self, request: web.Request) -> dict[str, Any]:
        try:
            data = await request.json()
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}

    async def post_queue(self, request: web.Request) -> web.Response:
        data = await self.read_json(request)
        if data.get("clear"):
            self.queue = []
            self.queue_updated()
        for pid in data.get("delete", []) or []:
            for i, item in enumerate(self.queue):
                if item[1] == pid:
                    self.queue.pop(i)
                    heapq.heapify(self.queue)
                    self.queue_updated()
                    break
        return web.Response(status=200)

    async def post_interrupt(self, request: web.Request) -> web.Response:
        data = await self.read_json(request)
        pid = data.get("prompt_id")
        self.double._record_interrupt(data)
        if pid:
            if any(item[1] == pid for item in self.running.values()):
                self.interrupt_flag = True
                self.hang_release.set()
        else:
            self.interrupt_flag = True
            if self.running:
                self.hang_release.set()
        return web.Response(status=200)

    async def post_free(self, request: web.Request) -> web.Response:
        data = await self.read_json(request)
        self.double._record_free(data)
        return web.Response(status=200)

    # ------------------------------------------------------------------ history
    async def get_history(self, request: web.Request) -> web.Response:
        max_items = request.query.get("max_items")
        offset = int(request.query.get("offset", -1))
        items = list(self.history.items())
        if max_items is not None:
            n = int(max_items)
            if offset < 0:
                offset = max(0, len(items) - n)
            items = items[offset:offset + n]
        elif offset > 0:
            items = items[offset:]
        return web.json_response(dict(items))

    async def get_history_item(self, request: web.Request) -> web.Response:
        pid = request.match_info["prompt_id"]
        return web.json_response({pid: self.history[pid]} if pid in self.history else {})

    async def post_history(self, request: web.Request) -> web.Response:
        data = await self.read_json(request)
        if data.get("clear"):
            self.history.clear()
        for pid in data.get("delete", []) or []:
            self.history.pop(pid, None)
        return web.Response(status=200)

    # ------------------------------------------------------------------ worker
    async def worker(self) -> None:
        while True:
            if not self.queue or self.double.hold_queue:
                self.wake.clear()
                await self.wake.wait()
                continue
            item = heapq.heappop(self.queue)
            prompt_id = item[1]
            self.running[prompt_id] = item
            self.last_prompt_id = prompt_id
            self.queue_updated()
            run = PromptRun(self, item)
            try:
                entry = await run.execute()
            finally:
                self.last_node_id = None
            self.running.pop(prompt_id, None)
            self.history[prompt_id] = entry
            self.queue_updated()
            if run.client_id is not None:
                self.emit("executing", {"node": None, "prompt_id": prompt_id}, run.client_id)
            self.emit("_hook", lambda pid=prompt_id: self.double._prompt_done(pid))
