"""The one way a widget runs background work (services/background.py): callbacks dropped once
the parent is deleted, failures without a handler reach the excepthook, newer ops supersede
older ones, the caller's correlation id follows the work, and ``with_progress`` reports."""

from __future__ import annotations

import sys
import threading

import pytest
from PySide6.QtWidgets import QWidget

from isengard_desktop.core import logging as applog
from isengard_desktop.core.types import Progress
from isengard_desktop.services.background import (BackgroundOp, BackgroundWork, OpTask, alive,
                                                  background_work, guarded,
                                                  start_background_work)
from isengard_desktop.services.ops import init_main_thread_bridge


@pytest.fixture
def work(qapp):
    init_main_thread_bridge()
    owner = start_background_work()
    yield owner
    owner.shutdown()


@pytest.fixture
def hooked(monkeypatch):
    seen: list[BaseException] = []
    monkeypatch.setattr(sys, "excepthook", lambda _t, exc, _tb: seen.append(exc))
    return seen


def test_success_arrives_on_the_main_thread(qtbot, work):
    widget = QWidget()
    qtbot.addWidget(widget)
    got: list[tuple[int, bool]] = []
    BackgroundOp(parent=widget, op=lambda: 6 * 7) \
        .success(lambda v: got.append((v, threading.current_thread() is threading.main_thread()))) \
        .run()
    qtbot.waitUntil(lambda: bool(got), timeout=5000)
    assert got == [(42, True)]


def test_callbacks_are_dropped_after_the_parent_is_deleted(qtbot, work, hooked):
    widget = QWidget()
    gate = threading.Event()
    got: list[object] = []

    def slow() -> int:
        gate.wait(5)
        return 1

    future = BackgroundOp(parent=widget, op=slow).success(got.append) \
        .failure(got.append).run()
    widget.deleteLater()
    qtbot.waitUntil(lambda: not alive(widget), timeout=5000)
    gate.set()
    assert future.result(5) == 1
    qtbot.wait(50)                 # let the queued delivery run (it must do nothing)
    assert got == [] and hooked == []


def test_a_failure_without_handler_reaches_the_excepthook(qtbot, work, hooked):
    widget = QWidget()
    qtbot.addWidget(widget)

    def broken() -> None:
        raise ValueError("boom")

    BackgroundOp(parent=widget, op=broken).run()
    qtbot.waitUntil(lambda: bool(hooked), timeout=5000)
    assert isinstance(hooked[0], ValueError) and str(hooked[0]) == "boom"


def test_a_failure_without_handler_is_reported_even_when_the_parent_is_gone(qtbot, work,
                                                                              hooked):
    widget = QWidget()
    gate = threading.Event()

    def broken() -> None:
        gate.wait(5)
        raise RuntimeError("late")

    BackgroundOp(parent=widget, op=broken).run()
    widget.deleteLater()
    qtbot.waitUntil(lambda: not alive(widget), timeout=5000)
    gate.set()
    qtbot.waitUntil(lambda: bool(hooked), timeout=5000)
    assert str(hooked[0]) == "late"


def test_a_failure_handler_gets_the_exception(qtbot, work, hooked):
    widget = QWidget()
    qtbot.addWidget(widget)
    got: list[BaseException] = []

    def broken() -> None:
        raise OSError("disk")

    BackgroundOp(parent=widget, op=broken).failure(got.append).run()
    qtbot.waitUntil(lambda: bool(got), timeout=5000)
    assert isinstance(got[0], OSError) and hooked == []


def test_a_newer_op_supersedes_an_older_one_with_the_same_key(qtbot, work):
    widget = QWidget()
    qtbot.addWidget(widget)
    gate = threading.Event()
    got: list[str] = []

    def old() -> str:
        gate.wait(5)
        return "old"

    first = BackgroundOp(parent=widget, op=old).success(got.append).supersede("preview").run()
    BackgroundOp(parent=widget, op=lambda: "new").success(got.append).supersede("preview").run()
    BackgroundOp(parent=widget, op=lambda: "other").success(got.append).supersede("x").run()
    qtbot.waitUntil(lambda: sorted(got) == ["new", "other"], timeout=5000)
    gate.set()
    assert first.result(5) == "old"
    qtbot.wait(50)
    assert sorted(got) == ["new", "other"]


def test_supersede_is_per_parent(qtbot, work):
    a, b = QWidget(), QWidget()
    qtbot.addWidget(a)
    qtbot.addWidget(b)
    got: list[str] = []
    BackgroundOp(parent=a, op=lambda: "a").success(got.append).supersede("k").run()
    BackgroundOp(parent=b, op=lambda: "b").success(got.append).supersede("k").run()
    qtbot.waitUntil(lambda: sorted(got) == ["a", "b"], timeout=5000)


def test_guarded_callbacks_follow_the_same_rules(qtbot, work):
    widget = QWidget()
    got: list[int] = []
    older = guarded(widget, got.append, supersede="models")
    newer = guarded(widget, got.append, supersede="models")
    older(1)
    newer(2)
    assert got == [2]
    plain = guarded(widget, got.append)
    widget.deleteLater()
    qtbot.waitUntil(lambda: not alive(widget), timeout=5000)
    plain(3)
    assert got == [2]


def test_the_callers_correlation_id_follows_the_work(qtbot, work):
    widget = QWidget()
    qtbot.addWidget(widget)
    got: list[str | None] = []
    with applog.correlation("ref-123"):
        BackgroundOp(parent=widget, op=applog.current_correlation_id).success(got.append).run()
    qtbot.waitUntil(lambda: bool(got), timeout=5000)
    assert got == ["ref-123"]


def test_ops_of_one_lane_run_in_order(qtbot, work):
    widget = QWidget()
    qtbot.addWidget(widget)
    ran: list[int] = []
    got: list[int] = []
    for n in range(20):
        BackgroundOp(parent=widget, op=lambda n=n: ran.append(n) or n).success(got.append) \
            .in_lane("test-lane").run()
    qtbot.waitUntil(lambda: len(got) == 20, timeout=5000)
    assert ran == list(range(20)) and got == list(range(20))


def test_with_progress_publishes_a_task_that_reports_and_cancels(qtbot, work):
    widget = QWidget()
    qtbot.addWidget(widget)
    tasks: list[OpTask] = []
    work.task_started.connect(tasks.append)
    seen: list[Progress] = []
    started, release = threading.Event(), threading.Event()

    def job() -> str:
        for n in range(1, 6):
            op.report(Progress("Checking photos", n, 5))
        started.set()
        release.wait(5)
        return "cancelled" if op.cancelled() else "done"

    op: BackgroundOp[str] = BackgroundOp(parent=widget, op=job).with_progress("Checking photos")
    result: list[str] = []
    op.success(result.append).run()
    assert len(tasks) == 1 and tasks[0].label == "Checking photos"
    task = tasks[0]
    task.progressed.connect(seen.append)
    finished: list[object] = []
    task.finished.connect(finished.append)
    assert started.wait(5)
    task.cancel()
    release.set()
    qtbot.waitUntil(lambda: bool(result) and bool(finished), timeout=5000)
    assert result == ["cancelled"]
    assert seen and seen[-1].done == 5          # the last progress always arrives


def test_the_owner_shuts_its_threads_down(qapp):
    owner = BackgroundWork(2)
    lane = owner.executor("lane")
    assert owner.submit(lambda: 1).result(5) == 1
    owner.shutdown()
    with pytest.raises(RuntimeError):
        owner.submit(lambda: 1)
    with pytest.raises(RuntimeError):
        lane.submit(lambda: 1)


def test_without_an_app_the_widgets_get_a_fresh_owner(qapp):
    owner = start_background_work()
    owner.shutdown()
    assert background_work() is not owner and not background_work().closed
    background_work().shutdown()


def test_the_status_bar_panel_shows_an_op_with_progress(qtbot, work):
    from isengard_desktop.ui.widgets.progress_panel import ProgressPanelWidget

    panel = ProgressPanelWidget()
    qtbot.addWidget(panel)
    work.task_started.connect(panel.track)
    widget = QWidget()
    qtbot.addWidget(widget)
    release = threading.Event()
    labels: list[str] = []

    def job() -> None:
        op.report(Progress("Checking photos", 3, 10, detail="a.jpg"))
        release.wait(5)

    op: BackgroundOp[None] = BackgroundOp(parent=widget, op=job).with_progress("Checking photos")
    op.run()
    assert panel.label.text() == "Checking photos"
    qtbot.waitUntil(lambda: panel.bar.maximum() == 10, timeout=5000)
    labels.append(panel.label.text())
    with qtbot.waitSignal(panel.summary_ready, timeout=5000):
        release.set()
    assert labels == ["Checking photos — a.jpg"] and panel.bar.value() == 3
    assert not panel.cancel_button.isVisibleTo(panel)
