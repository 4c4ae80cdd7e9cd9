"""The database service: one writer, write ops in one transaction, one ChangeSet emitted
centrally per write; and the dataset checks service (progress, cancel)."""

from __future__ import annotations

import sqlite3
import sys
import threading

import pytest

from isengard_desktop.core.paths import resolve_paths
from isengard_desktop.services.database import (WRITER_THREAD_NAME, ChangeSet,
                                                DatabaseService, WriteResult)
from isengard_desktop.services.dataset_checks import ChecksOutcome, DatasetChecksService
from isengard_desktop.services.ops import init_main_thread_bridge
from tests.helpers.photos import make_photos
from tests.helpers.service_harness import start_library

WAIT = 10_000


@pytest.fixture
def db(qtbot):
    init_main_thread_bridge()
    service = DatabaseService(resolve_paths().ensure().db_file)
    loaded: list = []
    with qtbot.waitSignal(service.opened, timeout=WAIT):
        service.open(lambda conn: conn.execute("PRAGMA journal_mode").fetchone()[0],
                     loaded.append)
    assert loaded == ["wal"]
    yield service
    service.shutdown()


def changes_of(service: DatabaseService) -> list[ChangeSet]:
    seen: list[ChangeSet] = []
    service.changed.connect(seen.append)
    return seen


def insert(value: int, changes: ChangeSet = ChangeSet(characters=True)):
    def op(conn: sqlite3.Connection) -> WriteResult[int]:
        assert threading.current_thread().name.startswith(WRITER_THREAD_NAME)
        conn.execute("CREATE TABLE IF NOT EXISTS t (x INTEGER UNIQUE)")
        conn.execute("INSERT INTO t VALUES (?)", (value,))
        return WriteResult(value, changes)

    return op


def rows(qtbot, service: DatabaseService) -> list[int]:
    out: list = []
    service.read(lambda conn: [r[0] for r in conn.execute("SELECT x FROM t ORDER BY x")],
                 out.append)
    qtbot.waitUntil(lambda: bool(out), timeout=WAIT)
    return out[0]


def test_opening_announces_everything_once(qtbot):
    init_main_thread_bridge()
    service = DatabaseService(resolve_paths().ensure().db_file)
    seen = changes_of(service)
    order: list[str] = []
    service.opened.connect(lambda: order.append("opened"))
    try:
        service.open(lambda conn: None, lambda _: order.append("loaded"))
        qtbot.waitUntil(lambda: bool(seen), timeout=WAIT)
        assert order == ["loaded", "opened"]
        assert seen == [ChangeSet.everything_changed()] and seen[0].touches_library
        with pytest.raises(RuntimeError):
            service.open(lambda conn: None, lambda _: None)
    finally:
        service.shutdown()


def test_each_write_emits_its_change_set_once_after_on_success(qtbot, db):
    seen = changes_of(db)
    order: list = []
    db.changed.connect(lambda change: order.append("changed"))
    change = ChangeSet(images=True, character_ids=frozenset({7}))
    db.write(insert(1, change), lambda value: order.append(("success", value)))
    db.write(insert(2), lambda value: order.append(("success", value)))
    qtbot.waitUntil(lambda: len(seen) == 2, timeout=WAIT)
    assert seen == [change, ChangeSet(characters=True)]
    assert order == [("success", 1), "changed", ("success", 2), "changed"]
    assert rows(qtbot, db) == [1, 2]
    qtbot.wait(50)
    assert len(seen) == 2          # reads emit nothing


def test_a_write_that_changed_nothing_emits_nothing(qtbot, db):
    seen = changes_of(db)
    done: list = []
    db.write(lambda conn: WriteResult("same", ChangeSet()), done.append)
    qtbot.waitUntil(lambda: bool(done), timeout=WAIT)
    qtbot.wait(50)
    assert done == ["same"] and seen == []


def test_a_failed_write_rolls_back_emits_nothing_and_reports(qtbot, db):
    db.write(insert(1))
    qtbot.waitUntil(lambda: rows(qtbot, db) == [1], timeout=WAIT)
    seen = changes_of(db)
    failures: list[BaseException] = []
    succeeded: list = []

    def op(conn: sqlite3.Connection) -> WriteResult[None]:
        conn.execute("INSERT INTO t VALUES (2)")
        conn.execute("INSERT INTO t VALUES (1)")        # UNIQUE: fails
        return WriteResult(None, ChangeSet(characters=True))

    db.write(op, succeeded.append, failures.append)
    qtbot.waitUntil(lambda: bool(failures), timeout=WAIT)
    assert isinstance(failures[0], sqlite3.IntegrityError)
    assert rows(qtbot, db) == [1]          # the first insert of the op was rolled back
    assert seen == [] and succeeded == []


def test_a_failure_without_handler_reaches_the_excepthook(qtbot, db, monkeypatch):
    hooked: list = []
    monkeypatch.setattr(sys, "excepthook", lambda *args: hooked.append(args[1]))
    seen = changes_of(db)

    def op(conn: sqlite3.Connection) -> WriteResult[None]:
        raise LookupError("no such thing")

    db.write(op)
    qtbot.waitUntil(lambda: bool(hooked), timeout=WAIT)
    assert isinstance(hooked[0], LookupError) and seen == []


def test_a_write_op_must_say_what_it_changed(qtbot, db):
    failures: list[BaseException] = []

    def op(conn: sqlite3.Connection):  # returns no WriteResult: refused, rolled back
        conn.execute("CREATE TABLE u (x)")
        return 1

    db.write(op, None, failures.append)
    qtbot.waitUntil(lambda: bool(failures), timeout=WAIT)
    assert isinstance(failures[0], TypeError)
    out: list = []
    db.read(lambda conn: conn.execute("SELECT name FROM sqlite_master WHERE name='u'")
            .fetchall(), out.append)
    qtbot.waitUntil(lambda: bool(out), timeout=WAIT)
    assert out == [[]]


def test_after_shutdown_reads_and_writes_raise(qtbot, db):
    db.shutdown()
    with pytest.raises(RuntimeError):
        db.write(insert(1))
    with pytest.raises(RuntimeError):
        db.read(lambda conn: None)
    db.shutdown()                      # twice is harmless


def test_library_writes_announce_one_change_each(qtbot, tmp_path):
    paths, library = start_library(qtbot, WAIT)
    try:
        seen: list[ChangeSet] = []
        library.data_changed.connect(seen.append)
        made: list = []
        assert library.create_character("Ann", "ohwx", on_created=made.append) is None
        qtbot.waitUntil(lambda: bool(seen), timeout=WAIT)
        [ann] = made
        assert seen == [ChangeSet(characters=True, character_ids=frozenset({ann.id}))]
        library.import_photos(ann.id, make_photos(tmp_path / "src", 2))
        qtbot.waitUntil(lambda: len(seen) == 2, timeout=WAIT)
        assert seen[1] == ChangeSet(images=True, character_ids=frozenset({ann.id}))
        assert library.image_count(ann.id) == 2      # the snapshot is current when told
        # a change outside the library's tables reaches the database's listeners only
        everything = changes_of(library.database)
        library.database.write(lambda conn: WriteResult(None, ChangeSet(jobs=True)))
        qtbot.waitUntil(lambda: bool(everything), timeout=WAIT)
        qtbot.wait(50)
        assert len(seen) == 2
    finally:
        library.shutdown()


def test_checks_report_progress_and_can_be_cancelled(qtbot, tmp_path):
    paths, library = start_library(qtbot, WAIT)
    checks = DatasetChecksService()
    try:
        made: list = []
        library.create_character("Bo", "bxb", on_created=made.append)
        qtbot.waitUntil(lambda: bool(made), timeout=WAIT)
        library.import_photos(made[0].id, make_photos(tmp_path / "src", 6))
        qtbot.waitUntil(lambda: library.image_count(made[0].id) == 6, timeout=WAIT)
        records = library.images(made[0].id)

        progress: list = []
        checks.progressed.connect(progress.append)
        with qtbot.waitSignal(checks.finished, timeout=30_000) as done:
            checks.run(records)
            assert checks.is_running
        outcome: ChecksOutcome = done.args[0]
        assert not outcome.cancelled and outcome.checked == 6
        assert progress and progress[-1].done == progress[-1].total == 6
        assert not checks.is_running

        progress.clear()
        with qtbot.waitSignal(checks.progressed, timeout=30_000):
            checks.run(records * 50)
        with qtbot.waitSignal(checks.finished, timeout=30_000) as done:
            checks.cancel()
        outcome = done.args[0]
        assert outcome.cancelled and outcome.checked == 300
        assert progress[-1].done < 300
    finally:
        checks.shutdown()
        library.shutdown()


def test_dataset_tab_checks_panel_shows_progress_and_cancels(qtbot, make_app, tmp_path):
    from PySide6.QtCore import Qt

    ctx = make_app()
    made: list = []
    ctx.library.create_character("Cy", "cxc", on_created=made.append)
    qtbot.waitUntil(lambda: bool(made), timeout=WAIT)
    ctx.library.import_photos(made[0].id, make_photos(tmp_path / "src", 40))
    qtbot.waitUntil(lambda: ctx.library.image_count(made[0].id) == 40, timeout=30_000)
    tab = ctx.tabs["Dataset"]
    ctx.window.tabs.setCurrentWidget(tab)
    qtbot.waitUntil(lambda: tab.grid.grid_model.rowCount() == 40, timeout=WAIT)
    assert not tab.checks_cancel_button.isVisible()
    with qtbot.waitSignal(ctx.checks.finished, timeout=30_000) as done:
        qtbot.mouseClick(tab.checks_button, Qt.MouseButton.LeftButton)
        assert tab.checks_progress.isVisible() and tab.checks_cancel_button.isVisible()
        assert not tab.checks_button.isEnabled()
        qtbot.mouseClick(tab.checks_cancel_button, Qt.MouseButton.LeftButton)
    assert done.args[0].cancelled
    # the face analysis (its own child, cancelled too) may end a moment after the basic
    # checks: the run is over when both are
    qtbot.waitUntil(tab.checks_button.isEnabled, timeout=30_000)
    assert not tab.checks_progress.isVisible() and not tab.checks_cancel_button.isVisible()
    assert "cancelled" in tab.checks_summary.text().lower()
