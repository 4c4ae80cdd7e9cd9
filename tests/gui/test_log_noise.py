"""Known-harmless trainer noise stays out of the job log view, not out of the raw log
(issue 11, item 18)."""

from __future__ import annotations

from pathlib import Path

from isengard_desktop.core.training.protocol import is_hidden_line
from isengard_desktop.ui.training.training_tab import read_log_tail

TORCHAO = ("Failed to load /home/u/.local/share/isengard/runtime/lib/python3.11/site-packages/"
           "torchao/prototype/mx_formats/_C_mxfp8.cpython-311-x86_64-linux-gnu.so: "
           "libcudart.so.12: cannot open shared object file")
DEPRECATION = ("/site-packages/torch/utils/checkpoint.py:86: FutureWarning: "
               "`torch.cpu.amp.autocast(args...)` is deprecated. Please use "
               "`torch.amp.autocast('cpu', args...)` instead.")
SOURCE_LINE = "  warnings.warn("
REAL = [
    "Traceback (most recent call last):",
    "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB",
    "UserWarning: your dataset has 3 images",
    "Failed to load the base model: file not found",
]


def test_harmless_noise_is_hidden_and_real_problems_are_not() -> None:
    for line in (TORCHAO, DEPRECATION, SOURCE_LINE):
        assert is_hidden_line("stderr", line), line
    for line in REAL:
        assert not is_hidden_line("stderr", line), line


def test_the_reloaded_log_view_hides_the_noise(tmp_path: Path) -> None:
    (tmp_path / "stdout.log").write_text("")
    (tmp_path / "stderr.log").write_text("\n".join([TORCHAO, DEPRECATION, SOURCE_LINE,
                                                    *REAL]) + "\n")
    shown = dict(read_log_tail(tmp_path))["stderr"]
    assert shown == REAL
    assert TORCHAO in (tmp_path / "stderr.log").read_text()       # the raw log keeps it
