"""The trigger-word rule: core/dataset/captions.py is the one place it is written (the external
trainers' captions are staged by the app with it, so the launcher keeps no copy)."""

from __future__ import annotations

import pytest

from isengard_desktop.core.dataset import captions

# (text, trigger, present as a whole token, text with the trigger ensured)
CASES = [
    ("a photo of a man", "ohwx", False, "ohwx, a photo of a man"),
    ("ohwx, a photo of a man", "ohwx", True, "ohwx, a photo of a man"),
    ("photo of ohwx in the rain", "ohwx", True, "photo of ohwx in the rain"),
    ("a man, ohwx", "ohwx", True, "a man, ohwx"),
    ("ohwxman in a park", "ohwx", False, "ohwx, ohwxman in a park"),
    ("a photo of xohwx", "ohwx", False, "ohwx, a photo of xohwx"),
    ("ohwx_2 at the beach", "ohwx", False, "ohwx, ohwx_2 at the beach"),
    ("(ohwx) smiling", "ohwx", True, "(ohwx) smiling"),
    ("ohwx.", "ohwx", True, "ohwx."),
    ("ohwx,smiling", "ohwx", True, "ohwx,smiling"),
    ("Ohwx, a man", "ohwx", False, "ohwx, Ohwx, a man"),
    ("OHWX", "ohwx", False, "ohwx, OHWX"),
    ("", "ohwx", False, "ohwx"),
    ("   ", "ohwx", False, "ohwx"),
    ("  , a dog ", "ohwx", False, "ohwx, a dog"),
    ("  a photo  ", " ohwx ", False, "ohwx, a photo"),
    ("a dog", "", False, "a dog"),
    ("a dog", "   ", False, "a dog"),
    ("c++ dev at a desk", "c++", True, "c++ dev at a desk"),
    ("a c++, dev", "c++", True, "a c++, dev"),
    ("c+++ dev", "c++", False, "c++, c+++ dev"),
    ("ac++ dev", "c++", False, "c++, ac++ dev"),
    ("a +x here", "+x", True, "a +x here"),
    ("a+x here", "+x", False, "+x, a+x here"),
    ("sks person, smiling", "sks person", True, "sks person, smiling"),
    ("sks personal photo", "sks person", False, "sks person, sks personal photo"),
    ("an anr_anna portrait", "anr_anna", True, "an anr_anna portrait"),
    ("[trigger] at the beach", "ohwx", False, "ohwx, [trigger] at the beach"),
]


@pytest.mark.parametrize(("text", "trigger", "present", "ensured"), CASES)
def test_the_trigger_rule(text, trigger, present, ensured):
    assert captions.has_trigger(text, trigger) is present
    assert captions.with_trigger(text, trigger) == ensured


def test_prepend_looks_only_at_the_start_with_the_same_token_rule():
    assert captions.prepend_trigger("a photo of ohwx", "ohwx") == "ohwx, a photo of ohwx"
    assert captions.prepend_trigger("ohwx, a photo", "ohwx") == "ohwx, a photo"
    assert captions.prepend_trigger("ohwxman", "ohwx") == "ohwx, ohwxman"


def test_an_empty_trigger_has_no_pattern():
    with pytest.raises(ValueError):
        captions.trigger_pattern("  ")
