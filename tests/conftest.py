"""Test set-up shared by every test.

* Qt runs offscreen (set before any Qt import).
* Every test gets its own ISENGARD_HOME, HOME and XDG folders under tmp_path, so nothing
  touches the user's folders (the OS trash included).
* An in-memory keyring is installed; nothing reaches a real keyring.
"""

from __future__ import annotations

import atexit
import os
import shutil
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


@pytest.fixture
def qt_asyncio_loop(qapp):
    """A qasync event loop for tests that drive Qt with qtbot (pytest-qt does not run one).

    The app runs ``qasync.QEventLoop`` with ``run_until_complete``; here the loop is installed
    and marked running, and qtbot's event processing (``waitUntil``/``waitSignal``) runs its
    callbacks, so services can ``asyncio.ensure_future`` network work exactly as in the app.
    Tasks still pending at the end are cancelled.
    """
    import asyncio

    import qasync

    loop = qasync.QEventLoop(qapp)
    asyncio.set_event_loop(loop)
    asyncio.events._set_running_loop(loop)
    try:
        yield loop
    finally:
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in pending:
            task.cancel()
        deadline = 200
        while deadline and any(not t.done() for t in pending):
            qapp.processEvents()
            deadline -= 1
        # run the callbacks those tasks scheduled last (a transport's close finishes in one;
        # skipped, its socket would leak and warn in a later test)
        for _ in range(10):
            qapp.processEvents()
        asyncio.events._set_running_loop(None)
        loop.close()
        asyncio.set_event_loop(None)
        # qasync keeps its Qt timer object alive after close(); if the loop is later freed
        # on another thread (a test server's), that timer fires into a deleted object and
        # the process crashes. Delete it here, on the main thread.
        import shiboken6

        timer = getattr(loop, "_timer", None)
        if timer is not None and shiboken6.isValid(timer):
            shiboken6.delete(timer)
