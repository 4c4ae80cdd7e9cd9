"""The "Refine with local LLM…" dialog and button against the Ollama double (pytest-qt, on
the app's loop): three stages stream in, an edit redone from a stage, Cancel mid-stream,
"Use this prompt", Ollama down / model missing shown clearly."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from PySide6.QtCore import Qt

from isengard_desktop.core.prompt_refine import CONCEPT_FIELDS
from isengard_desktop.core.settings import Settings
from isengard_desktop.services.prompt_refine import PromptRefineService
from isengard_desktop.ui.generate.form import GenerateFormWidget
from isengard_desktop.ui.generate.refine_dialog import RefineDialog
from tests.helpers.ollama_double import OllamaDouble, ollama_double  # noqa: F401
from tests.helpers.service_harness import run_on_loop

WAIT = 10_000


@pytest.fixture
def make_service(qtbot, qt_asyncio_loop) -> Iterator:
    made: list[PromptRefineService] = []

    def make(url: str, model: str = "llama3.2") -> PromptRefineService:
        settings = Settings(ollama_url=url, ollama_model=model)
        svc = PromptRefineService(lambda: settings)
        made.append(svc)
        return svc

    yield make
    for svc in made:
        run_on_loop(qtbot, svc.aclose(), WAIT, qt_asyncio_loop)


def test_three_stages_stream_and_use_this_prompt(qtbot, ollama_double, make_service):
    service = make_service(ollama_double.url)
    dialog = RefineDialog(service, "woman reading in a cafe", family="sdxl", trigger="ohwx")
    qtbot.addWidget(dialog)
    chosen: list[str] = []
    dialog.prompt_chosen.connect(chosen.append)
    chunks: list[tuple[str, str]] = []
    service.chunk.connect(lambda stage, text: chunks.append((stage, text)))
    dialog.show()
    with qtbot.waitSignal(service.finished, timeout=WAIT) as done:
        dialog.run()
    assert done.args == [True]
    assert {stage for stage, _t in chunks} == {"expand", "structure", "final"}
    assert "reading in a cafe" in dialog.edits["expand"].toPlainText()
    concept = json.loads(dialog.edits["structure"].toPlainText())
    assert set(concept) == set(CONCEPT_FIELDS) and "ohwx" in concept["character"]
    final = dialog.edits["final"].toPlainText()
    assert final.startswith("ohwx") and "." not in final          # SDXL: tags
    assert dialog.use_button.isEnabled() and dialog.stop_button.text() == "Close"

    # an edited concept, redone from the final stage only
    concept["setting"] = "a lighthouse at night"
    dialog.edits["structure"].setPlainText(json.dumps(concept))
    asked = len(ollama_double.requests)
    with qtbot.waitSignal(service.finished, timeout=WAIT):
        qtbot.mouseClick(dialog.redo["final"], Qt.MouseButton.LeftButton)
    assert len(ollama_double.requests) == asked + 1
    assert "a lighthouse at night" in dialog.edits["final"].toPlainText()
    qtbot.mouseClick(dialog.use_button, Qt.MouseButton.LeftButton)
    assert chosen == [dialog.edits["final"].toPlainText().strip()]
    qtbot.wait(1)     # (without a turn of the loop here the teardown's aclose task never ran)


def test_retry_is_shown_and_invalid_twice_is_an_error(qtbot, ollama_double, make_service):
    ollama_double.bad_json = 2
    service = make_service(ollama_double.url)
    dialog = RefineDialog(service, "a knight", family="flux")
    qtbot.addWidget(dialog)
    retries: list[str] = []
    service.retrying.connect(retries.append)
    with qtbot.waitSignal(service.finished, timeout=WAIT) as done:
        dialog.run()
    assert done.args == [False] and len(retries) == 1
    assert "did not give usable concept fields twice" in dialog.status.text()
    assert not dialog.use_button.isEnabled()


def test_cancel_mid_stream_stops_it(qtbot, ollama_double, make_service):
    ollama_double.chunk_delay = 0.2
    service = make_service(ollama_double.url)
    dialog = RefineDialog(service, "a long idea " * 10, family="flux")
    qtbot.addWidget(dialog)
    dialog.run()
    qtbot.waitUntil(lambda: bool(dialog.edits["expand"].toPlainText()), timeout=WAIT)
    assert dialog.stop_button.text() == "Cancel"
    with qtbot.waitSignal(service.finished, timeout=WAIT) as done:
        qtbot.mouseClick(dialog.stop_button, Qt.MouseButton.LeftButton)
    assert done.args == [False] and dialog.status.text() == "Stopped."
    assert dialog.edits["final"].toPlainText() == ""
    qtbot.waitUntil(lambda: ollama_double.open_streams == 0, timeout=WAIT)
    assert ollama_double.cancelled_streams == 1


def test_model_missing_says_the_pull_line(qtbot, ollama_double, make_service):
    service = make_service(ollama_double.url, model="mistral:7b")
    dialog = RefineDialog(service, "a cat", family="sd15")
    qtbot.addWidget(dialog)
    with qtbot.waitSignal(service.finished, timeout=WAIT):
        dialog.run()
    assert "`ollama pull mistral:7b`" in dialog.status.text()


def test_the_button_says_ollama_not_found_when_it_does_not_answer(qtbot, ollama_double,
                                                                   make_service):
    form = GenerateFormWidget()
    qtbot.addWidget(form)
    assert form.refine_button.isHidden()                 # no service: no button
    up = make_service(ollama_double.url)
    up.availability.connect(form.set_refine_state)
    with qtbot.waitSignal(up.availability, timeout=WAIT) as seen:
        up.check()
    assert seen.args[0] is True
    assert form.refine_button.isEnabled() and not form.refine_button.isHidden()
    ollama_double.stop()
    down = make_service(ollama_double.url)
    down.availability.connect(form.set_refine_state)
    with qtbot.waitSignal(down.availability, timeout=WAIT):
        down.check()
    assert form.refine_button.text() == "Ollama not found"
    assert not form.refine_button.isEnabled()
    assert "`ollama serve`" in form.refine_button.toolTip()


def test_the_app_asks_ollama_only_once_the_generate_tab_is_shown(qt_asyncio_loop, qtbot,
                                                                 make_app, ollama_double):
    from isengard_desktop.core.paths import resolve_paths
    from isengard_desktop.core.settings import save_settings
    from tests.helpers.generate_ui import click, open_generate

    paths = resolve_paths().ensure()
    save_settings(paths.settings_file, Settings(ollama_url=ollama_double.url,
                                                ollama_model="llama3.2"))
    ctx = make_app()
    qtbot.wait(300)
    assert ollama_double.tags_requests == 0          # no network call at start-up
    tab = open_generate(qtbot, ctx)
    qtbot.waitUntil(lambda: tab.form.refine_button.isEnabled(), timeout=WAIT)
    assert ollama_double.tags_requests == 1
    tab.form.prompt_edit.setPlainText("a lighthouse keeper at dawn")
    click(qtbot, tab.form.refine_button)
    dialog = tab.refine_dialog
    qtbot.waitUntil(lambda: dialog.use_button.isEnabled(), timeout=WAIT)
    click(qtbot, dialog.use_button)
    assert tab.form.prompt_edit.toPlainText() == dialog.edits["final"].toPlainText().strip()
    assert len(ollama_double.requests) == 3
