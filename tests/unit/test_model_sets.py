"""Per-family download sets: sizes from the catalogue, GPU-based ticks, shared files once."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from isengard_desktop.core.model_sets import (
    family_set, file_size, missing_files, offer_text, recommended_families, size_text,
)
from isengard_desktop.core.models_catalogue import Present, load_catalogue


def test_sizes_exact_or_from_the_model_page():
    cat = load_catalogue()
    assert file_size(cat.files["sd15-checkpoint"]) == 4265146304          # exact
    assert file_size(cat.files["sdxl-checkpoint"]) == 6_940_000_000       # "6.94 GB"
    assert file_size(dataclasses.replace(cat.files["sdxl-vae"], approx_size="")) == 0
    assert size_text(6_940_000_000) == "6.9 GB" and size_text(335_000_000) == "335 MB"


def test_offer_text_names_family_and_size():
    cat = load_catalogue()
    assert offer_text(cat, "sdxl") == "Get the SDXL base model (6.9 GB)"
    assert offer_text(cat, "sdxl", "generate") == "Get the SDXL base model (7.3 GB)"


def test_low_vram_sets_take_the_fp8_t5_and_shared_files_count_once():
    cat = load_catalogue()
    big = family_set(cat, "flux-dev", 24.0)
    small = family_set(cat, "flux-dev", 12.0)
    assert not big.low_vram and small.low_vram
    assert "t5xxl-fp8" in [f.id for f in small.files]
    assert "t5xxl-fp8" not in [f.id for f in big.files]
    assert big.non_commercial and big.gated
    schnell = family_set(cat, "flux-schnell", 24.0)
    both = missing_files([big, schnell], {})
    assert [f.id for f in both].count("clip-l") == 1
    have = {"clip-l": Present(cat.files["clip-l"], Path(cat.files["clip-l"].name), "name")}
    assert "clip-l" not in [f.id for f in missing_files([big], have)]


def test_recommended_families_by_vram():
    assert recommended_families(None) == {"sd15"}
    assert recommended_families(0) == {"sd15"}
    assert recommended_families(6) == {"sd15", "sdxl"}
    assert recommended_families(12) == {"sdxl", "flux-schnell"}
    assert recommended_families(16) == {"sdxl", "flux-schnell"}
    assert recommended_families(24564 / 1024) == {"flux-dev"}
    assert recommended_families(80) == {"flux-dev"}
