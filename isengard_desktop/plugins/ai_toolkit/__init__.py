"""ai-toolkit backend: YAML job config, tqdm parsing, loss history from loss_log.db.
Exports :class:`AiToolkitBackend`."""

from .backend import AiToolkitBackend

__all__ = ["AiToolkitBackend"]
