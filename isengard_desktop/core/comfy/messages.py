"""ComfyUI WebSocket messages: binary preview frames and per-prompt run state (pure, no I/O).

The client's socket reader hands every frame to :class:`Dispatcher`; the dispatcher routes it
to the :class:`RunTracker` of the prompt it belongs to and returns the run events to deliver.
Everything here is synchronous and deterministic so the recorded traffic of a real ComfyUI
0.3.64 (shared/fixtures/comfyui) can be replayed through it in unit tests.

Protocol facts this relies on (see the fixtures' README):

* text frames are ``{"type", "data"}``; ``executing`` with ``node: null`` and our prompt id is
  the last message of a prompt (after ``execution_success``/``_error``/``_interrupted``);
* a socket that reconnects mid-run first gets ``executing {"node": "10"}`` with *no* prompt id;
* binary event 1 = ``[u32 1][u32 format 1=JPEG 2=PNG][image]`` carries no prompt id: it
  belongs to the prompt now executing for this client; event 4 =
  ``[u32 4][u32 N][N bytes JSON][image]`` names ``prompt_id`` and ``node_id``.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ComfyExecutionError, ComfyInterrupted, node_label
from .types import (
    ImageRef,
    output_animated,
    NodeExecuted,
    NodeProgress,
    NodesCached,
    NodeStarted,
    PreviewImage,
    RunEvent,
    RunStarted,
)

PREVIEW_IMAGE = 1
UNENCODED_PREVIEW_IMAGE = 2
TEXT = 3
PREVIEW_IMAGE_WITH_METADATA = 4

IMAGE_FORMATS = {1: "image/jpeg", 2: "image/png", 3: "image/webp"}


@dataclass(frozen=True)
class BinaryFrame:
    """A decoded binary WS frame. ``prompt_id``/``node`` only for event 4."""

    event: int
    mime: str = ""
    data: bytes = field(default=b"", repr=False)
    prompt_id: str | None = None
    node: str | None = None
    text: str = ""


def _sniff_mime(data: bytes) -> str:
    if data.startswith(b"\x89PNG"):
        return "image/png"
    if data.startswith(b"\xff\xd8"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "application/octet-stream"


def decode_binary(frame: bytes) -> BinaryFrame | None:
    """Decode one binary frame; ``None`` when it is too short or malformed."""
    if len(frame) < 8:
        return None
    (event,) = struct.unpack(">I", frame[:4])
    if event == PREVIEW_IMAGE:
        (fmt,) = struct.unpack(">I", frame[4:8])
        data = frame[8:]
        return BinaryFrame(event, IMAGE_FORMATS.get(fmt) or _sniff_mime(data), data)
    if event == PREVIEW_IMAGE_WITH_METADATA:
        (length,) = struct.unpack(">I", frame[4:8])
        if 8 + length > len(frame):
            return None
        try:
            meta = json.loads(frame[8:8 + length].decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return None
        if not isinstance(meta, Mapping):
            return None
        data = frame[8 + length:]
        node = meta.get("display_node_id") or meta.get("node_id")
        prompt_id = meta.get("prompt_id")
        return BinaryFrame(event, str(meta.get("image_type") or _sniff_mime(data)), data,
                           prompt_id=str(prompt_id) if prompt_id else None,
                           node=str(node) if node is not None else None)
    if event == TEXT:
        (length,) = struct.unpack(">I", frame[4:8])
        node = frame[8:8 + length].decode("utf-8", "replace")
        return BinaryFrame(event, node=node, text=frame[8 + length:].decode("utf-8", "replace"))
    return BinaryFrame(event)


def first_line(text: object) -> str:
    for line in str(text or "").splitlines():
        if line.strip():
            return line.strip()
    return ""


def execution_error(server: str, data: Mapping[str, Any],
                    graph: Mapping[str, Any] | None = None) -> ComfyExecutionError:
    node_id = str(data.get("node_id", "") or "")
    node_type = str(data.get("node_type", "") or "")
    if not node_type and graph and isinstance(graph.get(node_id), Mapping):
        node_type = str(graph[node_id].get("class_type", ""))
    exc_type = str(data.get("exception_type", "") or "")
    exc_msg = first_line(data.get("exception_message", ""))
    where = f"ComfyUI at {server}" if server else "ComfyUI"
    what = f"{exc_type}: {exc_msg}" if exc_type and exc_msg else (exc_msg or exc_type or "an error")
    label = node_label(node_id, node_type)
    text = f"{where} failed while running node {label[5:]}: {what}"
    if not text.endswith((".", "!", "?")):
        text += "."
    return ComfyExecutionError(text, server=server, node_id=node_id, node_type=node_type,
                               exception_type=exc_type, exception_message=exc_msg)


def interrupted_error(server: str, data: Mapping[str, Any] | None,
                      graph: Mapping[str, Any] | None = None) -> ComfyInterrupted:
    data = data or {}
    node_id = data.get("node_id")
    node_id = str(node_id) if node_id not in (None, "") else None
    where = f"ComfyUI at {server}" if server else "ComfyUI"
    if node_id is None:
        return ComfyInterrupted(f"The job was cancelled before {where} started it.",
                                server=server, node_id=None)
    node_type = str(data.get("node_type", "") or "")
    if not node_type and graph and isinstance(graph.get(node_id), Mapping):
        node_type = str(graph[node_id].get("class_type", ""))
    label = node_label(node_id, node_type)
    return ComfyInterrupted(f"The job was interrupted on {where} at node {label[5:]}.",
                            server=server, node_id=node_id)


class RunTracker:
    """State of one prompt as its messages arrive. ``handle`` returns the events to deliver."""

    def __init__(self, prompt_id: str, graph: Mapping[str, Any] | None = None,
                 server: str = "") -> None:
        self.prompt_id = prompt_id
        self.graph = graph or {}
        self.server = server
        self.started = False
        self.current_node: str | None = None
        self.cached: list[str] = []
        self.executed: dict[str, tuple[ImageRef, ...]] = {}
        self.success = False
        self.error: Exception | None = None
        self.done = False            # `executing` with node null arrived

    def class_of(self, node: str | None) -> str:
        entry = self.graph.get(node) if node is not None else None
        return str(entry.get("class_type", "")) if isinstance(entry, Mapping) else ""

    def handle(self, kind: str, data: Mapping[str, Any]) -> list[RunEvent]:
        pid = self.prompt_id
        events: list[RunEvent] = []
        if self.done:
            return events
        if kind == "execution_start":
            if not self.started:
                self.started = True
                events.append(RunStarted(pid))
        elif kind == "execution_cached":
            self._ensure_started(events)
            nodes = tuple(str(n) for n in data.get("nodes") or ())
            for n in nodes:
                if n not in self.cached:
                    self.cached.append(n)
            events.append(NodesCached(pid, nodes))
        elif kind == "executing":
            node = data.get("node")
            if node is None:
                self.done = True
                self.current_node = None
            else:
                self._ensure_started(events)
                node = str(node)
                if node != self.current_node:
                    self.current_node = node
                    events.append(NodeStarted(pid, node, self.class_of(node)))
        elif kind == "progress":
            node = data.get("node")
            node = str(node) if node is not None else (self.current_node or "")
            try:
                value, top = float(data.get("value", 0)), float(data.get("max", 0))
            except (TypeError, ValueError):
                return events
            self._ensure_started(events)
            events.append(NodeProgress(pid, node, value, top))
        elif kind == "executed":
            node = str(data.get("node") or data.get("display_node") or "")
            output = data.get("output") or {}
            animated = output_animated(output) if isinstance(output, Mapping) else False
            images = tuple(ImageRef.from_json(i, animated) for i in (output.get("images") or ())
                           if isinstance(i, Mapping))
            self.executed[node] = images
            self._ensure_started(events)
            events.append(NodeExecuted(pid, node, images))
        elif kind == "execution_success":
            self.success = True
        elif kind == "execution_error":
            self.error = execution_error(self.server, data, self.graph)
        elif kind == "execution_interrupted":
            self.error = interrupted_error(self.server, data, self.graph)
        return events

    def preview(self, frame: BinaryFrame) -> PreviewImage:
        node = frame.node if frame.node is not None else self.current_node
        return PreviewImage(self.prompt_id, node, frame.mime, frame.data)

    def _ensure_started(self, events: list[RunEvent]) -> None:
        # After a reconnect the first messages may be mid-run: report the start once anyway.
        if not self.started:
            self.started = True
            events.append(RunStarted(self.prompt_id))


class Dispatcher:
    """Routes the messages of one socket (one client id) to the trackers of the runs in flight."""

    def __init__(self) -> None:
        self.trackers: dict[str, RunTracker] = {}
        self.executing_prompt: str | None = None   # prompt now running for this client
        self.server_features: dict[str, Any] = {}
        self.queue_remaining: int | None = None

    def add(self, tracker: RunTracker) -> None:
        self.trackers[tracker.prompt_id] = tracker

    def remove(self, prompt_id: str) -> None:
        self.trackers.pop(prompt_id, None)
        if self.executing_prompt == prompt_id:
            self.executing_prompt = None

    def feed_text(self, message: Any) -> list[tuple[RunTracker, RunEvent | None]]:
        """One text frame (already JSON-decoded). Returns (tracker, event) pairs; event is None
        when the frame only changed the tracker's state (e.g. it finished)."""
        if not isinstance(message, Mapping):
            return []
        kind = message.get("type")
        data = message.get("data")
        if not isinstance(kind, str) or not isinstance(data, Mapping):
            return []
        if kind == "status":
            info = (data.get("status") or {}).get("exec_info") or {}
            if isinstance(info, Mapping) and isinstance(info.get("queue_remaining"), int):
                self.queue_remaining = info["queue_remaining"]
            return []
        if kind == "feature_flags":
            self.server_features = dict(data)
            return []
        pid = data.get("prompt_id")
        if pid is None and kind == "executing":
            # Reconnect quirk: `executing {"node": "10"}` without a prompt id right after
            # connecting; it belongs to the prompt now running for this client.
            pid = self.executing_prompt
            if pid is None and len(self.trackers) == 1:
                pid = next(iter(self.trackers))
            if pid is None or data.get("node") is None:
                return []
        if pid is None:
            return []
        pid = str(pid)
        if kind in ("execution_start", "executing") and data.get("node", "") is not None:
            self.executing_prompt = pid
        tracker = self.trackers.get(pid)
        if kind == "executing" and data.get("node", "") is None and self.executing_prompt == pid:
            self.executing_prompt = None
        if tracker is None:
            return []
        was_done = tracker.done
        events = tracker.handle(kind, data)
        out: list[tuple[RunTracker, RunEvent | None]] = [(tracker, e) for e in events]
        if tracker.done and not was_done:
            out.append((tracker, None))
        return out

    def feed_binary(self, frame: bytes) -> list[tuple[RunTracker, RunEvent | None]]:
        decoded = decode_binary(frame)
        if decoded is None or decoded.event not in (PREVIEW_IMAGE, PREVIEW_IMAGE_WITH_METADATA):
            return []
        pid = decoded.prompt_id or self.executing_prompt
        tracker = self.trackers.get(pid) if pid else None
        if tracker is None or tracker.done:
            return []
        return [(tracker, tracker.preview(decoded))]
