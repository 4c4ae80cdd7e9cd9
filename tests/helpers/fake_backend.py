"""A tiny trainer backend that runs ``tests/helpers/fake_trainer.py``.

Options for the fake come from ``job.extra`` (backend-specific options), e.g.
``{"delay": 0.01, "fail_at": 5, "ignore_stop": True}``; keys map to ``--<key-with-dashes>``,
``True`` to a bare flag. Register it with::

    registry.register("fake", "tests.helpers.fake_backend:FakeBackend", "Fake trainer")
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from isengard_desktop.core.training.spec import JobPaths, TrainingJob
from isengard_desktop.plugins.builtin_trainer import ProtocolParser
from isengard_desktop.plugins.interface import Launch

FAKE_TRAINER = Path(__file__).with_name("fake_trainer.py")


class FakeBackend:
    key = "fake"
    label = "Fake trainer (tests)"

    def available(self) -> tuple[bool, str]:
        return True, ""

    def capabilities(self) -> dict[str, Any]:
        return {"families": ["sd15"], "resume": True, "samples": False}

    def build_launch(self, job: TrainingJob, paths: JobPaths, resume: bool) -> Launch:
        argv = [sys.executable, str(FAKE_TRAINER), "--job", str(paths.spec),
                "--job-dir", str(paths.root), "--steps", str(job.steps),
                "--output", job.output_name]
        for key, value in sorted(job.extra.items()):
            if key.startswith("_"):
                continue
            flag = "--" + key.replace("_", "-")
            if value is True:
                argv.append(flag)
            elif value not in (False, None):
                argv += [flag, str(value)]
        if resume:
            argv.append("--resume")
        if job.extra.get("_program"):
            argv[0] = str(job.extra["_program"])
        config = paths.configs / "fake.json"
        return Launch(argv=argv, env={"FAKE_BACKEND": "1"}, cwd=str(paths.root),
                      files={config: '{"fake": true}\n'},
                      stop=job.extra.get("_stop", "stdin"))

    def make_parser(self) -> ProtocolParser:
        return ProtocolParser()
