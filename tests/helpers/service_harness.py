"""Set-up shared by the service harnesses of the integration tests (training, external
trainers, generation, ComfyUI supervision): a started library on this test's ISENGARD_HOME,
a test character, test-speed training timings and a clean generation-service close."""

from __future__ import annotations

import asyncio

import shiboken6

from isengard_desktop.core.paths import resolve_paths
from isengard_desktop.services.library import LibraryService
from isengard_desktop.services.ops import init_main_thread_bridge


def start_library(qtbot, timeout: int):
    """``(paths, library)``: the paths of this test's ISENGARD_HOME (created) and a started,
    ready library on them (the main-thread bridge set up first)."""
    paths = resolve_paths().ensure()
    init_main_thread_bridge()
    library = LibraryService(paths)
    library.start()
    qtbot.waitUntil(lambda: library.is_ready, timeout=timeout)
    return paths, library


def fast_training(service, stop_grace_s: float, grace_s: float = 1.0) -> None:
    """Test timings for a TrainingService (stop / cancel / kill graces, persisting) and no
    torch probe in bundles."""
    service.stop_grace_s = stop_grace_s
    service.cancel_grace_s = grace_s
    service.kill_grace_s = grace_s
    service.persist_interval_s = 0.2
    service.bundle_probe_torch = False


def run_on_loop(qtbot, coro, timeout: int, runner=None):
    """Run ``coro`` to its end on the app's loop and return its result: as a task the test
    waits for when the loop runs (a test body under ``qt_asyncio_loop``), else with
    ``runner.run`` (a fixture's teardown; ``runner`` is that fixture's value), else (no loop
    was ever used) on a fresh loop built as the app builds it."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        if runner is None:       # nothing ran on a loop here: a fresh one, as the app's
            from isengard_desktop.lifecycle import run

            return run(coro)
        return runner.run(coro)
    task = loop.create_task(coro)
    qtbot.waitUntil(task.done, timeout=timeout)
    return task.result()


def close_generation_service(qtbot, service, timeout: int, runner=None) -> None:
    """Close a GenerationService on the app's loop (see :func:`run_on_loop`) and delete its
    Qt objects here, on the main thread: the cyclic GC may otherwise free them on a worker
    thread, leaving their timers registered (a later crash)."""
    run_on_loop(qtbot, service.aclose(), timeout, runner)
    shiboken6.delete(service)
