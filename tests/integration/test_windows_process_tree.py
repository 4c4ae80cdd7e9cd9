"""The Windows branch of process control, driven on Linux (issue 13, items 2, 3, 4).

ChildProcess takes its Windows branch through its ``_POSIX``/``_WINDOWS`` flags and makes its
Job Object through the ``_job_factory`` seam. The fake Job Object API below behaves like the
real one — terminating the job ends the child and every process it started — by killing the
tree with psutil, so real child processes show that Cancel, the stop ladder and app quit end
the whole tree, and the test checks the Job Object call sequence. The real kernel32 calls
cannot run here (README: "written for, not yet run").
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import textwrap

import psutil
import pytest

from isengard_desktop.services import child_process, process_group, win_jobs
from isengard_desktop.services.child_process import ChildProcess, ProcessOutcome, StopIntent
from isengard_desktop.services.training.orphans import OrphanWatcher

pytestmark = pytest.mark.integration

WAIT = 30_000

# ignores SIGTERM like a console Python ignores WM_CLOSE; its grandchild does too
STUBBORN_TREE = textwrap.dedent("""
    import signal, subprocess, sys, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    grandchild = subprocess.Popen([sys.executable, "-c",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"])
    print("grandchild", grandchild.pid, flush=True)
    time.sleep(120)
""")


def _kill_tree(pid: int) -> None:
    try:
        leader = psutil.Process(pid)
        tree = [leader, *leader.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for proc in tree:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass


class FakeJobApi:
    """kernel32's Job Object calls, recorded; terminate/close end the tree like Windows."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.members: dict[int, int] = {}     # job handle -> the pid assigned to it
        self._next = 100
        self._processes: dict[int, int] = {}

    def _handle(self) -> int:
        self._next += 1
        return self._next

    def create_kill_on_close_job(self) -> int:
        job = self._handle()
        self.calls.append(("create", job))
        return job

    def open_process(self, pid: int) -> int:
        handle = self._handle()
        self._processes[handle] = pid
        self.calls.append(("open", pid))
        return handle

    def assign(self, job: int, process: int) -> None:
        self.members[job] = self._processes[process]
        self.calls.append(("assign", job, self._processes[process]))

    def terminate(self, job: int, exit_code: int) -> None:
        self.calls.append(("terminate", job, exit_code))
        _kill_tree(self.members[job])

    def close(self, handle: int) -> None:
        self.calls.append(("close", handle))
        if handle in self.members:           # kill-on-close
            _kill_tree(self.members.pop(handle))


@pytest.fixture
def windows(monkeypatch):
    """ChildProcess on its Windows branch with a fake Job Object API."""
    api = FakeJobApi()
    monkeypatch.setattr(child_process, "_POSIX", False)
    monkeypatch.setattr(child_process, "_WINDOWS", True)
    monkeypatch.setattr(child_process, "_job_factory", lambda: win_jobs.ProcessJob(api))
    return api


class Tree:
    def __init__(self, qtbot) -> None:
        self.qtbot = qtbot
        self.outcomes: list[ProcessOutcome] = []
        self.out = ""
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = ChildProcess([sys.executable, "-c", STUBBORN_TREE], env=env)
        self.proc.output_received.connect(self._on_chunk)
        self.proc.finished.connect(self.outcomes.append)
        self.proc.start()
        qtbot.waitUntil(lambda: "grandchild " in self.out, timeout=WAIT)
        self.grandchild = int(self.out.split("grandchild ")[1].split()[0])
        assert psutil.pid_exists(self.grandchild)

    def _on_chunk(self, chunk) -> None:
        self.out += chunk.text

    def finish(self) -> ProcessOutcome:
        self.qtbot.waitUntil(lambda: bool(self.outcomes), timeout=WAIT)
        return self.outcomes[0]

    def gone(self, pid: int) -> bool:
        try:
            return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    def cleanup(self) -> None:
        _kill_tree(self.grandchild)


def test_cancel_ends_the_whole_tree_through_its_job_object(qtbot, windows):
    tree = Tree(qtbot)
    try:
        pid = tree.proc.pid
        job = windows.calls[0][1]
        assert windows.calls[:4] == [("create", job), ("open", pid), ("assign", job, pid),
                                     ("close", job + 1)]    # the process handle is not kept
        tree.proc.stop(StopIntent.CANCEL, kill_grace_s=0.3)
        outcome = tree.finish()
        assert outcome.stop_intent == StopIntent.CANCEL and not outcome.succeeded
        kill = ("terminate", job, win_jobs.KILLED_EXIT_CODE)
        # the kill step ended the job; after the exit the leftovers are ended and it is closed
        assert windows.calls[4:] == [kill, kill, ("close", job)]
        qtbot.waitUntil(lambda: tree.gone(tree.grandchild), timeout=WAIT)
    finally:
        tree.cleanup()


def test_app_quit_blocks_until_the_tree_is_gone(qtbot, windows):
    tree = Tree(qtbot)
    try:
        tree.proc.stop_and_wait(StopIntent.SHUTDOWN, ask=lambda: None, grace_s=0.2,
                                kill_grace_s=0.2)
        assert len(tree.outcomes) == 1 and tree.outcomes[0].stop_intent == StopIntent.SHUTDOWN
        assert [c[0] for c in windows.calls] == ["create", "open", "assign", "close",
                                                 "terminate", "terminate", "close"]
        qtbot.waitUntil(lambda: tree.gone(tree.grandchild), timeout=WAIT)
    finally:
        tree.cleanup()


def test_without_a_job_object_the_kill_still_ends_the_child(qtbot, monkeypatch):
    """Windows refused the job (here: kernel32 does not exist): the child itself is killed."""
    monkeypatch.setattr(child_process, "_POSIX", False)
    monkeypatch.setattr(child_process, "_WINDOWS", True)
    tree = Tree(qtbot)
    try:
        tree.proc.kill(StopIntent.TIMEOUT)
        outcome = tree.finish()
        assert outcome.crashed and outcome.stop_intent == StopIntent.TIMEOUT
    finally:
        tree.cleanup()


def test_a_refused_assignment_closes_the_job_and_falls_back(monkeypatch):
    api = FakeJobApi()

    def refuse(job: int, process: int) -> None:
        raise OSError(5, "Access is denied")

    monkeypatch.setattr(api, "assign", refuse)
    job = win_jobs.ProcessJob(api)
    assert not job.assign(4242) and not job.assigned
    assert [c[0] for c in api.calls] == ["create", "open", "close", "close"]
    assert not job.terminate()


def test_job_limit_structure_has_the_windows_layout():
    info = win_jobs.ExtendedLimitInformation()
    if ctypes.sizeof(ctypes.c_void_p) == 8:
        assert ctypes.sizeof(info) == 144
    assert win_jobs.ExtendedLimitInformation.BasicLimitInformation.offset == 0
    assert type(info.BasicLimitInformation).LimitFlags.offset == 16
    if sys.platform != "win32":
        with pytest.raises(OSError):
            win_jobs.Kernel32JobApi()


def _tree() -> tuple[subprocess.Popen, int]:
    leader = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent("""
            import subprocess, sys, time
            g = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
            print(g.pid, flush=True)
            time.sleep(120)
        """), "isengard-marker-job"], stdout=subprocess.PIPE, text=True)
    assert leader.stdout is not None
    with leader.stdout:
        return leader, int(leader.stdout.readline())


def test_liveness_asks_the_os_not_a_signal(monkeypatch):
    """Without /proc (Windows, macOS) liveness is a psutil query; os.kill is never used."""
    monkeypatch.setattr(process_group, "_PROCFS", False)

    def no_signals(*args):
        raise AssertionError("os.kill used as a liveness check")

    monkeypatch.setattr(os, "kill", no_signals)
    leader, grandchild = _tree()
    try:
        assert process_group.pid_alive(leader.pid)
        assert process_group.pid_alive(leader.pid, "isengard-marker-job")
        assert not process_group.pid_alive(leader.pid, "another-job")  # a reused pid
        assert not process_group.pid_alive(None) and not process_group.pid_alive(-1)
    finally:
        monkeypatch.undo()
        _kill_tree(leader.pid)
        leader.wait()
    # reaped: gone; the grandchild (not reaped by us) is gone or a zombie, never "alive"
    monkeypatch.setattr(process_group, "_PROCFS", False)
    assert not process_group.pid_alive(leader.pid)


def test_orphan_tree_is_ended_without_process_groups(qtbot, monkeypatch):
    """An earlier app's trainer on Windows: terminate ends it and its descendants."""
    monkeypatch.setattr(process_group, "_POSIX", False)
    monkeypatch.setattr(process_group, "_PROCFS", False)
    leader, grandchild = _tree()
    try:
        watcher = OrphanWatcher()
        watcher.watch("isengard-marker-job", leader.pid)
        watcher.terminate("isengard-marker-job", kill_grace_s=0.2)
        leader.wait(timeout=20)
        qtbot.waitUntil(lambda: not process_group.pid_alive(grandchild), timeout=WAIT)
    finally:
        _kill_tree(leader.pid)
        _kill_tree(grandchild)
