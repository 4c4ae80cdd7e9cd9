"""The pure parts of prompt refinement: the concept check's messages and the family style."""

from __future__ import annotations

import json

import pytest

from isengard_desktop.core.prompt_refine import (CONCEPT_FIELDS, CONCEPT_SCHEMA, prompt_style,
                                                 validate_concept)


def test_validate_concept_names_what_is_wrong():
    good = {name: f" {name} " for name in CONCEPT_FIELDS}
    assert validate_concept(json.dumps(good)) == {name: name for name in CONCEPT_FIELDS}
    with pytest.raises(ValueError, match="not valid JSON"):
        validate_concept('{"character": ')
    with pytest.raises(ValueError, match="must be a JSON object, not list"):
        validate_concept("[]")
    with pytest.raises(ValueError, match="lacks the field.s. mood"):
        validate_concept(json.dumps({k: v for k, v in good.items() if k != "mood"}))
    with pytest.raises(ValueError, match="camera must be strings"):
        validate_concept(json.dumps(good | {"camera": 35}))


def test_schema_and_family_style():
    assert CONCEPT_SCHEMA["required"] == list(CONCEPT_FIELDS)
    assert list(CONCEPT_FIELDS)[:2] == ["character", "action"]
    assert [prompt_style(f) for f in ("sd15", "SDXL", "flux", "chroma")] == [
        "tags", "tags", "sentences", "sentences"]
