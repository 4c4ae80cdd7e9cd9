"""Small pieces of a generation job: progress (run events → :class:`Progress`; the service
throttles them to ~10 a second), the trigger word, PNG sizes."""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from typing import Any

from ...core.comfy.types import (NodeProgress, NodesCached, NodeStarted, PreviewImage, RunEvent,
                                RunStarted)
from ...core.types import Progress

__all__ = ["ProgressTracker", "png_size"]


WORKING = "Working"      # the label while no node has said what it is


def png_size(data: bytes) -> tuple[int, int] | None:
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
        return struct.unpack(">II", data[16:24])
    return None


class ProgressTracker:
    """Turns run events into :class:`Progress` values (``done``/``total``: the node's steps;
    ``overall``: the fraction of the whole graph)."""

    def __init__(self, job_id: str, server: str, graph: Mapping[str, Any],
                 out: Callable[[Progress], None]) -> None:
        self.job_id, self.server, self.graph, self.out = job_id, server, graph, out
        self.cached: set[str] = set()
        self.started: list[str] = []
        self.node = self.node_class = ""
        self.step = self.total = 0
        self.preview: bytes | None = None

    def fraction(self) -> float:
        nodes = max(1, len(self.graph) - len(self.cached))
        done = max(0, len(self.started) - 1)
        current = self.step / self.total if self.total else 0.0
        return max(0.0, min(1.0, (done + current) / nodes))

    def __call__(self, event: RunEvent) -> None:
        if isinstance(event, RunStarted):
            pass
        elif isinstance(event, NodesCached):
            self.cached.update(event.nodes)
        elif isinstance(event, NodeStarted):
            if event.node not in self.started:
                self.started.append(event.node)
            self.node, self.node_class = event.node, event.class_type
            self.step = self.total = 0
        elif isinstance(event, NodeProgress):
            self.node = event.node
            self.step, self.total = int(event.value), int(event.max)
        elif isinstance(event, PreviewImage):
            self.preview = event.data
        else:
            return
        self.out(Progress(label=self.node_class or WORKING, done=self.step, total=self.total,
                          job_id=self.job_id, server=self.server, node=self.node,
                          node_class=self.node_class, overall=self.fraction(),
                          preview=self.preview))
