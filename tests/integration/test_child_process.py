"""ChildProcess with real child processes (``sys.executable -c ...``): decoded and split
output, the capped tail, the outcome of each kind of end, and stopping a whole process tree."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest

from isengard_desktop.services.child_process import (
    TAIL_LINE_CHARS,
    ChildProcess,
    OutputChunk,
    ProcessOutcome,
    StopIntent,
)
from isengard_desktop.services.process_group import pid_alive

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(os.name != "posix", reason="process groups are POSIX")]

WAIT = 30_000


class Run:
    """A ChildProcess running a Python snippet, recording what it emits."""

    def __init__(self, qtbot, code: str, **kwargs) -> None:
        self.qtbot = qtbot
        self.chunks: list[OutputChunk] = []
        self.outcomes: list[ProcessOutcome] = []
        self.events: list[str] = []
        argv = kwargs.pop("argv", None) or [sys.executable, "-c", textwrap.dedent(code)]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONIOENCODING": "utf-8"}
        self.proc = ChildProcess(argv, env=env, **kwargs)
        self.proc.output_received.connect(self._on_chunk)
        self.proc.finished.connect(self._on_finished)

    def _on_chunk(self, chunk: OutputChunk) -> None:
        self.chunks.append(chunk)
        self.events.append(f"chunk:{chunk.stream}:{chunk.final}")

    def _on_finished(self, outcome: ProcessOutcome) -> None:
        self.outcomes.append(outcome)
        self.events.append("finished")

    def start(self) -> Run:
        self.proc.start()
        return self

    def wait_output(self, text: str) -> None:
        self.qtbot.waitUntil(lambda: text in self.text("stdout"), timeout=WAIT)

    def finish(self) -> ProcessOutcome:
        self.qtbot.waitUntil(lambda: bool(self.outcomes), timeout=WAIT)
        assert len(self.outcomes) == 1
        return self.outcomes[0]

    def text(self, stream: str) -> str:
        return "".join(c.text for c in self.chunks if c.stream == stream)

    def lines(self, stream: str) -> list[tuple[str, bool]]:
        return [line for c in self.chunks if c.stream == stream for line in c.lines]


def test_lines_across_reads_redraws_ansi_and_split_characters(qtbot):
    run = Run(qtbot, """
        import sys, time
        out = sys.stdout.buffer
        def put(data):
            out.write(data); out.flush(); time.sleep(0.05)
        put(b"hel"); put(b"lo\\r"); put(b"\\nwor"); put(b"ld\\n")
        e = "é".encode()
        put(e[:1]); put(e[1:] + b"\\n")
        put(b"\\x1b[1;31mred\\x1b[0m text\\n")
        put(b"10%\\r20%\\r"); put(b"30%\\n")
        put(b"\\n\\n   \\n")
        sys.stderr.write("warning on stderr\\n")
        out.write(b"no newline at the end")
    """).start()
    outcome = run.finish()
    assert outcome.exit_code == 0 and not outcome.crashed and outcome.succeeded
    assert run.lines("stdout") == [("hello", False), ("world", False), ("é", False),
                                   ("red text", False), ("10%", True), ("20%", True),
                                   ("30%", False), ("no newline at the end", False)]
    assert run.lines("stderr") == [("warning on stderr", False)]
    # the text is what was read, decoded, with its escapes and breaks
    assert run.text("stdout") == ("hello\r\nworld\né\n\x1b[1;31mred\x1b[0m text\n"
                                  "10%\r20%\r30%\n\n\n   \nno newline at the end")
    # the final chunk of each stream comes once, before finished
    assert run.events[-1] == "finished"
    assert sorted(e for e in run.events if e.endswith(":True")) == ["chunk:stderr:True",
                                                                    "chunk:stdout:True"]


def test_merged_channels_and_own_session(qtbot):
    run = Run(qtbot, """
        import os, sys
        print("session", os.getsid(0) == os.getpid(), flush=True)
        sys.stderr.write("from stderr\\n")
    """, merge_channels=True).start()
    outcome = run.finish()
    assert ("session True", False) in run.lines("stdout")
    assert ("from stderr", False) in run.lines("stdout")
    assert run.lines("stderr") == []
    assert outcome.tail == ("session True", "from stderr")   # merged output is the tail
    assert outcome.pid and outcome.pid == run.proc.pid


def test_tail_is_capped_to_stderr_lines_and_a_redraw_is_replaced(qtbot):
    run = Run(qtbot, f"""
        import sys
        for i in range(100):
            sys.stderr.write(f"err {{i}}\\n")
            print(f"out {{i}}")
        sys.stderr.write("x" * {TAIL_LINE_CHARS * 3} + "\\n")
        sys.stderr.write("bar 1\\rbar 2\\rdone\\n")
        sys.stderr.write("bar 3\\r")
        sys.exit(3)
    """, tail_lines=5).start()
    outcome = run.finish()
    assert outcome.exit_code == 3 and not outcome.crashed and not outcome.succeeded
    assert outcome.describe() == "exited with code 3"
    assert outcome.tail == ("err 98", "err 99", "x" * TAIL_LINE_CHARS, "done", "bar 3")
    assert outcome.tail == run.proc.tail


def test_crash_and_failed_start_outcomes(qtbot, tmp_path):
    crash = Run(qtbot, """
        import os, signal, sys
        sys.stderr.write("about to die\\n"); sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    """).start()
    outcome = crash.finish()
    assert outcome.crashed and outcome.exit_code == 9 and outcome.stop_intent is None
    assert outcome.describe() == "was killed by signal 9"
    assert outcome.tail == ("about to die",)

    missing = Run(qtbot, "", argv=[str(tmp_path / "no-such-program")]).start()
    outcome = missing.finish()
    assert outcome.failed_to_start and outcome.exit_code is None and outcome.error
    assert outcome.pid is None and outcome.describe().startswith("could not be started (")
    qtbot.wait(200)
    assert len(missing.outcomes) == 1


STUBBORN_TREE = """
    import os, signal, subprocess, sys, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    grandchild = subprocess.Popen([sys.executable, "-c",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"])
    print("grandchild", grandchild.pid, flush=True)
    for line in sys.stdin:
        if line.strip() == "stop" and {obey}:
            grandchild.kill(); grandchild.wait()
            print("stopped", flush=True)
            sys.exit(0)
    time.sleep(120)
"""


def _grandchild(run: Run) -> int:
    run.wait_output("grandchild ")
    pid = int(run.text("stdout").split("grandchild ")[1].split()[0])
    assert pid_alive(pid)
    return pid


def test_stop_without_ask_ends_a_tree_that_ignores_sigterm(qtbot):
    run = Run(qtbot, STUBBORN_TREE.format(obey=False)).start()
    grandchild = _grandchild(run)
    run.proc.stop(StopIntent.CANCEL, kill_grace_s=0.3)
    outcome = run.finish()
    assert outcome.crashed and outcome.exit_code == 9
    assert outcome.stop_intent == StopIntent.CANCEL and not outcome.succeeded
    qtbot.waitUntil(lambda: not pid_alive(grandchild), timeout=WAIT)
    assert not pid_alive(outcome.pid)


def test_stop_with_an_ask_that_is_obeyed(qtbot):
    run = Run(qtbot, STUBBORN_TREE.format(obey=True)).start()
    grandchild = _grandchild(run)
    asked: list[int] = []

    def ask() -> None:
        asked.append(1)
        run.proc.write(b"stop\n")

    run.proc.stop(StopIntent.STOP, ask=ask, grace_s=20, kill_grace_s=20)
    run.proc.stop(StopIntent.STOP, ask=ask, grace_s=30, kill_grace_s=20)  # asks only once
    outcome = run.finish()
    assert asked == [1]
    assert (outcome.exit_code, outcome.crashed, outcome.stop_intent) == (0, False,
                                                                         StopIntent.STOP)
    assert ("stopped", False) in run.lines("stdout")
    assert not pid_alive(grandchild)


def test_stop_with_an_ask_that_is_ignored_terminates_then_kills(qtbot):
    run = Run(qtbot, STUBBORN_TREE.format(obey=False)).start()
    grandchild = _grandchild(run)
    run.proc.stop(StopIntent.STOP, ask=lambda: run.proc.write(b"stop\n"), grace_s=30,
                  kill_grace_s=0.2)
    run.proc.stop(StopIntent.STOP, ask=lambda: None, grace_s=0.2, kill_grace_s=0.2)
    outcome = run.finish()
    assert outcome.crashed and outcome.exit_code == 9 and outcome.stop_intent == StopIntent.STOP
    qtbot.waitUntil(lambda: not pid_alive(grandchild), timeout=WAIT)


def test_stop_and_wait_blocks_until_the_tree_is_gone(qtbot):
    run = Run(qtbot, STUBBORN_TREE.format(obey=False)).start()
    grandchild = _grandchild(run)
    run.proc.stop_and_wait(StopIntent.SHUTDOWN, ask=lambda: None, grace_s=0.2,
                           kill_grace_s=0.2)
    assert len(run.outcomes) == 1          # finished came from inside the blocking call
    outcome = run.outcomes[0]
    assert outcome.crashed and outcome.stop_intent == StopIntent.SHUTDOWN
    qtbot.waitUntil(lambda: not pid_alive(grandchild), timeout=WAIT)


def test_kill_and_leftovers_of_a_tree_that_exited(qtbot, tmp_path):
    run = Run(qtbot, STUBBORN_TREE.format(obey=False)).start()
    grandchild = _grandchild(run)
    run.proc.kill(StopIntent.TIMEOUT)
    outcome = run.finish()
    assert outcome.crashed and outcome.stop_intent == StopIntent.TIMEOUT
    qtbot.waitUntil(lambda: not pid_alive(grandchild), timeout=WAIT)

    # the leader exits by itself, leaving a grandchild in its group: it is ended too
    marker = tmp_path / "pid"
    leader = Run(qtbot, f"""
        import subprocess, sys
        p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        open({str(marker)!r}, "w").write(str(p.pid))
    """).start()
    outcome = leader.finish()
    assert outcome.exit_code == 0 and outcome.succeeded
    orphan = int(Path(marker).read_text())
    qtbot.waitUntil(lambda: not pid_alive(orphan), timeout=WAIT)


def test_in_the_frozen_app_a_child_gets_the_users_library_path_back(qtbot, monkeypatch):
    """The bundle's bootloader sets LD_LIBRARY_PATH to its _internal folder; a real child (here
    Python, as the trainer runtime's would be) must see the user's value instead."""
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setenv("LD_LIBRARY_PATH", "/opt/isengard-desktop/_internal")
    monkeypatch.setenv("LD_LIBRARY_PATH_ORIG", "/users/own/lib")
    monkeypatch.setenv("_PYI_ARCHIVE_FILE", "/opt/isengard-desktop/Isengard Desktop")
    run = Run(qtbot, """
        import os
        print("LD=" + os.environ.get("LD_LIBRARY_PATH", "-"),
              "PYI=" + os.environ.get("_PYI_ARCHIVE_FILE", "-"), flush=True)
    """).start()
    assert run.finish().exit_code == 0
    assert "LD=/users/own/lib PYI=-" in run.text("stdout")
