"""Test set-up shared by every test.

* Qt runs offscreen (set before any Qt import).
* Every test gets its own ISENGARD_HOME, HOME and XDG folders under tmp_path, so nothing
  touches the user's folders (the OS trash included).
* An in-memory keyring is installed; nothing reaches a real keyring.
"""

from __future__ import annotations

import atexit
import gc
import os
import shutil
import sys
import tempfile

os.environ["QT_QPA_PLATFORM"] = "offscreen"
# send2trash reads XDG_DATA_HOME once, at import: point the OS trash at a throwaway folder
# for the whole session before anything imports it.
os.environ["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="isengard-test-xdg-")
atexit.register(shutil.rmtree, os.environ["XDG_DATA_HOME"], ignore_errors=True)

import keyring  # noqa: E402
import pytest  # noqa: E402

from tests.helpers.keyring import MemoryKeyring  # noqa: E402


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    home = tmp_path / "isengard-home"
    user_home = tmp_path / "user-home"
    user_home.mkdir()
    monkeypatch.setenv("ISENGARD_HOME", str(home))
    monkeypatch.setenv("HOME", str(user_home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(user_home / ".config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(user_home / ".cache"))
    return home


@pytest.fixture(autouse=True)
def private_trash(tmp_path, monkeypatch):
    """Deletions never reach the real trash. On Linux XDG_DATA_HOME (above) already points
    Send2Trash at a throwaway folder; on Windows and macOS (no such variable) every move to
    the trash, which the app makes only through ``services.trash_support``, goes to a folder
    of the test's own instead."""
    if sys.platform.startswith("linux"):
        return None
    from tests.helpers.trash import install_private_trash

    return install_private_trash(monkeypatch, tmp_path / "test-trash")


@pytest.fixture(autouse=True)
def memory_keyring():
    previous = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(previous)


def pytest_collection_modifyitems(items):
    for item in items:
        path = str(item.fspath)
        if f"{os.sep}gui{os.sep}" in path:
            item.add_marker(pytest.mark.gui)
        if f"{os.sep}integration{os.sep}" in path:
            item.add_marker(pytest.mark.integration)


_LOOP_RUNNER = pytest.StashKey()
LEFTOVER_TIMEOUT_S = 10.0
SETTLE_ITERATIONS = 10


@pytest.fixture
def qt_asyncio_loop(request):
    """The app's asyncio loop for tests that drive Qt with qtbot (pytest-qt runs none).

    Built the way the app builds it (``isengard_desktop.lifecycle.runner``: an
    ``asyncio.Runner`` over a qasync loop); the value is that runner. The whole test (set-up,
    body and teardown) runs on the loop (:func:`pytest_runtest_protocol`), so services start
    network work as in the app, qtbot's waits run the loop's callbacks, and fixtures close
    services on the loop (``tests/helpers/service_harness.py: run_on_loop``). Afterwards the
    runner cancels what is left and closes the loop.
    """
    return request.node.stash[_LOOP_RUNNER]


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    """Run a test that uses ``qt_asyncio_loop`` inside that loop, in a plain loop callback
    (not a task: qtbot's nested event processing then runs the loop's tasks as the app's
    event loop does)."""
    if "qt_asyncio_loop" not in item.fixturenames:
        return None
    import asyncio

    from _pytest.runner import runtestprotocol
    from PySide6.QtWidgets import QApplication

    from isengard_desktop.lifecycle import runner

    app = QApplication.instance() or QApplication([])   # (what pytest-qt's qapp does)

    async def on_loop() -> None:
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def protocol() -> None:
            try:
                runtestprotocol(item, nextitem=nextitem, log=True)
            except BaseException as exc:  # noqa: BLE001 - re-raised by the runner below
                done.set_exception(exc)
            else:
                done.set_result(None)

        loop.call_soon(protocol)
        await done
        # what the test left running ends here, and the callbacks it schedules last run too
        # (a transport's close finishes in one; skipped, its socket would leak and warn in a
        # later test)
        left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in left:
            task.cancel()
        if left:
            await asyncio.wait(left, timeout=LEFTOVER_TIMEOUT_S)
        for _ in range(SETTLE_ITERATIONS):
            await asyncio.sleep(0)

    item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    # Python runs signal handlers only between bytecodes: while Qt waits for events with no
    # Python callback due, pytest-timeout's alarm would wait with it (the app's __main__ has
    # the same no-op timer for SIGTERM). With it, a stuck test at least prints its stacks.
    from isengard_desktop.lifecycle import signal_wake

    wake = signal_wake()
    with runner(app) as loop_runner:
        item.stash[_LOOP_RUNNER] = loop_runner
        try:
            loop_runner.run(on_loop())
        finally:
            del item.stash[_LOOP_RUNNER]
    # the loop's Qt objects are freed here, on the main thread: freed later by the cyclic
    # GC on a worker thread (a test server's), its timer could fire into a deleted object
    wake.stop()
    del loop_runner, wake
    gc.collect()
    item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    return True
