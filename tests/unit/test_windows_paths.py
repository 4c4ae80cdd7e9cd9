"""Windows path limits for training jobs (issue 13, item 9): the deepest path a job creates
under a typical %LOCALAPPDATA% stays well under MAX_PATH, and output names are file names
Windows accepts (no device names, no reserved characters) on every OS."""

from __future__ import annotations

import pytest

from isengard_desktop.core.platform_support import WINDOWS_MAX_PATH, deepest_job_paths
from isengard_desktop.core.training.spec import FAMILIES, SpecError, new_job_id
from isengard_desktop.plugins.diffusion_pipe.models import MODEL_TYPES
from isengard_desktop.ui.training.training_tab import OUTPUT_SLUG_CHARS, output_name
from tests.unit.test_runtime_pieces import make_job

# platformdirs' user_data_dir on Windows for a 20-character account name (the longest a local
# account has) — where a default install keeps its jobs
JOBS = "C:\\Users\\" + "a" * 20 + "\\AppData\\Local\\isengard-desktop\\jobs"
MARGIN = 30      # room for a longer profile folder (domain accounts, "name.DOMAIN")


def test_deepest_job_path_keeps_a_margin_under_max_path():
    families = [*FAMILIES, *(m.key for m in MODEL_TYPES)]
    longest_family = max(families, key=len)
    name = output_name("W" * 60, longest_family, new_job_id())   # the longest name allowed
    paths = deepest_job_paths(f"{JOBS}\\{new_job_id()}", name)
    assert len(paths[0]) <= WINDOWS_MAX_PATH - 1 - MARGIN, (len(paths[0]), paths[0])
    # the ai-toolkit layout repeats the name; it is among the checked paths
    assert any(p.count(name) == 2 for p in paths)


def test_output_names_are_cut_and_stay_plain():
    job_id = "0123456789ab"
    assert output_name("Ann", "sdxl", job_id) == "ann-sdxl-012345"
    long = output_name("Anna-Maria Josefine von Hohenzollern", "flux-dev", job_id)
    slug = "anna-maria-josefine-von-hohenzollern"[:OUTPUT_SLUG_CHARS].rstrip("-")
    assert long == f"{slug}-flux-dev-012345"
    cut_at_dash = output_name("a" * (OUTPUT_SLUG_CHARS - 1) + " b", "sd15", job_id)
    assert "--" not in cut_at_dash
    assert output_name("Con", "sd15", job_id).startswith("con-")   # no device name


@pytest.mark.parametrize("bad", ["con", "NUL", "aux.safetensors", "lpt1", "a:b", "a*b",
                                 "what?", "x<y", "x|y", 'say"hi"', "trailing.", "trailing ",
                                 "a/b", "a\\b", "tab\there", ""])
def test_output_names_windows_refuses_are_refused_everywhere(tmp_path, bad):
    with pytest.raises(SpecError, match="^output_name: must be a plain file name"):
        make_job(tmp_path, output_name=bad).validate()


@pytest.mark.parametrize(
    "good", ["ann-sdxl-012345", "console", "nul-sd15-abc", "Zoë.v2"])
def test_ordinary_output_names_pass(tmp_path, good):
    job = make_job(tmp_path, output_name=good)
    job.validate()
    assert job.output_name == good
