"""The built-in trainer's stop rules (issue 11, item 13): a stop asked on stdin lets the step
finish and save; a SIGTERM after it (the app's stop ladder when its grace ran out) ends the
process at once. Before, that SIGTERM counted as a first request too, so a CPU job whose
step outlasted the 10 s quit grace ran on until SIGKILL 5 s later — the 15 s hang on close —
and was killed before it could save.

The child runs the trainer's own :class:`StopRequest` (no ML import) in a loop that stands
for a long training step: it only ends by itself 60 s later.
"""

from __future__ import annotations

import signal
import subprocess
import sys

CHILD = r"""
import sys, time
from isengard_desktop.training_runtime.__main__ import StopRequest
stop = StopRequest()
stop.install_signals()
stop.watch_stdin()
print("ready", flush=True)
end = time.monotonic() + 60          # one long step
while time.monotonic() < end:
    if stop.is_set():
        print("stop seen", flush=True)
        break
    time.sleep(0.05)
while time.monotonic() < end:        # the step goes on; only a signal can end it sooner
    time.sleep(0.05)
print("step finished", flush=True)
"""


def _start() -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def _end(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.communicate()                 # reaps it and closes the pipes


def test_sigterm_after_a_stdin_stop_ends_the_trainer_at_once() -> None:
    proc = _start()
    try:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write("stop\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "stop seen"
        proc.send_signal(signal.SIGTERM)
        # bounded wait only so that a regression fails instead of hanging for 60 s
        assert proc.wait(timeout=10) == -signal.SIGTERM
        assert "after a stop request: quitting now" in (proc.stderr.read() if proc.stderr
                                                         else "")
    finally:
        _end(proc)


def test_a_first_sigterm_still_asks_for_a_stop_and_save() -> None:
    proc = _start()
    try:
        assert proc.stdout is not None
        proc.send_signal(signal.SIGTERM)
        assert proc.stdout.readline().strip() == "stop seen"
        assert proc.poll() is None     # still running: it finishes its step and saves
    finally:
        _end(proc)
