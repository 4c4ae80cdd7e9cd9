"""The managed ComfyUI install's check: start it once and read ``/object_info``.

:class:`ComfyCheck` starts a ComfyUI folder with its Python through :class:`ComfyServer`
(key ``install-check``: its own extra-model-paths file and log ``logs/comfyui/install-check.log``),
takes the ``/object_info`` its readiness probe read, stops it, and says whether every node class
Isengard needs is listed (:func:`check_object_info`, run on a worker thread: it loads the
workflow library from disk).

Signals:
    checked(ComfyVerify): once per :meth:`start` (not after :meth:`stop`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from ...core.comfy_install.layout import ComfyVerify
from ...core.paths import AppPaths
from ..ops import run_in_executor

__all__ = ["CHECK_KEY", "ComfyCheck", "check_object_info", "required_node_classes"]

CHECK_KEY = "install-check"


def required_node_classes(packs: Sequence[str] = ()) -> list[str]:
    """The core ComfyUI node classes our workflows use, plus those our workflows and Generate
    toggles take from the custom-node ``packs`` that were installed (other packs' nodes are
    the toggles' business and not required here)."""
    from ...core.comfy.graph_check import node_pack
    from ...core.comfy.workflow_manifest import WorkflowLibrary

    library = WorkflowLibrary.load()
    used: set[str] = set()
    for spec in library.specs():
        used.update(spec.nodes)
    for feature in library.features.values():
        used.update(feature.nodes)
    wanted = {"", *packs}
    return sorted(n for n in used if node_pack(n) in wanted)


def check_object_info(info: Mapping[str, Any], packs: Sequence[str] = ()) -> ComfyVerify:
    """(worker thread) Whether ``/object_info`` lists every node class we need."""
    missing = tuple(n for n in required_node_classes(packs) if n not in info)
    problem = (f"ComfyUI started but lacks the node classes {', '.join(missing)} that "
               "Isengard's workflows use; install it again." if missing else "")
    return ComfyVerify(ok=not missing, problem=problem, missing_nodes=missing,
                       node_count=len(info), checked=time.time())


class ComfyCheck(QObject):
    """See the module docstring."""

    checked = Signal(object)

    def __init__(self, paths: AppPaths, timeout_s: float, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._paths = paths
        self.timeout_s = timeout_s
        self._server: Any = None
        self._retired: list[Any] = []
        self._info: dict[str, Any] = {}
        self._packs: list[str] = []
        self._io = ThreadPoolExecutor(1, thread_name_prefix="comfy-check")
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._on_timeout)

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self, comfy: Path, python: Path, packs: Sequence[str] = ()) -> None:
        from .comfy_server import ComfyServer, _http_probe

        self.stop()
        self._info, self._packs = {}, list(packs)

        async def probe(url: str) -> dict[str, Any]:
            info = await _http_probe(url)
            self._info = info if isinstance(info, dict) else {}
            return info

        server = ComfyServer(self._paths, key=CHECK_KEY, probe=probe, parent=self)
        server.start_timeout_s = self.timeout_s
        server.configure(str(comfy), str(python))
        server.ready.connect(lambda _url: self._on_ready(server))
        server.state_changed.connect(lambda state, msg: self._on_state(server, state, msg))
        self._server = server
        self._timer.start(int(self.timeout_s * 1000) + 5000)
        server.start()

    def stop(self) -> None:
        """Stop the server without waiting (SIGTERM, then SIGKILL); no ``checked`` follows."""
        self._timer.stop()
        server, self._server = self._server, None
        if server is not None:
            # kept (one small object per check) so shutdown() can end it at quit
            server.stop()
            self._retired.append(server)

    def shutdown(self) -> None:
        """At quit: end any server's process tree (blocks a few seconds at most)."""
        self._timer.stop()
        for server in [self._server, *self._retired]:
            if server is not None:
                server.shutdown(grace_s=2.0)
        self._server = None
        self._retired.clear()
        self._io.shutdown(wait=False, cancel_futures=True)

    def _on_state(self, server: Any, state: str, message: str) -> None:
        if server is self._server and state == "error":
            self.stop()
            self.checked.emit(ComfyVerify(ok=False, problem=(
                f"The managed ComfyUI did not start: {message}"), checked=time.time()))

    def _on_ready(self, server: Any) -> None:
        if server is not self._server:
            return
        self.stop()
        info, packs = self._info, self._packs

        def failed(exc: BaseException) -> None:
            self.checked.emit(ComfyVerify(ok=False, problem=(
                f"Could not check ComfyUI's node list: {type(exc).__name__}: {exc}"),
                checked=time.time()))

        run_in_executor(self._io, lambda: check_object_info(info, packs), self.checked.emit,
                        failed)

    def _on_timeout(self) -> None:
        if self._server is None:
            return
        self.stop()
        self.checked.emit(ComfyVerify(ok=False, problem=(
            f"The managed ComfyUI did not answer within {self.timeout_s:.0f} s; see its log "
            f"({self._paths.logs / 'comfyui' / (CHECK_KEY + '.log')})."), checked=time.time()))
