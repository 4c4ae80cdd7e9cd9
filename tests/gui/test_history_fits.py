"""At the 900×600 minimum window size the Training tab's History fits its width: no
sideways scrolling (issue 11, item 19 / the 900×600 layout pass)."""

from __future__ import annotations

import os
from pathlib import Path

from isengard_desktop.core.training.spec import TrainingJob
from isengard_desktop.services.training.records import JobRecord, JobState
from isengard_desktop.ui.training.history import COLUMNS


def _record(tmp_path: Path, n: int, state: JobState, **kw) -> JobRecord:  # type: ignore[no-untyped-def]
    spec = TrainingJob(job_id=f"job{n}", character_id=1, character_name="Anastasia Longname",
                       family="sdxl", base_model="/m.safetensors", dataset_dir=str(tmp_path),
                       steps=1500, trigger_word="ana", output_name="anastasia_longname")
    return JobRecord(job_id=f"job{n}", character_id=1,
                     character_name="Anastasia Longname-Whitfield", backend="builtin",
                     family="sdxl", preset="Balanced", state=state,
                     created=f"2026-12-0{n}T05:00:00Z", started=f"2026-12-0{n}T05:00:00Z",
                     finished=f"2026-12-0{n}T06:12:41Z", job_dir=tmp_path, spec=spec,
                     step=1500, total_steps=1500, last_loss=0.0812, **kw)


def test_history_has_no_sideways_scroll_at_the_minimum_window_size(qtbot, make_app, tmp_path):
    ctx = make_app()
    window = ctx.window
    window.resize(900, 600)
    window.tabs.setCurrentWidget(ctx.tabs["Training"])
    tab = ctx.training_tab
    qtbot.waitUntil(lambda: tab.isVisible())
    lora = str(tmp_path / "anastasia_longname_whitfield-sdxl-balanced-20261206.safetensors")
    records = [_record(tmp_path, 1, JobState.COMPLETED, lora_path=lora),
               _record(tmp_path, 2, JobState.STOPPED, lora_path=lora, checkpoint_step=700),
               _record(tmp_path, 3, JobState.FAILED, error_kind="oom",
                       error_message="Out of memory")]
    tab.history.set_jobs(records)
    qtbot.waitUntil(lambda: window.width() == 900 and window.height() == 600)
    qtbot.wait(50)
    tree = tab.history.tree
    if os.environ.get("I11B_SHOT"):
        window.grab().save(os.environ["I11B_SHOT"])
    assert not tree.horizontalScrollBar().isVisible()
    assert tree.header().length() <= tree.viewport().width()
    # what is shortened stays readable in full: the tooltip has the LoRA's whole path
    item = tree.topLevelItem(0)
    assert item is not None and lora in item.toolTip(COLUMNS.index("LoRA"))
    assert tree.isColumnHidden(COLUMNS.index("Trainer"))          # the least needed goes first
    for name in ("State", "Character", "LoRA"):
        assert not tree.isColumnHidden(COLUMNS.index(name))
    # the job panel above is not cut off: it scrolls when the window is this short
    assert tab.panel.height() >= tab.panel.minimumSizeHint().height()
    # wider windows show every column again
    window.resize(1600, 900)
    qtbot.waitUntil(lambda: window.width() == 1600)
    qtbot.wait(50)
    if os.environ.get("I11B_SHOT"):
        window.grab().save(os.environ["I11B_SHOT"].replace(".png", "_wide.png"))
    assert all(not tree.isColumnHidden(c) for c in range(len(COLUMNS)))
    assert not tree.horizontalScrollBar().isVisible()
