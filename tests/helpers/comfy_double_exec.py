"""Prompt execution for the ComfyUI test double (see comfy_double.py for the manual).

Reproduces the recorded WebSocket sequences: execution_start / execution_cached, progress_state
as nodes start and finish, executing / executed, sampler progress with previews, the order in
which ComfyUI picks nodes, the node cache across prompts, runtime errors and interrupts.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from typing import TYPE_CHECKING, Any

from tests.helpers.comfy_double_nodes import (
    NODE_FUNCTIONS,
    SAMPLER_CLASSES,
    NodeContext,
    NodeResult,
    NodeRuntimeError,
    Val,
    generic_outputs,
    is_link,
    jpeg_preview,
    png_bytes,
    sampler_plan,
)
from tests.helpers.comfy_double_validate import recorded_traceback

if TYPE_CHECKING:
    from tests.helpers.comfy_double_server import DoubleServer


NEVER_CACHED = {"SaveImageWebsocket"}


class Interrupted(Exception):
    pass


class CacheEntry:
    def __init__(self, outputs: list[Val], ui: dict[str, Any] | None):
        self.outputs = outputs
        self.ui = ui


def now_ms() -> int:
    import time
    return int(time.time() * 1000)


class PromptRun:
    def __init__(self, server: DoubleServer, item: tuple):
        self.server = server
        self.double = server.double
        self.number, self.prompt_id, self.prompt, self.extra_data, self.outputs = item
        self.client_id: str | None = self.extra_data.get("client_id")
        self.messages: list[list[Any]] = []
        self.progress: dict[str, dict[str, Any]] = {}
        self.results: dict[str, list[Val]] = {}
        self.executed: list[str] = []
        self.ui_outputs: dict[str, Any] = {}
        self.meta: dict[str, Any] = {}
        self.info = server.object_info()
        self.sigs: dict[str, str] = {}

    # ------------------------------------------------------------------ messages
    def add_message(self, event: str, data: dict[str, Any], broadcast: bool) -> None:
        data = {**data, "timestamp": now_ms()}
        self.messages.append([event, data])
        if self.client_id is not None or broadcast:
            self.server.emit(event, data, self.client_id)

    def send_progress_state(self) -> None:
        nodes = {
            nid: {"value": p["value"], "max": p["max"], "state": p["state"], "node_id": nid,
                  "prompt_id": self.prompt_id, "display_node_id": nid, "parent_node_id": None,
                  "real_node_id": nid}
            for nid, p in self.progress.items()
        }
        self.server.emit("progress_state", {"prompt_id": self.prompt_id, "nodes": nodes},
                         self.client_id)

    def start_progress(self, nid: str) -> None:
        self.progress[nid] = {"value": 0.0, "max": 1.0, "state": "running"}
        self.send_progress_state()

    def update_progress(self, nid: str, value: int, maximum: int) -> None:
        p = self.progress.setdefault(nid, {"value": 0, "max": 1, "state": "running"})
        p.update(value=value, max=maximum, state="running")
        self.send_progress_state()

    def finish_progress(self, nid: str) -> None:
        p = self.progress.setdefault(nid, {"value": 0, "max": 1, "state": "running"})
        p.update(value=p["max"], state="finished")
        self.send_progress_state()

    def send_preview(self, nid: str, image_bytes: bytes, mime: str, with_progress: dict | None
                     ) -> None:
        """event-4 frame, then the 'progress' message, then the event-1 frame (as recorded)."""
        server, cid = self.server, self.client_id
        supports = server.supports_metadata(cid)
        if supports and image_bytes:
            meta = {"node_id": nid, "prompt_id": self.prompt_id, "display_node_id": nid,
                    "parent_node_id": None, "real_node_id": nid, "image_type": mime}
            server.emit(4, (meta, image_bytes), cid)
        if with_progress is not None:
            server.emit("progress", with_progress, cid)
        if not supports and image_bytes:
            server.emit(1, (1 if mime == "image/jpeg" else 2, image_bytes), cid)

    # ------------------------------------------------------------------ cache
    def signature(self, nid: str) -> str:
        if nid in self.sigs:
            return self.sigs[nid]
        self.sigs[nid] = f"cycle:{nid}"  # replaced below; guards against link cycles
        node = self.prompt[nid]
        parts: list[Any] = [node.get("class_type")]
        inputs = node.get("inputs", {}) if isinstance(node.get("inputs"), dict) else {}
        for name in sorted(inputs):
            value = inputs[name]
            if is_link(value) and value[0] in self.prompt:
                parts.append([name, "link", self.signature(value[0]), value[1]])
            else:
                parts.append([name, value])
        if node.get("class_type") in NEVER_CACHED:  # IS_CHANGED returns the time
            parts.append(uuid.uuid4().hex)
        if node.get("class_type") in ("LoadImage", "LoadImageMask"):
            parts.append(self.file_hash(str(inputs.get("image", ""))))
        sig = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
        self.sigs[nid] = sig
        return sig

    def file_hash(self, name: str) -> str:
        path = self.double.input_dir / name
        try:
            return hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            return "missing"

    # ------------------------------------------------------------------ scheduling
    def is_output(self, nid: str) -> bool:
        return bool(self.info.get(self.prompt[nid]["class_type"], {}).get("output_node"))

    def is_cached(self, nid: str) -> bool:
        return self.sigs[nid] in self.server.cache

    def build_plan(self) -> None:
        self.pending: dict[str, bool] = {}
        self.block_count: dict[str, int] = {}
        self.blocking: dict[str, dict[str, bool]] = {}
        for out in self.outputs:
            stack = [out]
            links: list[tuple[str, str]] = []
            while stack:
                uid = stack.pop()
                if uid in self.pending:
                    continue
                self.pending[uid] = True
                self.block_count.setdefault(uid, 0)
                self.blocking.setdefault(uid, {})
                for value in self.prompt[uid].get("inputs", {}).values():
                    if is_link(value) and value[0] in self.prompt:
                        if not self.is_cached(value[0]):
                            stack.append(value[0])
                        links.append((value[0], uid))
            for src, dst in links:
                if self.is_cached(src) and src not in self.pending:
                    continue
                if src not in self.pending:
                    continue
                if dst not in self.blocking[src]:
                    self.blocking[src][dst] = True
                    self.block_count[dst] += 1

    def pick(self) -> str | None:
        available = [n for n in self.pending if self.block_count[n] == 0]
        if not available:
            return None
        for n in available:
            if self.is_output(n):
                return n
        for n in available:
            if any(self.is_output(b) for b in self.blocking[n]):
                return n
        for n in available:
            if any(self.is_output(b2) for b in self.blocking[n] for b2 in self.blocking.get(b, {})):
                return n
        return available[0]

    def complete(self, nid: str) -> None:
        self.pending.pop(nid, None)
        for dst in self.blocking.get(nid, {}):
            self.block_count[dst] -= 1

    # ------------------------------------------------------------------ run
    async def execute(self) -> dict[str, Any]:
        server = self.server
        server.client_id = self.client_id
        server.interrupt_flag = False
        self.add_message("execution_start", {"prompt_id": self.prompt_id}, False)
        for nid in self.prompt:
            self.signature(nid)
        keep = set(self.sigs.values())
        for key in [k for k in server.cache if k not in keep]:
            del server.cache[key]
        cached = [nid for nid in self.prompt if self.is_cached(nid)]
        self.add_message("execution_cached", {"nodes": cached, "prompt_id": self.prompt_id}, False)
        self.build_plan()
        success = True
        while self.pending:
            nid = self.pick()
            if nid is None:
                break
            ok = await self.run_node(nid)
            if not ok:
                success = False
                break
            self.executed.append(nid)
            self.complete(nid)
        if success:
            self.add_message("execution_success", {"prompt_id": self.prompt_id}, False)
        return {
            "prompt": [self.number, self.prompt_id, self.prompt, self.extra_data, self.outputs],
            "outputs": self.ui_outputs,
            "status": {"status_str": "success" if success else "error", "completed": success,
                       "messages": self.messages},
            "meta": self.meta,
        }

    def record_ui(self, nid: str, ui: dict[str, Any] | None) -> None:
        if ui:
            self.ui_outputs[nid] = ui
            self.meta[nid] = {"node_id": nid, "display_node": nid, "parent_node": None,
                              "real_node_id": nid}

    def inputs_of(self, nid: str) -> dict[str, Any]:
        resolved: dict[str, Any] = {}
        for name, value in self.prompt[nid].get("inputs", {}).items():
            if is_link(value):
                src, slot = value
                outs = self.results.get(src)
                if outs is None:
                    entry = self.server.cache.get(self.sigs[src])
                    outs = entry.outputs if entry else []
                resolved[name] = outs[slot] if slot < len(outs) else None
            else:
                resolved[name] = value
        return resolved

    def check_interrupt(self) -> None:
        if self.server.interrupt_flag:
            raise Interrupted()

    async def run_node(self, nid: str) -> bool:
        server, cid = self.server, self.client_id
        class_type = self.prompt[nid]["class_type"]
        entry = server.cache.get(self.sigs[nid])
        if entry is not None:
            self.results[nid] = entry.outputs
            if cid is not None:
                server.emit("executed", {"node": nid, "display_node": nid,
                                         "output": entry.ui, "prompt_id": self.prompt_id}, cid)
            self.finish_progress(nid)
            self.record_ui(nid, entry.ui)
            return True
        self.start_progress(nid)
        server.last_node_id = nid
        if cid is not None:
            server.emit("executing", {"node": nid, "display_node": nid,
                                      "prompt_id": self.prompt_id}, cid)
        inputs = self.inputs_of(nid)
        try:
            self.check_interrupt()
            if self.double._take_hang():
                await server.hang_release.wait()
                self.check_interrupt()
            failure = self.double._failure_for(nid, class_type)
            if failure is not None:
                type_name, message = failure
                trace = ('  File "/srv/ComfyUI/execution.py", line 496, in execute\n    output_data, '
                         'output_ui, has_subgraph, has_pending_tasks = await get_output_data(...)\n')
                raise NodeRuntimeError(RuntimeError(message), [trace], type_name)
            result = await self.simulate(nid, class_type, inputs)
        except Interrupted:
            self.add_message("execution_interrupted", {
                "prompt_id": self.prompt_id, "node_id": nid, "node_type": class_type,
                "executed": list(self.executed)}, True)
            return False
        except NodeRuntimeError as err:
            current = {k: [v.describe() if isinstance(v, Val) else v] for k, v in inputs.items()}
            self.add_message("execution_error", {
                "prompt_id": self.prompt_id, "node_id": nid, "node_type": class_type,
                "executed": list(self.executed), "exception_message": f"{err.exc}\n",
                "exception_type": err.type_name, "traceback": list(err.traceback_lines),
                "current_inputs": current, "current_outputs": list(self.prompt)}, False)
            return False
        self.results[nid] = result.outputs
        server.cache[self.sigs[nid]] = CacheEntry(result.outputs, result.ui)
        if result.ui is not None and cid is not None:
            server.emit("executed", {"node": nid, "display_node": nid, "output": result.ui,
                                     "prompt_id": self.prompt_id}, cid)
        self.record_ui(nid, result.ui)
        self.finish_progress(nid)
        return True

    async def simulate(self, nid: str, class_type: str, inputs: dict[str, Any]) -> NodeResult:
        d = self.double
        ctx = NodeContext(nid, class_type, inputs, self.info.get(class_type, {}), self.prompt,
                          self.extra_data, d.output_dir, d.input_dir, d.temp_dir,
                          {"load_image_traceback": list(recorded_traceback("load_image"))})
        if class_type in SAMPLER_CLASSES:
            steps, latent = sampler_plan(ctx)
            preview = d.preview_method not in ("none", "", None)
            for step in range(1, steps + 1):
                self.check_interrupt()
                if d.step_delay:
                    await asyncio.sleep(d.step_delay)
                self.check_interrupt()
                self.update_progress(nid, step, steps)
                image = b""
                if preview:
                    from tests.helpers.comfy_double_nodes import flat_images
                    img = flat_images(latent["w"], latent["h"], 1, latent["color"])[0]
                    image = jpeg_preview(img)
                self.send_preview(nid, image, "image/jpeg", {
                    "value": step, "max": steps, "prompt_id": self.prompt_id, "node": nid})
            if d.image_delay:         # a simulated card's time per sampler run
                self.check_interrupt()
                await asyncio.sleep(d.image_delay)
                self.check_interrupt()
            outs = [Val("LATENT", latent) for _ in ctx.entry.get("output", ["LATENT"])]
            return NodeResult(outs)
        if d.node_delay:
            await asyncio.sleep(d.node_delay)
        if class_type == "SaveImageWebsocket":
            images = inputs.get("images")
            imgs = images.data if isinstance(images, Val) and images.type == "IMAGE" else []
            for i, img in enumerate(imgs):
                self.update_progress(nid, i, len(imgs))
                self.send_preview(nid, png_bytes(img, compress_level=1), "image/png", {
                    "value": i, "max": len(imgs), "prompt_id": self.prompt_id, "node": nid})
            if imgs:
                self.progress[nid]["value"] = len(imgs)
            return NodeResult([])
        func = NODE_FUNCTIONS.get(class_type)
        if func is not None:
            return func(ctx)
        result = generic_outputs(ctx)
        if ctx.entry.get("output_node") and not ctx.entry.get("output"):
            return NodeResult([], None)
        return result
