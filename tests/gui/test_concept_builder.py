"""The concept builder (issue 17, item 5): fields with locks, shuffle from the curated lists,
shuffle through the local LLM (the Ollama double) keeping the locked fields word for word,
concepts saved and reused across dialogs, the prompt composed in the family's style and put
in the Generate form; bad lists and damaged concept files named."""

from __future__ import annotations

import json
import random
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from isengard_desktop.core.concepts import (SHUFFLED, Concept, ConceptError, ConceptStore,
                                            compose_prompt, load_lists, merge_locked, shuffle)
from isengard_desktop.core.paths import resolve_paths
from isengard_desktop.core.prompt_refine import CONCEPT_FIELDS
from isengard_desktop.core.settings import Settings
from isengard_desktop.services.ops import init_main_thread_bridge
from isengard_desktop.services.library import LibraryService
from isengard_desktop.services.prompt_refine import PromptRefineService
from isengard_desktop.ui.generate.concept_dialog import ConceptDialog
from isengard_desktop.ui.theme import apply_dark_theme
from tests.helpers.characters import add_character
from tests.helpers.ollama_double import OllamaDouble, ollama_double  # noqa: F401
from tests.helpers.service_harness import run_on_loop

WAIT = 10_000


@pytest.fixture
def library(qtbot):
    init_main_thread_bridge()
    apply_dark_theme(QApplication.instance())
    lib = LibraryService(resolve_paths().ensure())
    lib.start()
    qtbot.waitUntil(lambda: lib.is_ready, timeout=WAIT)
    yield lib
    lib.shutdown()


# -- pure -----------------------------------------------------------------------------------------
def test_shipped_lists_shuffle_keeps_locked_fields_and_changes_the_rest():
    lists = load_lists()
    assert set(lists) == set(SHUFFLED) and all(len(v) >= 8 for v in lists.values())
    start = Concept({**dict.fromkeys(CONCEPT_FIELDS, ""), "outfit": "a red scarf",
                     "action": lists["action"][0]}, frozenset({"outfit"}))
    rng = random.Random(7)
    for _ in range(20):
        after = shuffle(start, lists, rng)
        assert after.fields["outfit"] == "a red scarf"
        for name in SHUFFLED:
            if name != "outfit":
                assert after.fields[name] in lists[name]
        assert after.fields["action"] != lists["action"][0]   # a new choice, never the same
        start = after
    filled = merge_locked(start, {"outfit": "LLM outfit", "mood": "eerie"})
    assert filled.fields["outfit"] == "a red scarf" and filled.fields["mood"] == "eerie"


def test_prompt_in_the_family_style_with_the_trigger():
    concept = Concept({**dict.fromkeys(CONCEPT_FIELDS, ""), "action": "reading a book",
                       "outfit": "wool coat", "setting": "a quiet library",
                       "lighting": "soft window light", "style": "natural photograph"})
    tags = compose_prompt(concept, "sdxl", "ohwx")
    assert tags == ("ohwx, reading a book, wool coat, a quiet library, soft window light, "
                    "natural photograph")
    sentences = compose_prompt(concept, "flux-dev", "ohwx")
    assert sentences.startswith("ohwx")
    assert "reading a book, wearing wool coat, in a quiet library." in sentences
    assert "Soft window light." in sentences and "Natural photograph." in sentences


def test_bad_lists_and_a_damaged_concepts_file_are_named(tmp_path):
    lists = tmp_path / "lists.toml"
    lists.write_text("version = 1\naction = []\n", encoding="utf-8")
    with pytest.raises(ConceptError, match=r"lists\.toml: 'action' must be a non-empty list"):
        load_lists(lists)
    lists.write_text("action = [", encoding="utf-8")
    with pytest.raises(ConceptError, match="not valid TOML"):
        load_lists(lists)
    store = ConceptStore(tmp_path / "concepts.json")
    assert store.load() == []
    saved = store.save(Concept(dict.fromkeys(CONCEPT_FIELDS, "x"), frozenset({"mood"}), "b"))
    store.save(Concept(dict.fromkeys(CONCEPT_FIELDS, "y"), frozenset(), "a"))
    assert [c.name for c in store.load()] == ["a", "b"] and saved[0].locked == {"mood"}
    assert [c.name for c in store.delete("a")] == ["b"]
    store.path.write_text('{"concepts": [{"fields": {"hair": 1}}]}', encoding="utf-8")
    with pytest.raises(ConceptError, match=r"concepts\.json, concept 1: unknown or non-text"):
        store.load()
    before = store.path.read_text(encoding="utf-8")
    with pytest.raises(ConceptError):
        store.save(Concept(name="c"))
    assert store.path.read_text(encoding="utf-8") == before      # nothing overwritten


# -- the dialog -----------------------------------------------------------------------------------
def test_builder_locks_shuffles_saves_and_reuses(qtbot, library, tmp_path):
    anna = add_character(qtbot, library, "Anna", trigger="anr_anna")
    store = ConceptStore(tmp_path / "concepts.json")
    dialog = ConceptDialog(library, store, "sdxl")
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitUntil(lambda: dialog._lists != {}, timeout=WAIT)
    for widget in (dialog.character, *dialog.edits.values(), *dialog.locks.values(),
                   dialog.shuffle_button, dialog.llm_button, dialog.save_button):
        assert widget.toolTip(), widget
    assert not dialog.llm_button.isEnabled() and "Ollama" in dialog.llm_button.toolTip()
    assert not dialog.use_button.isEnabled()                      # nothing written yet

    dialog.character.setCurrentIndex(dialog.character.findData(anna.id))
    dialog.edits["outfit"].setText("a yellow raincoat")
    qtbot.mouseClick(dialog.locks["outfit"], Qt.MouseButton.LeftButton)
    assert dialog.locks["outfit"].text() == "Locked"
    qtbot.mouseClick(dialog.shuffle_button, Qt.MouseButton.LeftButton)
    lists = load_lists()
    assert dialog.edits["outfit"].text() == "a yellow raincoat"
    assert all(dialog.edits[n].text() in lists[n] for n in SHUFFLED if n != "outfit")
    prompt = dialog.preview.text()
    assert prompt.startswith("anr_anna, ") and "a yellow raincoat" in prompt
    fields = {n: dialog.edits[n].text() for n in SHUFFLED}

    qtbot.mouseClick(dialog.save_button, Qt.MouseButton.LeftButton)
    assert "needs a name" in dialog.status.text() or "Give the concept a name" in \
        dialog.status.text()
    dialog.name_edit.setText("rain walk")
    qtbot.mouseClick(dialog.save_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dialog.saved_names() == ["rain walk"], timeout=WAIT)
    chosen: list[tuple[str, object]] = []
    dialog.prompt_chosen.connect(lambda p, c: chosen.append((p, c)))
    qtbot.mouseClick(dialog.use_button, Qt.MouseButton.LeftButton)
    assert chosen == [(prompt, anna.id)]

    # a new dialog (another day): the concept is there and loads back with its lock
    again = ConceptDialog(library, ConceptStore(tmp_path / "concepts.json"), "flux-dev")
    qtbot.addWidget(again)
    qtbot.waitUntil(lambda: again.saved_names() == ["rain walk"], timeout=WAIT)
    qtbot.mouseClick(again.load_button, Qt.MouseButton.LeftButton)
    assert {n: again.edits[n].text() for n in SHUFFLED} == fields
    assert again.locks["outfit"].isChecked() and again.character_id() == anna.id
    assert again.preview.text().startswith("anr_anna") and "." in again.preview.text()
    saved = json.loads((tmp_path / "concepts.json").read_text(encoding="utf-8"))
    assert saved["concepts"][0]["locked"] == ["outfit"]


class NoCharacters:
    """A library with no characters (this test runs on the app's asyncio loop, where the real
    LibraryService fixture cannot be torn down)."""

    def characters(self) -> list:
        return []

    def character(self, _character_id: int) -> None:
        return None


def test_shuffle_with_the_local_llm_keeps_locked_fields(qtbot, tmp_path, ollama_double,
                                                         qt_asyncio_loop):
    settings = Settings(ollama_url=ollama_double.url, ollama_model="llama3.2")
    service = PromptRefineService(lambda: settings)
    dialog = ConceptDialog(NoCharacters(), ConceptStore(tmp_path / "c.json"), "sdxl",
                           refine=service, refine_available=True)
    qtbot.addWidget(dialog)
    dialog.show()
    assert dialog.llm_button.isEnabled()
    dialog.edits["setting"].setText("a lighthouse at night")
    dialog.locks["setting"].setChecked(True)
    with qtbot.waitSignal(service.finished, timeout=WAIT):
        qtbot.mouseClick(dialog.llm_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(dialog.llm_button.isEnabled, timeout=WAIT)
    assert dialog.edits["setting"].text() == "a lighthouse at night"
    filled = [n for n in SHUFFLED if n != "setting" and dialog.edits[n].text()]
    assert filled, dialog.status.text()
    assert "locked fields kept" in dialog.status.text()
    asked = [json.dumps(r) for r in ollama_double.requests]
    assert any("Keep exactly: setting: a lighthouse at night" in a for a in asked)
    dialog.close()
    run_on_loop(qtbot, service.aclose(), WAIT)
