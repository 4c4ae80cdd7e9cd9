"""Issue 11, item 19: the Dataset checks and the Training warnings use one low-resolution rule
(512 px until a model is known, then the family's native side)."""

from __future__ import annotations

from isengard_desktop.core.dataset.checks import MIN_SHORT_SIDE as CHECKS_MIN
from isengard_desktop.core.training.presets import min_short_side
from tests.gui.test_training_tab import library, make_form, model  # noqa: F401 (fixture)
from tests.helpers.characters import add_character


def test_the_rule_per_family():
    assert min_short_side(None) == CHECKS_MIN == 512
    assert min_short_side("sd15") == 512 and min_short_side("sdxl") == 1024
    assert min_short_side("flux-dev", 768) == 768


def test_training_warns_like_the_checks_until_a_model_is_chosen(qtbot, library,  # noqa: F811
                                                                 tmp_path):
    add_character(qtbot, library, "Eve", photos=12, photo_root=tmp_path, size=(800, 900))
    form, _ = make_form(qtbot, library)
    form.set_models([])
    assert not any("smaller than" in w for w in form.dataset_warnings())
    form.set_models([model(tmp_path, "sdxl")])
    assert any("smaller than 1024 px" in w for w in form.dataset_warnings())
    form.set_models([model(tmp_path, "sd15")])
    assert not any("smaller than" in w for w in form.dataset_warnings())
