"""When Resume is impossible the job panel says why and offers Re-run (issue 11, item 13)."""

from __future__ import annotations

from types import SimpleNamespace

from isengard_desktop.ui.training.job_panel import JobPanelWidget


def record(**changes):
    base = dict(job_id="j1", character_name="Alice", family="sd15", preset="Balanced",
                backend="fake", spec=None, state="interrupted", step=2, total_steps=40,
                last_loss=None, lora_path=None, error_kind=None,
                error_message="Isengard was closed or crashed while this job was running.",
                started=None, finished=None, checkpoint_step=None, resumable=False)
    base.update(changes)
    return SimpleNamespace(**base)


def test_interrupted_without_a_checkpoint_says_why_and_offers_rerun(qtbot):
    panel = JobPanelWidget()
    qtbot.addWidget(panel)
    panel.show()
    panel.show_job(record())
    text = panel.phase_label.text()
    assert "Interrupted at step 2 of 40" in text
    assert "no checkpoint" in text.lower() and "Re-run" in text
    assert not panel.resume_button.isEnabled()
    assert panel.rerun_button.isVisible() and panel.rerun_button.isEnabled()
    with qtbot.waitSignal(panel.rerun_requested) as blocker:
        panel.rerun_button.click()
    assert blocker.args == ["j1"]


def test_a_resumable_job_offers_resume_not_rerun(qtbot):
    panel = JobPanelWidget()
    qtbot.addWidget(panel)
    panel.show()
    panel.show_job(record(checkpoint_step=20, step=25, resumable=True))
    assert panel.resume_button.isEnabled()
    assert not panel.rerun_button.isVisible()
    assert "Resume continues" in panel.phase_label.text()
