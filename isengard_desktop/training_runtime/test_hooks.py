"""Failure injection for tests of the built-in trainer; never active in a normal job.

``ISENGARD_TEST_OOM_AT_STEP="5"`` (or ``"5,9"``) makes the trainer raise a CUDA-style
``torch.OutOfMemoryError`` just before it trains step 5 (then step 9), each step at most once
per job folder (``test-hooks.json`` there records the steps that fired), so the run that
resumes after a recovery gets past it, as a run with lower memory settings would.

With several processes, ``ISENGARD_TEST_OOM_RANK="1"`` makes only that rank fail (the others
then find their peer gone, as when one GPU runs out of memory).

Both keys are needed: the environment variable **and** ``"test_hooks": true`` in the job
spec's ``extra``. A job made in the app never has that key (the Training tab writes only the
backend's declared fields into ``extra``), so a stray environment variable cannot make a real
job fail.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..core.fsutil import atomic_write_text
from ..core.training.spec import TrainingJob

__all__ = ["OOM_ENV", "OOM_RANK_ENV", "RECORD_FILE", "maybe_inject_oom"]

OOM_ENV = "ISENGARD_TEST_OOM_AT_STEP"
OOM_RANK_ENV = "ISENGARD_TEST_OOM_RANK"
RECORD_FILE = "test-hooks.json"


def _steps() -> list[int]:
    out = []
    for part in os.environ.get(OOM_ENV, "").split(","):
        part = part.strip()
        if part.isdigit():
            out.append(int(part))
    return out


def maybe_inject_oom(job: TrainingJob, job_dir: Path, step: int) -> None:
    """Raise ``torch.OutOfMemoryError`` when the test hook asks for one at ``step`` (the step
    about to be trained) and it has not fired in this job folder yet."""
    if job.extra.get("test_hooks") is not True or step not in _steps():
        return
    only = os.environ.get(OOM_RANK_ENV, "").strip()
    if only and only != os.environ.get("RANK", "0"):
        return
    record = Path(job_dir) / RECORD_FILE
    try:
        fired = json.loads(record.read_text(encoding="utf-8")).get("oom", [])
    except (OSError, ValueError, AttributeError):
        fired = []
    if step in fired:
        return
    atomic_write_text(record, json.dumps({"oom": [*fired, step]}))
    import torch

    raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate 2.00 GiB (injected "
                                 f"by {OOM_ENV} at step {step} for a test)")
