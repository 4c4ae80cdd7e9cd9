"""The one test helper that creates a character through the real LibraryService: optionally
with photos (imported through the real import pipeline) and a LoRA record."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from isengard_desktop.core.db.records import Character
from tests.helpers.photos import make_photos

__all__ = ["add_character"]

CREATE_TIMEOUT_MS = 10_000
IMPORT_TIMEOUT_MS = 20_000


def add_character(qtbot: Any, library: Any, name: str = "Anna", *, trigger: str | None = None,
                  photos: int = 0, photo_root: Path | None = None,
                  size: tuple[int, int] = (640, 800), lora: Path | None = None,
                  lora_family: str = "sdxl", timeout: int = CREATE_TIMEOUT_MS) -> Character:
    """Create ``name`` (trigger word ``trigger``, else the library's suggestion) and wait for
    it; import ``photos`` generated photos of ``size`` (made under ``photo_root``) and record
    the LoRA file ``lora`` when given. Returns the created record."""
    made: list[Character] = []
    problem = library.create_character(name, trigger or library.suggest_trigger(name),
                                       on_created=made.append)
    assert problem is None, problem
    qtbot.waitUntil(lambda: bool(made), timeout=timeout)
    character = made[0]
    if photos:
        assert photo_root is not None, "photos need a photo_root (tmp_path)"
        library.import_photos(character.id,
                              make_photos(photo_root / f"src-{name}", photos, size=size))
        qtbot.waitUntil(lambda: library.image_count(character.id) == photos,
                        timeout=max(timeout, IMPORT_TIMEOUT_MS))
    if lora is not None:
        library.add_lora(character.id, str(lora), lora_family, 800)
        qtbot.waitUntil(lambda: library.is_trained(character.id), timeout=timeout)
    return character
