"""The built-in trainer's device choice when PyTorch cannot use an NVIDIA GPU that is there
(issue 13, item 6): the Windows branch driven on Linux through ``pick_device``'s seams."""

from __future__ import annotations

import pytest
import torch

from isengard_desktop.training_runtime.errors import ConfigError
from isengard_desktop.training_runtime.loop import pick_device
from tests.unit.test_runtime_pieces import make_job



@pytest.fixture(autouse=True)
def cpu_only_torch(monkeypatch):
    """A PyTorch that cannot use CUDA (as here), also on a machine with a GPU."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", None)

DRIVER = "NVIDIA driver (nvcuda.dll found)"


def test_auto_refuses_to_train_on_the_cpu_on_windows_with_an_nvidia_driver(tmp_path):
    job = make_job(tmp_path, device="auto")
    with pytest.raises(ConfigError) as info:
        pick_device(job, windows=True, driver=lambda: DRIVER)
    text = str(info.value)
    assert text.startswith("device: 'auto' would train on the CPU")
    assert DRIVER in text and torch.__version__ in text and "CUDA build" in text


def test_elsewhere_it_trains_on_the_cpu_and_says_why(tmp_path):
    device, dtype, notes = pick_device(make_job(tmp_path, device="auto"), windows=False,
                                       driver=lambda: DRIVER)
    assert (device.type, dtype) == ("cpu", torch.float32)
    assert any(n.startswith("training on the CPU: this computer has an NVIDIA driver")
               for n in notes)


def test_no_driver_or_cpu_chosen_is_the_cpu_without_a_word(tmp_path):
    asked: list[int] = []

    def driver() -> None:
        asked.append(1)

    for windows in (True, False):
        device, _, notes = pick_device(make_job(tmp_path, device="auto"), windows=windows,
                                       driver=driver)
        assert device.type == "cpu" and notes == []
        device, _, notes = pick_device(make_job(tmp_path, device="cpu"), windows=windows,
                                       driver=lambda: DRIVER)
        assert device.type == "cpu" and notes == []
    assert len(asked) == 2          # the driver is looked for only when it matters
