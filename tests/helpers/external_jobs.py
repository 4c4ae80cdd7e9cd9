"""Shared by the unit tests of the external-trainer backends (tests/unit/test_ai_toolkit_backend.py,
test_kohya_backend.py): golden-file checks, the test dataset and the job they build."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from isengard_desktop.core.training.dataset_list import entries_from_folder, write_dataset_list
from isengard_desktop.core.training.spec import JobPaths, TrainingJob

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
UPDATE = os.environ.get("ISENGARD_UPDATE_GOLDEN") == "1"


def normalise(text: str, tmp: Path) -> str:
    """Machine-specific parts replaced: the temp folder by $TMP, this Python by $PYTHON, and
    (Windows) backslashes after $TMP by "/" — also where TOML/JSON doubled them — so one
    golden file serves every OS."""
    for real, name in ((str(tmp), "$TMP"), (sys.executable, "$PYTHON")):
        text = text.replace(real.replace("\\", "\\\\"), name).replace(real, name)
    text = re.sub(r"\$TMP[^\s\"',\]]*",
                  lambda m: m.group(0).replace("\\\\", "/").replace("\\", "/"), text)
    return re.sub(r"isengard-[0-9a-f]{8}\.stop", "isengard-XXXXXXXX.stop", text)


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.is_file(), f"{path} is missing (run with ISENGARD_UPDATE_GOLDEN=1)"
    assert text == path.read_text(encoding="utf-8"), f"{name} differs from its golden file"


def make_dataset(tmp: Path) -> Path:
    """``<tmp>/data/alice`` with one image."""
    data = tmp / "data" / "alice"
    data.mkdir(parents=True)
    (data / "a.png").write_bytes(b"png")
    return data


def job_paths(tmp: Path, job_id: str) -> JobPaths:
    """``<tmp>/jobs/<job_id>`` with the photo list the app writes at a job's start
    (``dataset.json``), made from ``<tmp>/data/alice`` (empty when there is none)."""
    paths = JobPaths(tmp / "jobs" / job_id)
    data = tmp / "data" / "alice"
    write_dataset_list(paths.root, entries_from_folder(data) if data.is_dir() else [])
    return paths


def external_job(tmp: Path, family: str, bases: dict[str, str], **values) -> TrainingJob:
    """Alice's job on ``<tmp>/data/alice`` with the base model ``<tmp>/models/<bases[family]>``;
    ``values`` (job_id, backend, steps, ...) fill in and override."""
    defaults = dict(character_id=1, character_name="Alice", trigger_word="alc",
                    family=family, base_model=str(tmp / "models" / bases[family]),
                    dataset_dir=str(tmp / "data" / "alice"), output_name="alice_lora",
                    sample_prompts=["portrait of alc, studio light", "a woman at the beach"])
    return TrainingJob(**(defaults | values))
