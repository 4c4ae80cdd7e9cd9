"""Caption sidecars and caption text edits."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from isengard_desktop.core.dataset.captions import (
    find_replace,
    prepend_trigger,
    read_sidecar,
    sidecar_path,
    write_sidecar,
)


@pytest.mark.parametrize(
    ("image", "sidecar"),
    [
        ("data/photo-1a2b3c4d.jpg", "data/photo-1a2b3c4d.txt"),
        ("data/a.b.PNG", "data/a.b.txt"),
        ("data/noext", "data/noext.txt"),
        ("фото-1a2b3c4d.webp", "фото-1a2b3c4d.txt"),
    ],
)
def test_sidecar_path(image, sidecar):
    assert sidecar_path(Path(image)) == Path(sidecar)


def test_sidecar_of_a_text_file_is_refused():
    with pytest.raises(ValueError):
        sidecar_path(Path("notes.txt"))


def test_write_and_read_round_trip(tmp_path):
    tmp_path = tmp_path / "data"  # the conftest puts a home folder in tmp_path itself
    tmp_path.mkdir()
    img = tmp_path / "photo-1a2b3c4d.jpg"
    assert read_sidecar(img) is None
    write_sidecar(img, "ohwx, a portrait, été, 写真")
    assert (tmp_path / "photo-1a2b3c4d.txt").read_bytes() == "ohwx, a portrait, été, 写真".encode()
    assert read_sidecar(img) == "ohwx, a portrait, été, 写真"
    assert read_sidecar(tmp_path / "photo-1a2b3c4d.txt") == "ohwx, a portrait, été, 写真"
    write_sidecar(img, "replaced")
    assert read_sidecar(img) == "replaced"
    assert sorted(os.listdir(tmp_path)) == ["photo-1a2b3c4d.txt"]  # no temp files


def test_empty_caption_writes_an_empty_file(tmp_path):
    img = tmp_path / "p.png"
    write_sidecar(img, "")
    assert (tmp_path / "p.txt").read_bytes() == b""
    assert read_sidecar(img) == ""


def test_read_strips_bom_and_trailing_newline_and_survives_bad_bytes(tmp_path):
    (tmp_path / "a.txt").write_bytes("\ufeffa caption\r\n".encode())
    assert read_sidecar(tmp_path / "a.txt") == "a caption"
    (tmp_path / "b.txt").write_bytes(b"caf\xe9 au lait\n")
    assert read_sidecar(tmp_path / "b.txt") == "caf\ufffd au lait"


def test_read_refuses_huge_files(tmp_path):
    (tmp_path / "big.txt").write_bytes(b"x" * (2 << 20))
    with pytest.raises(ValueError, match="big.txt"):
        read_sidecar(tmp_path / "big.txt")


@pytest.mark.parametrize(
    ("caption", "trigger", "expected"),
    [
        ("a photo of a man", "ohwx", "ohwx, a photo of a man"),
        ("ohwx, a photo of a man", "ohwx", "ohwx, a photo of a man"),
        ("ohwx man in a park", "ohwx", "ohwx man in a park"),
        ("ohwx", "ohwx", "ohwx"),
        ("ohwxman in a park", "ohwx", "ohwx, ohwxman in a park"),
        ("a photo of ohwx", "ohwx", "ohwx, a photo of ohwx"),
        ("", "ohwx", "ohwx"),
        ("   ", "ohwx", "ohwx"),
        ("  a photo  ", " ohwx ", "ohwx, a photo"),
        (", a photo", "ohwx", "ohwx, a photo"),
        ("a photo", "", "a photo"),
        ("c++ dev at a desk", "c++", "c++ dev at a desk"),
        ("c+++ dev", "c++", "c++, c+++ dev"),
        ("sks person, smiling", "sks person", "sks person, smiling"),
        ("Ohwx, a man", "ohwx", "ohwx, Ohwx, a man"),
    ],
)
def test_prepend_trigger(caption, trigger, expected):
    assert prepend_trigger(caption, trigger) == expected


def test_prepend_trigger_is_idempotent():
    once = prepend_trigger("a woman reading", "zxq")
    assert prepend_trigger(once, "zxq") == once == "zxq, a woman reading"


@pytest.mark.parametrize(
    ("caption", "find", "replace", "case_sensitive", "expected"),
    [
        ("a man, a man", "man", "woman", True, "a woman, a woman"),
        ("A Man and a man", "man", "person", True, "A Man and a person"),
        ("A Man and a MAN", "man", "person", False, "A person and a person"),
        ("a.b axb", "a.b", "X", True, "X axb"),
        ("a.b A.B axb", "a.b", "X", False, "X X axb"),
        ("path", "path", r"C:\new\1", True, "C:\\new\\1"),
        ("path PATH", "path", r"\1\g<0>", False, r"\1\g<0> \1\g<0>"),
        ("unchanged", "", "x", True, "unchanged"),
        ("unchanged", "", "x", False, "unchanged"),
        ("aaa", "aa", "b", True, "ba"),
        ("remove me please", " me", "", True, "remove please"),
    ],
)
def test_find_replace(caption, find, replace, case_sensitive, expected):
    assert find_replace(caption, find, replace, case_sensitive=case_sensitive) == expected
