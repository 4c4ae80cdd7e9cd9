"""From a queued training job to a trainer's command line and environment (Qt-free).

The steps the training service takes before and around starting a trainer process, apart
from its queue and states:

* :func:`require_backend` (at submit, SpecError) and :func:`usable_backend` (at launch): can
  the job's backend be loaded and run here (cheap file checks);
* :func:`prepare_launch` (worker thread): the job's photo list (``dataset.json``, from the
  database, at its first start), the backend's :class:`~..plugins.interface.Launch`
  (resuming when a complete checkpoint exists) and its config files written;
* :func:`child_env`: the child's environment (os.environ, the launch's variables, unbuffered
  UTF-8 output, offline Hugging Face hub, the correlation id, the secrets);
* :func:`placed_stop_file`: where the stop file goes now, for a backend whose stop file lives
  in a folder the tool creates after launch.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any
from collections.abc import Callable

from loguru import logger

from ...core.training.checkpoints import latest_complete
from ...core.training.dataset_list import DatasetEntry, write_dataset_list
from ...core.training.job_files import write_launch_files
from ...core.training.spec import JobPaths, SpecError, TrainingJob
from ...plugins.interface import Launch
from ...plugins.registry import TrainerRegistry, UnknownBackendError

__all__ = ["child_env", "placed_stop_file", "prepare_launch", "read_secrets",
           "require_backend", "usable_backend"]


def require_backend(registry: TrainerRegistry, key: str) -> None:
    """SpecError naming the ``backend`` field unless ``key`` is registered and can run here."""
    if key not in registry:
        known = ", ".join(registry.keys())
        raise SpecError(f"backend: no trainer backend {key!r} (known: {known})")
    usable, why = registry.get(key).available()   # cheap file checks
    if not usable:
        raise SpecError(f"backend: {registry.label(key)} cannot run here: {why}")


def usable_backend(registry: TrainerRegistry, key: str) -> tuple[Any, str]:
    """``(backend, "")`` when the backend ``key`` loads and is available here, else
    ``(None, why)``."""
    try:
        backend = registry.get(key)
        ok, why = backend.available()
    except (UnknownBackendError, ImportError, AttributeError, ValueError) as exc:
        return None, f"The trainer backend {key!r} cannot be loaded: {exc}"
    return (backend, "") if ok else (None, why)


def prepare_launch(backend: Any, spec: TrainingJob, paths: JobPaths,
                   dataset: list[DatasetEntry] | None = None) -> tuple[Launch, bool]:
    """(worker thread) The launch of ``spec`` and whether it resumes; its files written.

    ``dataset``: the character's photos from the database now. At the job's first start they
    become ``jobs/<id>/dataset.json``, the list every trainer reads; a resumed job keeps the
    list saved at its start (the argument is then ignored). An empty list is written too:
    the trainer then fails with a message naming the list."""
    if not paths.spec.is_file():
        raise FileNotFoundError(f"{paths.spec} is missing")
    if not paths.dataset_list.is_file():
        write_dataset_list(paths.root, dataset or [])   # a trainer refuses an empty one
    resume = latest_complete(paths.root, deep=False) is not None
    launch = backend.build_launch(spec, paths, resume)
    write_launch_files(launch.files)
    return launch, resume


def read_secrets(secrets_env: Callable[[], dict[str, str]], job_id: str) -> dict[str, str]:
    """The secrets for the child's environment; none when the keyring cannot be read (a
    locked or broken keyring must not stop training)."""
    try:
        return dict(secrets_env())
    except Exception as exc:
        logger.warning("job {}: secrets unavailable, starting without them: {}", job_id, exc)
        return {}


def child_env(launch: Launch, cid: str, secrets: dict[str, str]) -> dict[str, str]:
    """The trainer process's environment."""
    env = dict(os.environ)
    env.update(launch.env)
    env.update(PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8", HF_HUB_OFFLINE="1",
               ISENGARD_CORRELATION_ID=cid)
    env.update(secrets)
    return env


def placed_stop_file(registry: TrainerRegistry, backend_key: str, paths: JobPaths,
                     launch: Launch, job_id: str) -> Launch:
    """``launch`` with its stop file where it goes now. A backend whose stop file lives in a
    folder the tool creates after launch (diffusion-pipe's run folder) says where, through an
    optional ``resolve_stop_file(paths, stop_file) -> Path``; otherwise (or when that fails,
    which is logged) ``launch`` is returned as it is."""
    if launch.stop != "file" or launch.stop_file is None:
        return launch
    try:
        resolve = getattr(registry.get(backend_key), "resolve_stop_file", None)
        target = Path(resolve(paths, Path(launch.stop_file))) if resolve else None
    except (UnknownBackendError, ImportError, AttributeError, OSError, ValueError) as exc:
        logger.warning("job {}: the stop file could not be placed: {}", job_id, exc)
        return launch
    if target is not None and target != Path(launch.stop_file):
        return replace(launch, stop_file=target)
    return launch
