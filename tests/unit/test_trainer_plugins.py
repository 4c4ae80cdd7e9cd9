"""Trainer plugin interface, registry and the built-in backend (no Qt, no child process)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from isengard_desktop.core.training.protocol import LogEvent, StepEvent, event_line
from isengard_desktop.core.training.spec import JobPaths, TrainingJob
from isengard_desktop.plugins.builtin_trainer import BuiltinTrainer, ProtocolParser
from isengard_desktop.plugins.interface import Launch, LineParser, TrainerBackend
from isengard_desktop.core.console_text import LineSplitter, strip_ansi
from isengard_desktop.plugins.registry import UnknownBackendError, default_registry


def job(**kw) -> TrainingJob:
    base = dict(job_id="abc123", character_id=1, character_name="Alice", trigger_word="alc",
                family="sd15", base_model="/m.safetensors", dataset_dir="/ds",
                output_name="alice")
    base.update(kw)
    return TrainingJob(**base)


def test_splitter_joins_partial_reads_and_handles_crlf():
    s = LineSplitter()
    assert s.feed("hel") == []
    assert s.feed("lo\nwor") == ["hello"]
    assert s.feed("ld\r") == []           # could be half of \r\n
    assert s.feed("\nnext\r\n") == ["world", "next"]
    assert s.pending == ""


def test_splitter_marks_redraws_and_strips_ansi():
    s = LineSplitter()
    out = s.feed_marked("\r\x1b[32m 10%\x1b[0m|#  |\r 20%|## |\r 30%|###|\ndone\n")
    assert out == [(" 10%|#  |", True), (" 20%|## |", True), (" 30%|###|", False),
                   ("done", False)]
    assert strip_ansi("\x1b]0;title\x07plain\x1b[1;31mred\x1b[0m") == "plainred"


def test_splitter_cuts_endless_lines():
    s = LineSplitter()
    out = s.feed("x" * (1 << 20) + "y")
    assert len(out) == 1 and s.pending == ""


def test_protocol_parser_events_and_stderr_levels():
    p = ProtocolParser()
    line = event_line(StepEvent(3, 10, 0.5, 1e-4, 0.2, 1.4))
    assert p.feed("stdout", line[:10]) == []
    assert p.feed("stdout", line[10:] + "\nnot json\n") == [StepEvent(3, 10, 0.5, 1e-4, 0.2, 1.4)]
    events = p.feed("stderr", "loading\r 50%|#\r\x1b[33mUserWarning: slow\x1b[0m\nTraceback "
                              "(most recent call last):\n  File x\nRuntimeError: boom\nplain\n")
    assert events == [LogEvent("warning", "UserWarning: slow"),
                      LogEvent("error", "Traceback (most recent call last):"),
                      LogEvent("error", "RuntimeError: boom")]


def test_builtin_backend_launch(tmp_path):
    backend = BuiltinTrainer()
    assert isinstance(backend, TrainerBackend)
    assert isinstance(backend.make_parser(), LineParser)
    paths = JobPaths(tmp_path / "jobs" / "abc123")
    launch = backend.build_launch(job(), paths, resume=False)
    assert launch.argv == [sys.executable, "-m", "isengard_desktop.training_runtime", "train",
                           "--job", str(paths.spec), "--job-dir", str(paths.root)]
    assert launch.stop == "stdin" and launch.cwd == str(paths.root)
    assert backend.build_launch(job(), paths, resume=True).argv[-1] == "--resume"
    root = str(Path(__file__).resolve().parents[2])
    assert launch.env["PYTHONPATH"].split(":")[0] == root
    ok, why = backend.available()
    assert ok, why
    assert "sd15" in backend.capabilities()["families"]


def test_launch_validation():
    with pytest.raises(ValueError):
        Launch(argv=[])
    with pytest.raises(ValueError):
        Launch(argv=["x"], stop="file")
    with pytest.raises(ValueError):
        Launch(argv=["x"], stop="telepathy")  # type: ignore[arg-type]


def test_registry_is_lazy_and_extensible():
    registry = default_registry()
    keys = [e.key for e in registry.entries()]
    assert keys[0] == "builtin"   # the default stays first
    assert sorted(keys) == ["ai-toolkit", "builtin", "diffusion-pipe", "kohya"]
    assert "builtin" in registry and "fake" not in registry
    backend = registry.get("builtin")
    assert backend is registry.get("builtin")  # made once
    registry.register("fake", "tests.helpers.fake_backend:FakeBackend", "Fake trainer")
    assert registry.get("fake").key == "fake"
    with pytest.raises(ValueError, match="already registered"):
        registry.register("fake", "x:y")
    registry.register("fake", lambda: BuiltinTrainer(), replace=True)
    assert isinstance(registry.get("fake"), BuiltinTrainer)
    with pytest.raises(UnknownBackendError, match="known: builtin, .*fake"):
        registry.get("onetrainer")
    registry.register("broken", "no.such.module:Thing")
    with pytest.raises(ImportError):
        registry.get("broken")
    registry.register("badtarget", "nocolon")
    with pytest.raises(ValueError):
        registry.get("badtarget")
    registry.unregister("broken")
    assert "broken" not in registry


def test_registry_does_not_import_backends_until_asked():
    import subprocess

    code = ("import sys; from isengard_desktop.plugins.registry import default_registry; "
            "r = default_registry(); r.entries(); "
            "print('isengard_desktop.plugins.builtin_trainer' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.stdout.strip() == "False", out.stderr
