"""Closing the main window while a job trains asks first (issue 11, item 13)."""

from __future__ import annotations

import pytest
from PySide6.QtWidgets import QMessageBox, QWidget

from isengard_desktop.ui.main_window import TAB_NAMES, MainWindow


@pytest.fixture
def window(qtbot):
    win = MainWindow({name: QWidget() for name in TAB_NAMES})
    qtbot.addWidget(win)
    closed: list[bool] = []
    win.on_close(lambda: closed.append(True))
    win.closed = closed  # type: ignore[attr-defined]
    win.show()
    return win


def answer(monkeypatch, button_text: str, asked: list[str]) -> None:
    def exec_(box: QMessageBox) -> int:
        asked.append(box.text())
        next(b for b in box.buttons() if b.text() == button_text).click()
        return 0
    monkeypatch.setattr(QMessageBox, "exec", exec_)


def test_keep_training_keeps_the_window_open(window, monkeypatch):
    asked: list[str] = []
    answer(monkeypatch, "Keep training", asked)
    window.set_quit_guard(lambda: "Alice is training, step 2 of 40.")
    assert window.close() is False
    assert window.isVisible() and not window.closed
    assert asked and "Alice is training, step 2 of 40." in asked[0]


def test_stop_and_save_and_quit_closes(window, monkeypatch):
    asked: list[str] = []
    answer(monkeypatch, "Stop && save and quit", asked)
    window.set_quit_guard(lambda: "Alice is training.")
    assert window.close() is True
    assert asked and window.closed == [True]


def test_no_question_when_idle_or_forced(window, monkeypatch):
    asked: list[str] = []
    answer(monkeypatch, "Keep training", asked)
    window.set_quit_guard(lambda: None)
    assert window.close() is True
    window.show()
    window.set_quit_guard(lambda: "Alice is training.")
    window.close_without_asking()
    assert not window.isVisible() and not asked
