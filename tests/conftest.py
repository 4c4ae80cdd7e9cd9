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
    """The app's asyncio loop for tests that drive Qt with qtbot (pytest-qt runs none).

    Built the way the app builds it (``isengard_desktop.lifecycle.runner``: an
    ``asyncio.Runner`` over a qasync loop); the value is that runner. The test function itself
    runs on the loop (:func:`pytest_pyfunc_call`), so services start network work as in the
    app and qtbot's waits run the loop's callbacks. Fixture teardowns that need the loop use
    ``runner.run(...)`` (``tests/helpers/service_harness.py: run_on_loop``). At the end the
    runner cancels what is left and closes the loop.
    """
    from isengard_desktop.lifecycle import runner

    with runner(qapp) as loop_runner:
        yield loop_runner
        # Qt objects of the loop are freed here, on the main thread: freed later by the
        # cyclic GC on a worker thread (a test server's), its timer could fire into a
        # deleted object.
    del loop_runner
    gc.collect()


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    """Run the (synchronous) body of a test using ``qt_asyncio_loop`` on that loop, in a
    plain loop callback: qtbot's waits then run other tasks as the app's event loop does."""
    if "qt_asyncio_loop" not in pyfuncitem.fixturenames:
        return None
    import asyncio
    import inspect

    loop_runner = pyfuncitem.funcargs["qt_asyncio_loop"]
    names = inspect.signature(pyfuncitem.obj).parameters
    kwargs = {name: pyfuncitem.funcargs[name] for name in names}

    async def call_on_loop() -> None:
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def body() -> None:
            try:
                pyfuncitem.obj(**kwargs)
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting test
                done.set_exception(exc)
            else:
                done.set_result(None)

        loop.call_soon(body)
        await done

    loop_runner.run(call_on_loop())
    return True
