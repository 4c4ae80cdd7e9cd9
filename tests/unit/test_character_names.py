"""Issue 11 item 8: character names that are safe as display names and folder names."""

from __future__ import annotations

import pytest

from isengard_desktop.core.naming import (MAX_CHARACTER_NAME_CHARS, folder_slug,
                                          validate_character_name)


@pytest.mark.parametrize("name", ["Anna", "Zoë Ünal", "李小龙", "Anna.", "Console", "COM10",
                                  "Mr. Con", "a" * MAX_CHARACTER_NAME_CHARS])
def test_good_names(name: str) -> None:
    assert validate_character_name(name) is None


@pytest.mark.parametrize(("name", "words"), [
    ("", "empty"),
    ("   ", "empty"),
    ("a" * (MAX_CHARACTER_NAME_CHARS + 1), "too long"),
    ("An\x00na", "control"),
    ("An\nna", "control"),
    ("Anna\x1b[31m", "control"),
    ("Anna\u202e", "control"),
    ("CON", "reserved"),
    ("con", "reserved"),
    ("Nul", "reserved"),
    ("COM1", "reserved"),
    ("lpt9", "reserved"),
    ("con.txt", "reserved"),
    ("AUX.tar.gz", "reserved"),
    ("PRN.", "reserved"),
    ("nul .", "reserved"),
    ("COM¹", "reserved"),
])
def test_bad_names_say_why(name: str, words: str) -> None:
    problem = validate_character_name(name)
    assert problem is not None and words in problem.lower()


@pytest.mark.parametrize("name", ["CON", "nul", "com1", "Lpt3", "con.txt", "aux...", "COM¹",
                                  "prn ", "clock$"])
def test_folder_slug_never_gives_a_windows_reserved_name(name: str) -> None:
    slug = folder_slug(name)
    base = slug.split(".")[0].rstrip(". ").upper()
    assert base not in {"CON", "PRN", "AUX", "NUL", "CLOCK$"}
    assert not (len(base) == 4 and base[:3] in ("COM", "LPT") and base[3].isdigit())
    assert slug and not slug.endswith((".", " "))
