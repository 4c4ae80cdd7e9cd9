"""core/toml_text.py: the one TOML writer (tomlkit) — layout of new files, and edits that keep a
user's comments."""

from __future__ import annotations

import tomllib
from dataclasses import replace
from pathlib import Path

import pytest

from isengard_desktop.core import toml_text
from isengard_desktop.core.training.profile_store import ProfileStore

SHIPPED = Path(__file__).resolve().parents[2] / "profiles"


def test_dumps_layout_header_scalars_then_tables():
    text = toml_text.dumps({"a": 'C:\\x\\"y"', "n": 3, "f": 1e-8, "on": True, "l": [1, 2],
                            "t": {"k": "v", "sub": {"z": 1}}, "only": {"deep": {"x": 1}},
                            "arr": [{"p": "q"}]}, "header one\n\nheader two")
    assert text == ('# header one\n#\n# header two\n\na = "C:\\\\x\\\\\\"y\\""\nn = 3\nf = 1e-08\n'
                    'on = true\nl = [1, 2]\n\n[t]\nk = "v"\n\n[t.sub]\nz = 1\n\n'
                    '[only.deep]\nx = 1\n\n[[arr]]\np = "q"\n')
    assert tomllib.loads(text)["only"] == {"deep": {"x": 1}}
    with pytest.raises(TypeError):
        toml_text.dumps({"x": object()})


SOURCE = """# my profile
version = 1

[profile]
name = "Mine"    # what I call it
backend = "builtin"

[train]
rank = 16        # keep it small
steps = 1000
"""


def test_update_keeps_comments_and_changes_only_what_differs():
    data = tomllib.loads(SOURCE)
    data["train"]["rank"] = 32
    del data["train"]["steps"]
    data["train"]["lr"] = 1e-4
    data["extra"] = {"k": [1, 2]}
    text = toml_text.update(SOURCE, data)
    assert tomllib.loads(text) == data
    assert "# my profile" in text and '# what I call it' in text
    assert "rank = 32        # keep it small" in text
    assert toml_text.update(SOURCE, tomllib.loads(SOURCE)) == SOURCE
    assert toml_text.update("x = 1\n", {"x": 1.0}) == "x = 1.0\n"       # the kind counts


def test_saving_an_edited_user_profile_keeps_its_comments(tmp_path):
    store = ProfileStore(tmp_path / "user", SHIPPED)
    first = store.save(replace(next(p for p in store.profiles() if p.name == "SDXL · 12 GB"),
                               name="Anna SDXL", source_text=None))
    path = first.source
    path.write_text("# Anna's own notes\n" + path.read_text(encoding="utf-8"), encoding="utf-8")
    loaded = store.get("Anna SDXL")
    edited = replace(loaded, train={**loaded.train, "rank": 24}, source_text=None)
    saved = store.save(edited)
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# Anna's own notes\n")
    assert saved.train["rank"] == 24 and saved == edited
