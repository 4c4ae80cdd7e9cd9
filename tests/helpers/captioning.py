"""A tiny random Florence-2 for captioning tests, built once per test session by the
captioning child itself (``make-tiny-model``: the pytest process never imports
transformers), and a helper that runs the child on a job and reads its events."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from isengard_desktop.core.captioning.job import CaptionJob, parse_caption_event

ROOT = Path(__file__).resolve().parents[2]
MODULE = "isengard_desktop.training_runtime.captioning"
BUILD_TIMEOUT_S = 240


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update({"PYTHONUNBUFFERED": "1", "PYTHONIOENCODING": "utf-8"})
    return env


@pytest.fixture(scope="session")
def tiny_florence(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-florence") / "model"
    out = subprocess.run([sys.executable, "-m", MODULE, "make-tiny-model", str(folder)],
                         env=child_env(), capture_output=True, text=True,
                         timeout=BUILD_TIMEOUT_S, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1])["model"] == str(folder)
    return folder


def write_job(path: Path, job: CaptionJob) -> Path:
    path.write_text(job.to_json(), encoding="utf-8")
    return path


def run_child(job_file: Path, timeout: float = 240) -> tuple[int, list, str]:
    """Run the child to its end: (exit code, events, stderr)."""
    out = subprocess.run([sys.executable, "-m", MODULE, "run", "--job", str(job_file)],
                         env=child_env(), capture_output=True, text=True, timeout=timeout,
                         check=False, stdin=subprocess.DEVNULL)
    events = [e for e in map(parse_caption_event, out.stdout.splitlines()) if e is not None]
    # stdout carries events only: every line is one
    assert len(events) == len(out.stdout.splitlines()), out.stdout
    return out.returncode, events, out.stderr
