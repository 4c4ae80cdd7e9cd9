"""Family key (``TrainingJob.family``) → the class that implements it, imported on demand.

Classes are named by ``"module:attribute"`` strings, so looking one up imports only that
family's module (and a family module that is not part of this build yet fails with a clear
config error instead of breaking every other family).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ..errors import ConfigError

if TYPE_CHECKING:
    from .base import Family

_PKG = "isengard_desktop.training_runtime.families"
FAMILY_CLASSES: dict[str, str] = {
    "sd15": f"{_PKG}.unet:SD15Family",
    "sdxl": f"{_PKG}.unet:SDXLFamily",
    "flux-dev": f"{_PKG}.flux:FluxFamily",
    "flux-schnell": f"{_PKG}.flux:FluxFamily",
    "chroma": f"{_PKG}.chroma:ChromaFamily",
}


def family_class(key: str) -> type[Family]:
    """The :class:`~.base.Family` subclass for ``key``; :class:`ConfigError` if unknown or
    not available in this build."""
    target = FAMILY_CLASSES.get(key)
    if target is None:
        raise ConfigError(f"family: unknown model family {key!r} "
                          f"(known: {', '.join(FAMILY_CLASSES)})")
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise  # a dependency of the family module is missing: a real error
        raise ConfigError(f"family: training {key} is not available in this build "
                          f"({module_name} is missing)") from exc
    cls = getattr(module, attr, None)
    if cls is None:
        raise ConfigError(f"family: training {key} is not available in this build "
                          f"({target} is missing)")
    return cls
