"""Trainer backends by key, imported only when first used (Qt-free).

Entries are ``"package.module:Attribute"`` strings (or, in tests, a ready factory); the module
is imported the first time :meth:`TrainerRegistry.get` asks for that key, and the backend
object is created once and kept. The UI lists :meth:`TrainerRegistry.entries` (key and label,
no import) and gets backends only through the registry, never by importing a plugin module.

There is no module-level singleton: :func:`default_registry` builds a fresh registry with the
built-in backends, and the composition root passes it on. :func:`bind_external_installs`
re-registers the external trainers (ai-toolkit, diffusion-pipe, kohya) bound to the installs
from the user's settings.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from collections.abc import Callable

from ..core.training.installs import TRAINER_KINDS, ExternalInstall, install_from_settings
from .interface import TrainerBackend

__all__ = ["BUILTIN_BACKENDS", "BackendEntry", "BoundFactory", "TrainerRegistry",
           "UnknownBackendError", "bind_external_installs", "default_registry"]

Target = str | Callable[[], TrainerBackend]

# key -> (label, "module:attr"). Adapters for ai-toolkit, diffusion-pipe and kohya go here.
BUILTIN_BACKENDS: dict[str, tuple[str, str]] = {
    "builtin": ("Built-in (diffusers + peft)",
                "isengard_desktop.plugins.builtin_trainer:BuiltinTrainer"),
    "diffusion-pipe": ("diffusion-pipe",
                       "isengard_desktop.plugins.diffusion_pipe:DiffusionPipeBackend"),
    "ai-toolkit": ("ai-toolkit (ostris)",
                   "isengard_desktop.plugins.ai_toolkit:AiToolkitBackend"),
    "kohya": ("kohya sd-scripts", "isengard_desktop.plugins.kohya:KohyaBackend"),
}


class UnknownBackendError(KeyError):
    """No backend is registered under that key; the message lists the known ones."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown backend"


@dataclass(frozen=True)
class BackendEntry:
    """A registered backend, described without importing it."""

    key: str
    label: str
    target: str   # "module:attr", or a repr for factories registered in code


def _load(target: str) -> Callable[[], TrainerBackend]:
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"backend target must look like 'package.module:Attribute' "
                         f"(got {target!r})")
    module = importlib.import_module(module_name)
    obj = module
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj  # type: ignore[return-value]


class TrainerRegistry:
    """Trainer backends by key, loaded lazily."""

    def __init__(self) -> None:
        self._targets: dict[str, Target] = {}
        self._labels: dict[str, str] = {}
        self._made: dict[str, TrainerBackend] = {}

    def register(self, key: str, target: Target, label: str = "", *,
                 replace: bool = False) -> None:
        """Register ``target`` (``"module:attr"`` of a class/factory, or a callable) as
        ``key``. ValueError if the key is taken (unless ``replace``)."""
        if not key:
            raise ValueError("a backend key cannot be empty")
        if key in self._targets and not replace:
            raise ValueError(f"a trainer backend named {key!r} is already registered")
        self._targets[key] = target
        self._labels[key] = label or key
        self._made.pop(key, None)

    def unregister(self, key: str) -> None:
        self._targets.pop(key, None)
        self._labels.pop(key, None)
        self._made.pop(key, None)

    def keys(self) -> list[str]:
        return list(self._targets)

    def __contains__(self, key: object) -> bool:
        return key in self._targets

    def label(self, key: str) -> str:
        """The human name of ``key`` (the key itself when unknown)."""
        return self._labels.get(key, key)

    def entries(self) -> list[BackendEntry]:
        """Key, label and target of every backend, without importing any."""
        return [BackendEntry(k, self._labels[k], t if isinstance(t, str) else repr(t))
                for k, t in self._targets.items()]

    def get(self, key: str) -> TrainerBackend:
        """The backend for ``key`` (imported and created on first use)."""
        made = self._made.get(key)
        if made is not None:
            return made
        try:
            target = self._targets[key]
        except KeyError:
            known = ", ".join(self._targets) or "none"
            raise UnknownBackendError(
                f"No trainer backend {key!r} is installed (known: {known}).") from None
        factory = _load(target) if isinstance(target, str) else target
        backend = factory()
        self._made[key] = backend
        return backend


class BoundFactory:
    """A factory for ``target`` ("module:attr") called with fixed arguments, e.g. an external
    backend bound to the install from the settings: ``BoundFactory(target, install)``. The
    module is imported only when the factory is first called."""

    def __init__(self, target: str, *args: object) -> None:
        self.target = target
        self.args = args

    def __call__(self) -> TrainerBackend:
        return _load(self.target)(*self.args)

    def __repr__(self) -> str:
        return f"{self.target}({', '.join(map(repr, self.args))})"


def default_registry() -> TrainerRegistry:
    """A registry holding the backends that ship with the app."""
    registry = TrainerRegistry()
    for key, (label, target) in BUILTIN_BACKENDS.items():
        registry.register(key, target, label)
    return registry


def bind_external_installs(registry: TrainerRegistry,
                           trainer_installs: dict[str, dict[str, str]] | None,
                           bound: dict[str, ExternalInstall]) -> list[str]:
    """Re-register each external trainer backend (ai-toolkit, diffusion-pipe, kohya) that is
    in ``registry`` with a :class:`BoundFactory` for its install in ``trainer_installs``
    (``Settings.trainer_installs``: folder + Python), when that install differs from the one
    in ``bound``. ``bound`` (key -> install last bound) is updated in place; returns the keys
    re-registered. A running job keeps the backend object it started with; the registry
    creates a new one on the next :meth:`TrainerRegistry.get`."""
    installs = trainer_installs or {}
    changed = []
    for key in TRAINER_KINDS:
        if key not in registry or key not in BUILTIN_BACKENDS:
            continue
        install = install_from_settings(installs, key)
        if bound.get(key) == install:
            continue
        label, target = BUILTIN_BACKENDS[key]
        registry.register(key, BoundFactory(target, install), label, replace=True)
        bound[key] = install
        changed.append(key)
    return changed
