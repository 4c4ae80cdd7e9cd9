"""The bad-input corpus dropped onto the running app: every file imported or refused with
its reason, no crash, and nothing else changes (earlier photos, captions, the source files)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from PySide6.QtWidgets import QMessageBox

from isengard_desktop.core.dataset.importer import display_name
from tests.helpers.corpus import DUPLICATE, OK, REJECTED, build_corpus, import_arguments
from tests.helpers.photos import make_photos
from tests.helpers.qt import drop_files


def _tree(folder: Path) -> dict[str, str]:
    out = {}
    for dirpath, _, names in os.walk(folder):
        for name in names:
            p = Path(dirpath, name)
            if not p.is_symlink():
                out[os.fsencode(p).hex()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def test_corpus_drop_imports_or_explains_every_file(qtbot, make_app, tmp_path):
    ctx = make_app()
    lib = ctx.library
    lib.create_character("Gwen", "gwn_test", "")
    qtbot.waitUntil(lambda: len(lib.characters()) == 1)
    ch = lib.characters()[0]
    first = lib.import_photos(ch.id, make_photos(tmp_path / "first", 2))
    qtbot.waitUntil(lambda: first.outcome is not None, timeout=20_000)
    lib.set_caption(lib.images(ch.id)[0].id, "kept caption")
    qtbot.waitUntil(lambda: lib.images(ch.id)[0].caption == "kept caption")
    before_db = {i.id: (i.path, i.sha256, i.caption) for i in lib.images()}
    before_files = {i.path: i.path.read_bytes() for i in lib.images()}

    folder = tmp_path / "corpus"
    expected = build_corpus(folder)
    source_state = _tree(folder)
    tab = ctx.tabs["Dataset"]
    ctx.window.tabs.setCurrentWidget(tab)
    args = import_arguments(folder, expected)
    with qtbot.waitSignal(lib.import_started, timeout=5000) as started:
        assert drop_files(tab.grid.viewport(), args)  # one character: no question asked
    task = started.args[0]
    qtbot.waitUntil(lambda: task.outcome is not None, timeout=60_000)
    report = task.outcome.report

    by_source = {}
    for kind, items in (("ok", report.imported), ("duplicate", report.skipped),
                        ("rejected", report.rejected)):
        for item in items:
            by_source[Path(item.source).relative_to(folder).as_posix()] = (kind, item)
    for rel, expect in expected.items():
        if expect not in (OK, DUPLICATE, REJECTED):
            continue
        assert rel in by_source, f"{rel} was neither imported nor explained"
        kind, item = by_source[rel]
        assert kind == expect, f"{rel}: expected {expect}, got {kind}"
        if kind == REJECTED:
            # the summary the user sees names the file and the reason
            assert display_name(item.source) in ctx.window.progress.last_summary
            assert item.reason in ctx.window.progress.last_summary

    n_ok = sum(1 for v in expected.values() if v == OK)
    qtbot.waitUntil(lambda: len(lib.images(ch.id)) == 2 + n_ok, timeout=10_000)
    # nothing else changed: earlier rows, their files and captions, and the source corpus
    for image_id, row in before_db.items():
        img = lib.image(image_id)
        assert (img.path, img.sha256, img.caption) == row
    for path, data in before_files.items():
        assert path.read_bytes() == data
    assert _tree(folder) == source_state
    # every stored file is inside the character folder, nothing half-written is left there
    char_dir = ctx.paths.characters / ch.folder
    for img in lib.images(ch.id):
        assert img.path.parent == char_dir
    leftovers = [n for n in os.listdir(char_dir) if n.endswith(".part") or n.startswith(".")]
    assert leftovers == []


def test_unexpected_error_is_logged_with_reference_and_shown_calmly(qtbot, make_app,
                                                                    monkeypatch):
    import sys

    from isengard_desktop.app import install_error_hook

    ctx = make_app()
    shown = []
    monkeypatch.setattr(QMessageBox, "open", lambda self: shown.append(self))
    previous = sys.excepthook
    install_error_hook(ctx.window)
    try:
        try:
            raise RuntimeError("boom token=supersecretvalue123")
        except RuntimeError as exc:
            sys.excepthook(type(exc), exc, exc.__traceback__)
    finally:
        sys.excepthook = previous
    assert len(shown) == 1
    text = shown[0].text()
    assert "Reference:" in text and "safe" in text
    ref = text.rsplit("Reference:", 1)[1].strip()
    logs = "".join(p.read_text(encoding="utf-8")
                   for p in (ctx.paths.app_logs).glob("*.jsonl"))
    assert ref in logs and "RuntimeError" in logs
    assert "supersecretvalue123" not in logs
    assert "supersecretvalue123" not in shown[0].detailedText()
