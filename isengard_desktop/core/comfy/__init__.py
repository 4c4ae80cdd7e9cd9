"""ComfyUI integration, Qt-free: value types, errors, the async client, workflows, metadata.

``from isengard_desktop.core.comfy import ComfyClient`` loads the client lazily so that
importing the types does not import httpx/websockets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import (
    ComfyConnectionError,
    ComfyError,
    ComfyExecutionError,
    ComfyHTTPError,
    ComfyInterrupted,
    ComfyValidationError,
    NodeProblem,
)
from .types import (
    Device,
    ImageRef,
    NodeExecuted,
    NodeProgress,
    NodesCached,
    NodeStarted,
    PreviewImage,
    QueueState,
    RunEvent,
    RunResult,
    RunStarted,
    SystemStats,
)

if TYPE_CHECKING:
    from .client import ComfyClient

__all__ = [
    "ComfyClient",
    "ComfyConnectionError",
    "ComfyError",
    "ComfyExecutionError",
    "ComfyHTTPError",
    "ComfyInterrupted",
    "ComfyValidationError",
    "Device",
    "ImageRef",
    "NodeExecuted",
    "NodeProblem",
    "NodeProgress",
    "NodeStarted",
    "NodesCached",
    "PreviewImage",
    "QueueState",
    "RunEvent",
    "RunResult",
    "RunStarted",
    "SystemStats",
]


def __getattr__(name: str) -> Any:
    if name == "ComfyClient":
        from .client import ComfyClient
        return ComfyClient
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
