"""Caption post-processing: preamble clean-up, identity mode (fixed traits removed, what
varies kept), trigger placement."""

from __future__ import annotations

import pytest

from isengard_desktop.core.captioning.postprocess import (
    CaptionMode,
    CaptionOptions,
    TriggerPlacement,
    load_traits,
    place_trigger,
    remove_fixed_traits,
    strip_preamble,
    suggest_caption,
)


@pytest.mark.parametrize(("raw", "clean"), [
    # Florence-2's own <DETAILED_CAPTION> answer in transformers' integration test
    ("The image shows a stop sign sitting on the side of a street in Chinatown.",
     "a stop sign sitting on the side of a street in Chinatown."),
    ("In this image, we can see a woman on a bench.", "a woman on a bench."),
    ("In this picture we can see a man.", "a man."),
    ("This is an image of a dog in the snow.", "a dog in the snow."),
    ("The image is a close-up portrait of a woman.", "a close-up portrait of a woman."),
    ("The picture depicts two people talking.", "two people talking."),
    ("A woman walking a dog.", "a woman walking a dog."),
    ("  a   woman\nwalking ", "a woman walking"),
    ("Marilyn smiles.", "Marilyn smiles."),   # a name is not an article: case kept
])
def test_strip_preamble(raw, clean):
    assert strip_preamble(raw) == clean


@pytest.mark.parametrize(("raw", "expected"), [
    ("a woman with long blonde hair and blue eyes wearing a red dress, standing in a park.",
     "a woman wearing a red dress, standing in a park."),
    ("a young asian woman in a white shirt.", "a woman in a white shirt."),
    ("an elderly man reading.", "a man reading."),
    ("a 25-year-old Caucasian man with fair skin and green eyes, wearing a black suit.",
     "a man, wearing a black suit."),
    ("a man with short brown hair and a beard sitting at a desk.",
     "a man sitting at a desk."),
    ("a woman with long hair and a red scarf.", "a woman with a red scarf."),
    ("a woman with grey hair tied in a bun, laughing.",
     "a woman with hair tied in a bun, laughing."),
    ("a blonde woman smiling. Her hair is long and wavy. She is holding a cup.",
     "a woman smiling. She is holding a cup."),
    ("a man on a boat. He has blue eyes and freckles.", "a man on a boat."),
    ("a woman at a desk. She appears to be in her thirties.", "a woman at a desk."),
    ("a woman, in her early twenties, at the beach.", "a woman at the beach."),
    ("a man with a round face and dark skin, in warm evening light.",
     "a man, in warm evening light."),
    ("a woman in a straw hat over her long wavy red hair, her green eyes closed.",
     "a woman in a straw hat over her hair, her eyes closed."),
])
def test_identity_mode_removes_fixed_traits(raw, expected):
    assert remove_fixed_traits(raw) == expected


@pytest.mark.parametrize("raw", [
    "a woman in a white shirt and black jeans, smiling, in soft window light.",
    "a man with a red scarf standing on a beach at sunset, close-up.",
    "a woman with her hair in a ponytail, laughing, full-body shot.",
    "a black cat on a long wooden table.",   # colour/length words away from the person
])
def test_identity_mode_keeps_what_varies(raw):
    assert remove_fixed_traits(raw) == raw


@pytest.mark.parametrize(("placement", "class_word", "expected"), [
    (TriggerPlacement.START, "", "ohwx, a woman standing in a park"),
    (TriggerPlacement.AFTER_CLASS, "", "a woman ohwx standing in a park"),
    (TriggerPlacement.AFTER_CLASS, "park", "a woman standing in a park ohwx"),
    (TriggerPlacement.AFTER_CLASS, "dog", "ohwx, a woman standing in a park"),  # not found
    (TriggerPlacement.NONE, "", "a woman standing in a park"),
])
def test_trigger_placement(placement, class_word, expected):
    assert place_trigger("a woman standing in a park", "ohwx", placement, class_word) == expected


def test_trigger_is_not_added_twice_nor_when_empty():
    assert place_trigger("a photo of ohwx at home", "ohwx", TriggerPlacement.START) == \
        "a photo of ohwx at home"
    assert place_trigger("a woman", "  ", TriggerPlacement.START) == "a woman"
    assert place_trigger("", "ohwx", TriggerPlacement.START) == "ohwx"
    # "ohwxman" does not contain the whole token "ohwx"
    assert place_trigger("ohwxman smiling", "ohwx", TriggerPlacement.START) == \
        "ohwx, ohwxman smiling"


def test_suggest_caption_modes():
    raw = ("The image shows a young woman with long blonde hair wearing a denim jacket in a "
           "cafe. She has green eyes.")
    identity = suggest_caption(raw, CaptionOptions(trigger="ohwx"))
    assert identity == "ohwx, a woman wearing a denim jacket in a cafe."
    general = suggest_caption(raw, CaptionOptions(mode=CaptionMode.GENERAL, trigger="ohwx",
                                                  placement=TriggerPlacement.AFTER_CLASS))
    assert general == ("a young woman ohwx with long blonde hair wearing a denim jacket in a "
                       "cafe. She has green eyes.")


def test_broken_trait_file_names_file_and_field(tmp_path):
    bad = tmp_path / "traits.toml"
    bad.write_text('schema = 1\nperson_nouns = ["woman", 3]\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"traits\.toml.*person_nouns"):
        load_traits(bad)
    bad.write_text("schema = [", encoding="utf-8")
    with pytest.raises(ValueError, match="traits.toml"):
        load_traits(bad)


def test_custom_trait_file_is_used(tmp_path):
    shipped = load_traits()
    custom = tmp_path / "traits.toml"
    lines = ["schema = 1"]
    for key in ("person_nouns", "age", "ethnicity", "skin", "body", "hair", "eyes",
                "skin_tone", "face_shape", "features", "trait_subjects"):
        lines.append(f'{key} = ["{"robot" if key == "person_nouns" else "zz" + key}"]')
    custom.write_text("\n".join(lines), encoding="utf-8")
    traits = load_traits(custom)
    assert traits != shipped
    assert remove_fixed_traits("a zzage robot with zzhair hair.", traits) == "a robot."
