"""Windows/macOS details driven on Linux through core.platform_support's ``windows`` flag
(issue 13, items 10 and 12): crash codes in words, no console windows, UTF-8 output."""

from __future__ import annotations

import subprocess
import sys

import pytest

from isengard_desktop.core import platform_support

from isengard_desktop.core.platform_support import (CREATE_NO_WINDOW, MONOSPACE_FAMILIES,
                                                   no_window_flags, run_text,
                                                   windows_crash_words)
from isengard_desktop.services.child_process import ProcessOutcome


@pytest.mark.parametrize(("code", "words"), [
    (0xC0000005, "access violation"),
    (-1073741819, "access violation"),          # the same code as Qt's signed int
    (0xC00000FD, "stack overflow"),
    (0xC0000409, "stack buffer overrun"),
    (0xC0000374, "heap corruption"),
    (0xF291, "ended by the app"),
])
def test_windows_crash_codes_in_words(code, words):
    text = windows_crash_words(code)
    assert text is not None and words in text
    assert text.endswith(f"(0x{code & 0xFFFFFFFF:X})")


def test_other_codes_are_not_windows_crashes():
    assert windows_crash_words(0xC0001234) == "Windows error status 0xC0001234"
    for code in (None, 0, 1, 2, 9, 15, 137, 255):
        assert windows_crash_words(code) is None


def test_process_outcome_says_what_a_windows_crash_was():
    crash = ProcessOutcome(exit_code=3221225477, crashed=True)
    assert crash.describe() == ("crashed: access violation (a native library read or wrote "
                                "memory it does not own) (0xC0000005)")
    killed = ProcessOutcome(exit_code=0xF291, crashed=True)
    assert killed.describe() == "was ended by the app (0xF291)"
    # POSIX wording unchanged
    assert ProcessOutcome(exit_code=9, crashed=True).describe() == "was killed by signal 9"
    assert ProcessOutcome(exit_code=1, crashed=False).describe() == "exited with code 1"


def test_no_console_window_flag_only_on_windows():
    assert no_window_flags(windows=True) == CREATE_NO_WINDOW == 0x08000000
    assert no_window_flags(windows=False) == 0


def test_run_text_on_windows_asks_for_no_window_and_utf8(monkeypatch):
    seen: dict = {}

    def fake_run(argv, **kwargs):
        seen.update(kwargs, argv=argv)
        return subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(platform_support.subprocess, "run", fake_run)
    run_text(["python", "-c", "pass"], timeout=5, windows=True, env={"A": "1"})
    assert seen["creationflags"] == CREATE_NO_WINDOW
    assert (seen["encoding"], seen["errors"]) == ("utf-8", "replace")
    assert seen["env"] == {"A": "1", "PYTHONIOENCODING": "utf-8"}


def test_run_text_decodes_utf8_and_survives_bad_bytes():
    bad = ("import sys; print('Zoë', flush=True); "
           "sys.stdout.buffer.write(b'bad \\xff\\xfe end\\n')")
    # the caller's env wins over the default: this child writes Latin-1, not UTF-8
    done = run_text([sys.executable, "-c", bad], timeout=30, env={"PYTHONIOENCODING": "latin-1"})
    assert done.returncode == 0
    assert done.stdout.splitlines() == ["Zo\ufffd", "bad \ufffd\ufffd end"]
    # by default the child is told to write UTF-8
    done = run_text([sys.executable, "-c", "print('Zoë 日本')"], timeout=30)
    assert done.stdout.splitlines() == ["Zoë 日本"]


def test_theme_monospace_is_a_font_list_that_exists_beyond_linux(qtbot):
    from PySide6.QtWidgets import QLabel

    from isengard_desktop.ui.theme import resources_dir

    label = QLabel("trigger")
    label.setObjectName("TriggerChip")
    qtbot.addWidget(label)
    label.setStyleSheet((resources_dir() / "theme" / "dark.qss").read_text(encoding="utf-8"))
    label.ensurePolished()
    assert tuple(label.font().families()) == MONOSPACE_FAMILIES
