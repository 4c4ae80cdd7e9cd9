"""No usable GPU is said plainly (issue 11, item 14): a warning line in the self-test, the
probe's verdict for the Training banner and the estimate."""

from __future__ import annotations

from isengard_desktop.core.selftest_report import (SelfTestResult, environment_checks,
                                                   gpu_status)
from isengard_desktop.core.training.presets import estimate_seconds
from tests.unit.test_selftest_core import by_name, probe

CPU_ONLY = {"torch": "2.13.0+cpu", "cuda": {"available": False, "version": None}}


def test_the_self_test_warns_about_a_cpu_only_build() -> None:
    for device in ("auto", "cpu"):
        check = by_name(environment_checks(probe(**CPU_ONLY), device))["cuda"]
        assert check.ok and check.warning, device
        result = SelfTestResult(ok=True, checks=(check,))
        line = next(x for x in result.report_text().splitlines() if "GPU (CUDA)" in x)
        assert line.lstrip().startswith("WARN ") and "no usable GPU" in line, line
        assert result.to_dict()["checks"][0]["warning"] is True
    good = by_name(environment_checks(probe(), "auto"))["cuda"]
    assert good.ok and not good.warning


def test_gpu_status_from_the_probe() -> None:
    none = gpu_status(probe(**CPU_ONLY))
    assert not none.usable and "CPU-only build" in none.why and none.hint == "cpu"
    broken = gpu_status(probe(cuda={"available": True, "version": "12.4", "device_name": "X",
                                    "error": "no kernel image"}))
    assert not broken.usable and "no kernel image" in broken.why
    rtx = gpu_status(probe())
    assert rtx.usable and rtx.hint == "NVIDIA RTX 4090, 24 GB" and rtx.why == ""


def test_a_cpu_estimate_is_not_the_gpu_one() -> None:
    gpu, _ = estimate_seconds("sd15", 512, 500, 1)
    cpu, words = estimate_seconds("sd15", 512, 500, 1, gpu_hint="cpu")
    assert cpu > 10 * gpu and "CPU" in words
