"""The built-in trainer's out-of-memory test hook (training_runtime/test_hooks.py) fires only
with both keys and once per step and job folder; the ``error`` event carries the step."""

from __future__ import annotations

import json

import pytest
import torch

from isengard_desktop.core.training.protocol import ErrorEvent, event_line, parse_event
from isengard_desktop.core.training.spec import TrainingJob
from isengard_desktop.training_runtime.errors import classify, is_oom
from isengard_desktop.training_runtime.test_hooks import OOM_ENV, RECORD_FILE, maybe_inject_oom


def job(**extra) -> TrainingJob:
    return TrainingJob(job_id="j1", character_id=1, character_name="A", trigger_word="alc",
                       family="sd15", base_model="/m", dataset_dir="/d", output_name="a",
                       extra=extra)


def test_the_environment_variable_alone_never_fires(tmp_path, monkeypatch):
    monkeypatch.setenv(OOM_ENV, "1,2,3")
    for step in (1, 2, 3):
        maybe_inject_oom(job(), tmp_path, step)
        maybe_inject_oom(job(test_hooks="yes"), tmp_path, step)   # only the JSON true
    assert not (tmp_path / RECORD_FILE).exists()


def test_the_spec_flag_alone_never_fires(tmp_path, monkeypatch):
    monkeypatch.delenv(OOM_ENV, raising=False)
    maybe_inject_oom(job(test_hooks=True), tmp_path, 1)
    assert not (tmp_path / RECORD_FILE).exists()


def test_both_fire_once_per_listed_step_and_the_error_names_the_step(tmp_path, monkeypatch):
    monkeypatch.setenv(OOM_ENV, "5, 9")
    hooked = job(test_hooks=True)
    maybe_inject_oom(hooked, tmp_path, 4)
    with pytest.raises(torch.OutOfMemoryError) as raised:
        maybe_inject_oom(hooked, tmp_path, 5)
    maybe_inject_oom(hooked, tmp_path, 5)         # the resumed run gets past it
    with pytest.raises(torch.OutOfMemoryError):
        maybe_inject_oom(hooked, tmp_path, 9)
    assert json.loads((tmp_path / RECORD_FILE).read_text()) == {"oom": [5, 9]}
    exc = raised.value
    assert is_oom(exc)
    exc.training_step = 5       # as the loop marks it
    event = classify(exc, hooked)
    assert (event.kind, event.step) == ("oom", 5)
    assert event.message.startswith("The GPU ran out of memory.")
    assert parse_event(event_line(event)) == event


def test_mps_and_cuda_wordings_are_out_of_memory_and_old_error_lines_still_parse():
    assert is_oom(RuntimeError("MPS backend out of memory (MPS allocated: 17.00 GB)"))
    assert is_oom(RuntimeError("CUDA error: out of memory"))
    assert not is_oom(RuntimeError("Expected all tensors to be on the same device"))
    old = parse_event('{"v":1,"event":"error","kind":"oom","message":"x"}')
    assert old == ErrorEvent("oom", "x", 0)
