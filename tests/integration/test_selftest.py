"""``isengard selftest`` as a user runs it: a fresh process, from an unrelated folder, with its
own ISENGARD_HOME. The passing run really trains the tiny model through the app's runner and
leaves a kohya LoRA; the failing runs are honest broken set-ups (the GPU asked for on a
machine without one, a PyTorch that cannot be imported) reported in plain words, exit 1.
"""

from __future__ import annotations

import json
import math
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

ALL_CHECKS = ["python", "torch", "cuda", "libraries", "optional", "disk_space", "disk_write",
              "tiny_model", "training", "lora"]


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ, ISENGARD_HOME=str(home), OMP_NUM_THREADS="1")  # 2 busy cores
    env.pop("QT_QPA_PLATFORM", None)    # the CLI needs no display at all
    env.update(extra)
    return env


def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, list[str], str]:
    result = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=cwd,
                            timeout=220)
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    return result.returncode, lines, result.stderr


def _header(path: Path) -> dict:
    with open(path, "rb") as fh:
        (length,) = struct.unpack("<Q", fh.read(8))
        return json.loads(fh.read(length))


def test_selftest_json_trains_the_tiny_model_and_writes_a_kohya_lora(tmp_path):
    home, cwd = tmp_path / "home", tmp_path / "elsewhere"
    cwd.mkdir()
    entry = Path(sys.executable).with_name("isengard")
    code, lines, stderr = _run([str(entry), "selftest", "--json", "--steps", "10"], cwd,
                               _env(home))
    assert code == 0, stderr[-3000:] + "\n".join(lines)
    assert len(lines) == 1, lines                     # exactly one JSON line on stdout
    out = json.loads(lines[0])
    assert out["ok"] is True, out["checks"]
    assert [c["name"] for c in out["checks"]] == ALL_CHECKS
    assert all(c["ok"] and c["detail"] for c in out["checks"])
    assert out["torch"] and out["device"] in ("cpu", "cuda") and isinstance(out["cuda"], bool)
    assert out["steps"] == 10 and 0 < out["seconds"] < 220
    assert math.isfinite(out["first_loss"]) and math.isfinite(out["last_loss"])
    assert out["first_loss"] > 0 and out["last_loss"] > 0

    # the LoRA: in the self-test's folder under the app's tmp, kohya keys, alphas, metadata
    lora = Path(out["lora"])
    folder = Path(out["folder"])
    assert lora.is_file() and lora.suffix == ".safetensors"
    assert folder.parent == home / "tmp" and folder.name.startswith("selftest-")
    assert folder in lora.parents
    header = _header(lora)
    meta = header.pop("__metadata__")
    downs = [k for k in header if k.endswith(".lora_down.weight")]
    assert downs and all(k.startswith("lora_unet_") for k in header)
    for key in downs:
        base = key.removesuffix(".lora_down.weight")
        assert f"{base}.lora_up.weight" in header and f"{base}.alpha" in header
    assert meta["ss_network_dim"] == "4" and meta["ss_steps"] == "10"
    assert meta["ss_base_model_version"] == "sd_v1"

    # what is kept: the job folder with its logs, and the helpers' logs; not the tiny model
    job_dir = lora.parent
    assert (job_dir / "events.jsonl").is_file() and (job_dir / "stderr.log").is_file()
    assert (folder / "probe.log").is_file() and (folder / "model.log").is_file()
    assert not (folder / "assets").exists()
    assert not list(folder.rglob("*.sqlite3*"))
    steps = [json.loads(line) for line in (job_dir / "events.jsonl").read_text().splitlines()]
    assert [e["step"] for e in steps if e["event"] == "step"] == list(range(1, 11))

    # the user's library was never touched: no database, no jobs, nothing from the test
    assert not (home / "data" / "isengard.sqlite3").exists()
    assert not any((home / "data" / "jobs").iterdir())
    assert not any(p.name.startswith(".isengard-selftest") for p in (home / "data").iterdir())
    assert list((home / "logs" / "app").glob("*.jsonl"))   # the run is in the app log


def test_selftest_cuda_on_a_machine_without_a_usable_gpu_fails_plainly(tmp_path):
    home = tmp_path / "home"
    code, lines, stderr = _run([sys.executable, "-m", "isengard_desktop", "selftest", "--json",
                                "--device", "cuda"], tmp_path, _env(home))
    out = json.loads(lines[-1])
    if out["cuda"]:
        pytest.skip("this machine has a working CUDA GPU")
    assert code == 1, stderr[-3000:]
    assert len(lines) == 1 and out["ok"] is False
    checks = {c["name"]: c for c in out["checks"]}
    cuda = checks["cuda"]
    assert cuda["ok"] is False
    assert "You asked for the GPU, but it cannot be used" in cuda["detail"]
    assert "CPU" in cuda["fix"] and "PyTorch" in cuda["fix"]
    assert checks["torch"]["ok"] and checks["disk_write"]["ok"]
    # training is not attempted on a GPU that is not there, and says why
    assert checks["training"]["ok"] is False and "GPU (CUDA)" in checks["training"]["detail"]
    assert out["lora"] is None and out["first_loss"] is None and out["steps"] == 0
    assert not list((home / "tmp").glob("selftest-*/data/jobs/*"))


def test_selftest_reports_a_pytorch_that_cannot_be_imported(tmp_path):
    """A broken install: ``import torch`` fails (here: a torch package that cannot load its
    CUDA runtime, found first on PYTHONPATH). Human-readable mode, exit 1."""
    broken = tmp_path / "broken" / "torch"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text(
        "raise ImportError('libcudart.so.12: cannot open shared object file')\n")
    home = tmp_path / "home"
    pythonpath = os.pathsep.join(p for p in [str(tmp_path / "broken"),
                                             os.environ.get("PYTHONPATH", "")] if p)
    entry = Path(sys.executable).with_name("isengard")
    result = subprocess.run([str(entry), "selftest"], capture_output=True, text=True,
                            env=_env(home, PYTHONPATH=pythonpath), cwd=tmp_path, timeout=220)
    assert result.returncode == 1, result.stderr[-3000:]
    report = result.stdout
    assert "self-test: 2 problems found" in report
    assert "FAILED  PyTorch" in report
    assert "libcudart.so.12: cannot open shared object file" in report
    assert "What to do: Repair the trainer runtime" in report
    assert "FAILED  Training run" in report and "Not run" in report
    assert "LoRA written" not in report
    assert "Checking Python, PyTorch and the GPU" in result.stderr   # progress on stderr


def test_cancel_during_training_ends_the_trainer_and_reports_cancelled(qtbot, tmp_path,
                                                                      monkeypatch):
    """The service as the Settings page drives it: cancelled mid-run, the trainer child
    (started by the sandbox's runner) is gone and the result says "cancelled"."""
    from isengard_desktop.core.paths import resolve_paths
    from isengard_desktop.services.ops import init_main_thread_bridge
    from isengard_desktop.services.selftest_runner import SelfTestService
    from isengard_desktop.services.process_group import pid_alive

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    init_main_thread_bridge()
    paths = resolve_paths().ensure()
    service = SelfTestService(paths)
    checks, results, steps = [], [], []
    service.check_finished.connect(checks.append)
    service.finished.connect(results.append)
    service.progressed.connect(lambda p: steps.append(p) if "step " in p.detail else None)
    service.start(steps=1000, device="cpu")
    assert service.is_running
    qtbot.waitUntil(lambda: bool(steps) or bool(results), timeout=150_000)
    assert not results, [c.detail for c in checks]
    record = service._training.jobs()[0]
    pid = record.pid
    assert pid and pid_alive(pid)
    service.cancel()
    qtbot.waitUntil(lambda: bool(results), timeout=30_000)
    result = results[0]
    assert result.cancelled and not result.ok and not service.is_running
    assert "self-test: cancelled" in result.report_text()
    assert not pid_alive(pid)
    assert [c.name for c in checks][-1] == "tiny_model"    # no verdict on an unfinished run
    assert not (Path(result.folder) / "assets").exists()    # tidied all the same
    service.shutdown()
