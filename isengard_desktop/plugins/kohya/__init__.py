"""kohya sd-scripts backend: dataset + config TOML, argv, and its progress parser.
Exports :class:`KohyaBackend`."""

from .backend import KohyaBackend

__all__ = ["KohyaBackend"]
