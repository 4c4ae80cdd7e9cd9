"""``benchmarks/gpu/fit_calibrate.py`` as a real child process: without an NVIDIA GPU it says
so and exits 0; ``--cpu-smoke`` trains a tiny model through the same code path and prints one
JSON line with the measurement next to the memory model's prediction."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from isengard_desktop.core.training.memory_fit import predict
from isengard_desktop.core.training.presets import DEFAULT_PRESET, apply_preset

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "gpu" / "fit_calibrate.py"


def run(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True,
                          text=True, env=env, timeout=280, cwd=REPO)


def one_json_line(stdout: str) -> dict:
    lines = [line for line in stdout.splitlines() if line.strip()]
    assert len(lines) == 1, stdout
    return json.loads(lines[0])


def test_without_a_gpu_it_says_so_and_exits_0():
    done = run()
    assert done.returncode == 0, done.stderr[-2000:]
    result = one_json_line(done.stdout)
    assert result["ok"] is True and result["gpu"] is None
    assert "no NVIDIA GPU" in result["note"] and "results" not in result


def test_cpu_smoke_trains_and_reports_next_to_the_prediction():
    done = run("--cpu-smoke", "--families", "sd15", "--tiers", "12", "--steps", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    result = one_json_line(done.stdout)
    assert result["ok"] is True and result["steps"] == 2
    assert result["mode"].startswith("in-process")
    [row] = result["results"]
    assert (row["family"], row["tier_gb"]) == ("sd15", 12)
    measured = row["measured"]
    assert measured["exit"] == 0 and measured["steps_done"] == 2
    assert measured["s_per_step"] > 0 and measured["peak_ram_gb"] > 0
    assert measured["peak_vram_reserved_gb"] is None          # the CPU has none
    # the prediction is memory_fit.predict's for the job the Training tab makes at 12 GB
    values = apply_preset({}, "sd15", DEFAULT_PRESET, vram_gb=12.0, backend="builtin")
    values.update(resolution=row["settings"]["resolution"], sample_every=0)  # as the run
    assert row["settings"]["rank"] == values["rank"]
    expected = predict(values, "sd15", "builtin")
    assert row["predicted"]["vram_gb"] == round(expected.vram_gb, 2)
    assert row["predicted"]["ram_gb"] == round(expected.ram_gb, 2)


def test_unknown_family_is_refused_by_name():
    done = run("--cpu-smoke", "--families", "sd3")
    assert done.returncode == 2
    assert "--families" in done.stderr and "sd3" in done.stderr
