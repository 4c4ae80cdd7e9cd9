"""diffusion-pipe backend: main + dataset TOML per model type, DeepSpeed line parsing.
Exports :class:`DiffusionPipeBackend`."""

from .backend import DiffusionPipeBackend

__all__ = ["DiffusionPipeBackend"]
