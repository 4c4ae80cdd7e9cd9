"""core/frozen.py: children of the frozen app do not inherit the bundle's library path."""

from __future__ import annotations

import os
import sys

import pytest

from isengard_desktop.core.frozen import child_environ, is_frozen

BUNDLE_LIBS = "/opt/isengard-desktop/_internal"


@pytest.fixture
def frozen(monkeypatch):
    monkeypatch.setattr(sys, "frozen", True, raising=False)


def test_outside_a_bundle_the_environment_is_copied_unchanged():
    assert not is_frozen()
    env = {"LD_LIBRARY_PATH": BUNDLE_LIBS, "_PYI_ARCHIVE_FILE": "x", "A": "1"}
    out = child_environ(env)
    assert out == env and out is not env


def test_frozen_drops_the_bootloader_path_when_the_user_had_none(frozen):
    out = child_environ({"LD_LIBRARY_PATH": BUNDLE_LIBS, "_PYI_ARCHIVE_FILE": "/x",
                         "_PYI_PARENT_PROCESS_LEVEL": "-1", "PATH": "/usr/bin", "A": "1"})
    assert out == {"PATH": "/usr/bin", "A": "1"}


def test_frozen_restores_the_users_own_library_path(frozen):
    out = child_environ({"LD_LIBRARY_PATH": f"{BUNDLE_LIBS}:/usr/local/cuda/lib64",
                         "LD_LIBRARY_PATH_ORIG": "/usr/local/cuda/lib64"})
    assert out == {"LD_LIBRARY_PATH": "/usr/local/cuda/lib64"}


def test_frozen_none_means_this_process_environment(frozen, monkeypatch):
    monkeypatch.setenv("LD_LIBRARY_PATH", BUNDLE_LIBS)
    monkeypatch.delenv("LD_LIBRARY_PATH_ORIG", raising=False)
    monkeypatch.setenv("ISENGARD_MARK", "kept")
    out = child_environ()
    assert "LD_LIBRARY_PATH" not in out and out["ISENGARD_MARK"] == "kept"
    assert os.environ["LD_LIBRARY_PATH"] == BUNDLE_LIBS      # this process is left alone


def test_the_frozen_app_refuses_to_act_as_python(frozen, capsys):
    from isengard_desktop.__main__ import main

    assert main(["-m", "isengard_desktop.training_runtime", "probe"]) == 2
    err = capsys.readouterr().err
    assert "is the app, not a Python interpreter" in err
    assert "-m isengard_desktop.training_runtime" in err
