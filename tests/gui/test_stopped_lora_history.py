"""A stopped job whose checkpoint was exported as its LoRA says so in the history
(issue 11, item 16)."""

from __future__ import annotations

from pathlib import Path

from isengard_desktop.core.training.spec import TrainingJob
from isengard_desktop.services.training.records import JobRecord, JobState
from isengard_desktop.ui.training.history import HistoryWidget


def test_history_marks_a_stopped_jobs_lora_with_its_step(qtbot, tmp_path: Path) -> None:
    spec = TrainingJob(job_id="j1", character_id=1, character_name="Ann", family="sd15",
                       base_model="/m.safetensors", dataset_dir=str(tmp_path), steps=40,
                       trigger_word="ann", output_name="ann")
    record = JobRecord(job_id="j1", character_id=1, character_name="Ann", backend="builtin",
                       family="sd15", preset="Quick", state=JobState.STOPPED,
                       created="2026-12-06T05:00:00Z", job_dir=tmp_path, spec=spec, step=15,
                       total_steps=40, checkpoint_step=15,
                       lora_path=str(tmp_path / "ann-step15.safetensors"))
    history = HistoryWidget()
    qtbot.addWidget(history)
    history.set_jobs([record])
    row = history.row_text("j1")
    assert row[0] == "Stopped at step 15"
    assert "ann-step15.safetensors" in row
