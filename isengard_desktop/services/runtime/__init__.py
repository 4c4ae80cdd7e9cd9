"""Creates, verifies, repairs and upgrades the trainer runtime in child processes, with progress
as Qt signals. Exports :class:`RuntimeService`."""

from .service import RuntimeService

__all__ = ["RuntimeService"]
