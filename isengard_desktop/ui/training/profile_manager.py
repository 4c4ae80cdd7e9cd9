"""The profile manager of the Training tab (:class:`ProfileManagerDialog`): every shipped and
user profile, a preview of its values with field-level problems next to the field names,
apply, save the current settings as a profile, import and export ``.toml``, compare two side
by side, and the change history of a user profile with restore.

Disk work (listing, saving, importing, exporting, history) runs on a small executor through
the :class:`~isengard_desktop.core.training.profile_store.ProfileStore`; results come back on
the UI thread. The dialog never touches the setup form: it asks for the current settings
through the ``current`` callable the tab gives it and emits ``apply_requested``. The pages
(preview, compare, history) are in ``training_profile_pages.py``.

Signals:
    apply_requested(Profile): fill the setup form from this profile.
    profiles_changed(list): the profiles were (re)read; the list, shipped first.
    message_posted(str): a short result for the status bar.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from collections.abc import Callable, Mapping, Sequence

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush
from PySide6.QtWidgets import (QAbstractItemView, QDialog, QFileDialog, QHBoxLayout,
                               QInputDialog, QLabel, QPushButton, QSplitter, QTabWidget,
                               QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget)

from ...core.models import FAMILY_LABELS
from ...core.training.profile_store import HistoryEntry, ProfileScan, ProfileStore
from ...core.training.profile_fields import FieldError
from ...core.training.profiles import Profile, diff, validate
from ...services.background import BackgroundOp
from ..dialogs.confirm import confirm
from .profile_pages import (PROBLEM, PROFILE_TIPS, ComparePage, HistoryPage,
                                     PreviewPage, preview_rows)

__all__ = ["ProfileManagerDialog", "preview_rows"]

PROFILES_LANE = "profiles-io"    # reads and writes of the profile files, in order
ProfileRole = Qt.ItemDataRole.UserRole + 1


class ProfileManagerDialog(QDialog):
    apply_requested = Signal(object)
    profiles_changed = Signal(list)
    message_posted = Signal(str)

    def __init__(self, store: ProfileStore, current: Callable[[str, str], Profile],
                 backends: Sequence[str], tooltips: Mapping[str, str] | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Training profiles")
        self.setObjectName("ProfileManagerDialog")
        self.resize(1040, 640)
        self._store = store
        self._current = current
        self._backends = list(backends)
        self._tips = {f"train.{k}": v for k, v in (tooltips or {}).items()}
        self._tips.update(PROFILE_TIPS)
        self._profiles: list[Profile] = []
        self._broken: list[tuple[Path, str]] = []
        self._pending_select: str | None = None
        self.is_loaded = False
        self.busy = 0

        # left: the list ----------------------------------------------------------------------
        self.tree = QTreeWidget()
        self.tree.setObjectName("ProfileList")
        self.tree.setHeaderHidden(True)
        self.tree.setRootIsDecorated(False)
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.shipped_group = QTreeWidgetItem(["Shipped (read-only)"])
        self.user_group = QTreeWidgetItem(["Yours"])
        for group in (self.shipped_group, self.user_group):
            group.setFlags(Qt.ItemFlag.ItemIsEnabled)
            font = group.font(0)
            font.setBold(True)
            group.setFont(0, font)
            self.tree.addTopLevelItem(group)
        self.import_button = QPushButton("Import…")
        self.import_button.setToolTip("Add a profile from a .toml file (checked first; a "
                                      "profile of yours with the same name keeps its old "
                                      "version in its history).")
        self.export_button = QPushButton("Export…")
        self.export_button.setToolTip("Save the selected profile as a .toml file to share it.")
        self.delete_button = QPushButton("Delete")
        self.delete_button.setProperty("danger", True)
        self.delete_button.setToolTip("Remove one of your profiles. Its last version stays in "
                                      "its history, so it can be restored.")
        left_buttons = QHBoxLayout()
        for b in (self.import_button, self.export_button, self.delete_button):
            left_buttons.addWidget(b)
        left = QWidget()
        ll = QVBoxLayout(left)
        ll.setContentsMargins(0, 0, 0, 0)
        ll.addWidget(self.tree, 1)
        ll.addLayout(left_buttons)

        # right: preview / compare / history ---------------------------------------------------
        self.preview_page = PreviewPage(self._tips)
        self.preview = self.preview_page.table
        self.validation_label = self.preview_page.validation_label
        self.compare_page = ComparePage(self._tips)
        self.compare_a, self.compare_b = self.compare_page.combo_a, self.compare_page.combo_b
        self.compare_table, self.compare_label = self.compare_page.table, self.compare_page.label
        self.history_page = HistoryPage(self._tips)
        self.history_list, self.history_label = self.history_page.list, self.history_page.label
        self.history_table = self.history_page.table
        self.restore_button = self.history_page.restore_button
        self.tabs = QTabWidget()
        self.tabs.addTab(self.preview_page, "Preview")
        self.tabs.addTab(self.compare_page, "Compare")
        self.tabs.addTab(self.history_page, "History")

        split = QSplitter()
        split.addWidget(left)
        split.addWidget(self.tabs)
        split.setStretchFactor(0, 0)
        split.setStretchFactor(1, 1)
        split.setSizes([300, 740])
        split.setChildrenCollapsible(False)

        # bottom ----------------------------------------------------------------------------
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        self.validate_button = QPushButton("Validate")
        self.validate_button.setToolTip("Check the selected profile: every problem is shown "
                                        "next to the setting it concerns.")
        self.save_button = QPushButton("Save current settings as…")
        self.save_button.setToolTip("Make a profile of yours from the Training tab's current "
                                    "settings. File and folder paths are not saved: they stay "
                                    "fields each user fills in.")
        self.apply_button = QPushButton("Apply to the form")
        self.apply_button.setProperty("primary", True)
        self.apply_button.setToolTip("Fill the Training tab with this profile: trainer, its "
                                     "files and every setting.")
        self.close_button = QPushButton("Close")
        bottom = QHBoxLayout()
        bottom.addWidget(self.validate_button)
        bottom.addWidget(self.save_button)
        bottom.addStretch(1)
        bottom.addWidget(self.apply_button)
        bottom.addWidget(self.close_button)
        layout = QVBoxLayout(self)
        layout.addWidget(split, 1)
        layout.addWidget(self.status_label)
        layout.addLayout(bottom)

        self.tree.itemSelectionChanged.connect(self._on_selection)
        self.tree.itemDoubleClicked.connect(lambda item, _c: self.apply_selected()
                                            if item.data(0, ProfileRole) else None)
        self.import_button.clicked.connect(lambda: self.import_file())
        self.export_button.clicked.connect(lambda: self.export_selected())
        self.delete_button.clicked.connect(self.delete_selected)
        self.validate_button.clicked.connect(self.validate_selected)
        self.save_button.clicked.connect(lambda: self.save_current())
        self.apply_button.clicked.connect(self.apply_selected)
        self.close_button.clicked.connect(self.close)
        self.history_page.entry_picked.connect(self._on_history_row)
        self.history_page.restore_requested.connect(self.restore_version)
        self._show(None)
        self._update_buttons()

    def set_known_backends(self, backends: Sequence[str]) -> None:
        """The trainer keys profiles may name (validation)."""
        self._backends = list(backends)
        self._on_selection()

    # -- background work -------------------------------------------------------------------
    def _run(self, fn: Callable[[], Any], done: Callable[[Any], None], what: str) -> None:
        self.busy += 1

        def ok(result: Any) -> None:
            self.busy -= 1
            done(result)

        def failed(exc: BaseException) -> None:
            self.busy -= 1
            self.show_status(f"{what}: {exc}", error=True, errors=getattr(exc, "errors", None))

        # callbacks are dropped if the dialog closed with its tab meanwhile
        BackgroundOp(parent=self, op=fn).success(ok).failure(failed) \
            .in_lane(PROFILES_LANE).run()

    def show_status(self, text: str, error: bool = False,
                    errors: Sequence[FieldError] | None = None) -> None:
        if errors:
            text += "".join(f"\n• {e}" for e in errors[:8])
            if len(errors) > 8:
                text += f"\n• … and {len(errors) - 8} more"
        self.status_label.setText(text)
        self.status_label.setObjectName("ErrorText" if error else "")
        self.status_label.setStyleSheet(f"color: {PROBLEM.name()};" if error else "")

    # -- the list ----------------------------------------------------------------------------
    def refresh(self, select: str | None = None) -> None:
        """Read the profiles again (off the UI thread); then select ``select``."""
        current = self.selected()
        self._pending_select = select or (current.name if current is not None else None)
        self._run(self._store.scan, self._on_scanned, "Could not read the profiles")

    def _on_scanned(self, scan: ProfileScan) -> None:
        self._profiles = list(scan.profiles)
        self._broken = list(scan.broken)
        self.tree.blockSignals(True)
        for group in (self.shipped_group, self.user_group):
            group.takeChildren()
        for profile in self._profiles:
            tier = f" · {profile.vram_gb:g} GB" if isinstance(profile.vram_gb, (int, float)) \
                else ""
            item = QTreeWidgetItem([profile.name])
            item.setData(0, ProfileRole, profile)
            item.setToolTip(0, f"{profile.description}\n\nTrainer: {profile.backend} · "
                               f"{FAMILY_LABELS.get(profile.family, profile.family)}{tier}")
            (self.shipped_group if profile.shipped else self.user_group).addChild(item)
        for path, why in self._broken:
            item = QTreeWidgetItem([f"{path.name} (cannot be read)"])
            item.setFlags(Qt.ItemFlag.ItemIsEnabled)
            item.setForeground(0, QBrush(PROBLEM))
            item.setToolTip(0, why)
            (self.shipped_group if path.parent == self._store.shipped_dir
             else self.user_group).addChild(item)
        if not self.user_group.childCount():
            empty = QTreeWidgetItem(["None yet: “Save current settings as…” or Import"])
            empty.setFlags(Qt.ItemFlag.NoItemFlags)
            empty.setToolTip(0, "Your profiles appear here: save the Training tab's settings "
                                "as a profile, or import a .toml file.")
            self.user_group.addChild(empty)
        self.tree.expandAll()
        self.tree.blockSignals(False)
        self.compare_page.set_profiles(self._profiles)
        self.is_loaded = True
        wanted = self._pending_select
        self._pending_select = None
        if not (wanted and self.select(wanted)) and self._profiles:
            if not self.select(self._profiles[0].name):
                self._on_selection()
        else:
            self._on_selection()
        self.profiles_changed.emit(list(self._profiles))

    def profiles(self) -> list[Profile]:
        return list(self._profiles)

    def names(self, shipped: bool | None = None) -> list[str]:
        return [p.name for p in self._profiles if shipped is None or p.shipped == shipped]

    def profile(self, name: str) -> Profile | None:
        return next((p for p in self._profiles if p.name == name), None)

    def select(self, name: str) -> bool:
        for group in (self.shipped_group, self.user_group):
            for i in range(group.childCount()):
                item = group.child(i)
                if item is None:
                    continue
                profile = item.data(0, ProfileRole)
                if profile is not None and profile.name == name:
                    self.tree.setCurrentItem(item)
                    item.setSelected(True)
                    return True
        return False

    def selected(self) -> Profile | None:
        items = self.tree.selectedItems()
        return items[0].data(0, ProfileRole) if items else None

    def _on_selection(self) -> None:
        profile = self.selected()
        self._show(profile)
        self._load_history(profile)
        self._update_buttons()

    def _update_buttons(self) -> None:
        profile = self.selected()
        for b in (self.apply_button, self.export_button, self.validate_button):
            b.setEnabled(profile is not None)
        self.delete_button.setEnabled(profile is not None and not profile.shipped)

    # -- preview and validation ---------------------------------------------------------------
    def _show(self, profile: Profile | None, errors: Sequence[FieldError] | None = None,
              unsaved: bool = False) -> None:
        if profile is not None and errors is None:
            errors = validate(profile, self._backends)
        where = "" if profile is None else (
            "unsaved" if unsaved else ("shipped, read-only" if profile.shipped else "yours"))
        self.preview_page.show_profile(profile, errors or (), where)

    def preview_rows(self) -> list[list[str]]:
        """The preview table as text (setting, value, problem)."""
        return self.preview_page.rows()

    def validate_selected(self) -> list[FieldError]:
        profile = self.selected()
        if profile is None:
            return []
        errors = validate(profile, self._backends)
        self._show(profile, errors)
        self.tabs.setCurrentIndex(0)
        self.show_status(f"“{profile.name}”: " + (f"{len(errors)} problem(s) found."
                                                  if errors else "no problems found."),
                         error=bool(errors))
        return errors

    # -- apply, save, import, export, delete -------------------------------------------------
    def apply_selected(self) -> None:
        profile = self.selected()
        if profile is None:
            return
        errors = validate(profile, self._backends)
        if errors:
            self._show(profile, errors)
            self.show_status(f"“{profile.name}” has problems and cannot be applied.",
                             error=True, errors=errors)
            return
        self.apply_requested.emit(profile)
        self.show_status(f"Applied “{profile.name}” to the form.")

    def save_current(self, name: str | None = None, description: str = "") -> None:
        """Save the form's current settings as a profile of yours called ``name`` (asked
        when not given)."""
        if name is None:
            current = self.selected()
            suggested = current.name if current is not None and not current.shipped \
                else "My profile"
            name, ok = QInputDialog.getText(self, "Save current settings as a profile",
                                            "Profile name:", text=suggested)
            if not ok:
                return
        name = name.strip()
        profile = self._current(name, description)
        errors = validate(profile, self._backends)
        if name in self.names(shipped=True):
            errors = [FieldError("profile.name", f"a shipped profile is called {name!r}; "
                                                 "choose another name"), *errors]
        if errors:
            self.tree.clearSelection()
            self._show(profile, errors, unsaved=True)
            self.tabs.setCurrentIndex(0)
            self.show_status("Not saved: fix the problems shown next to each setting.",
                             error=True, errors=errors)
            return
        if name in self.names(shipped=False) and not confirm(
                self, "Replace profile", f"Replace your profile “{name}” with the current "
                                         "settings?\n\nThe old version stays in its history."):
            return

        def saved(profile: Profile) -> None:
            self.show_status(f"Saved “{profile.name}” to your profiles.")
            self.message_posted.emit(f"Profile saved: {profile.name}")
            self.refresh(select=profile.name)

        self._run(lambda: self._store.save(profile), saved, f"Could not save “{name}”")

    def import_file(self, path: str | None = None) -> None:
        if path is None:
            path, _ = QFileDialog.getOpenFileName(self, "Import a training profile",
                                                  str(Path.home()),
                                                  "Training profiles (*.toml);;All files (*)")
            if not path:
                return

        def imported(profile: Profile) -> None:
            self.show_status(f"Imported “{profile.name}” from {path}.")
            self.message_posted.emit(f"Profile imported: {profile.name}")
            self.refresh(select=profile.name)

        self._run(lambda: self._store.import_file(Path(path)), imported,
                  f"Could not import {path}")

    def export_selected(self, path: str | None = None) -> None:
        profile = self.selected()
        if profile is None:
            return
        if path is None:
            stem = (profile.source.stem if profile.source else "profile")
            path, _ = QFileDialog.getSaveFileName(self, "Export a training profile",
                                                  str(Path.home() / f"{stem}.toml"),
                                                  "Training profiles (*.toml)")
            if not path:
                return
        dest = Path(path)
        if dest.suffix.lower() != ".toml":
            dest = dest.with_name(dest.name + ".toml")

        def exported(out: Path) -> None:
            self.show_status(f"Exported “{profile.name}” to {out}.")
            self.message_posted.emit(f"Profile exported: {out}")

        self._run(lambda: self._store.export(profile, dest), exported,
                  f"Could not export to {dest}")

    def delete_selected(self) -> None:
        profile = self.selected()
        if profile is None or profile.shipped:
            return
        if not confirm(self, "Delete profile",
                       f"Delete your profile “{profile.name}”?\n\nIts last version stays in "
                       "its history, so it can be restored."):
            return

        def deleted(_: Any) -> None:
            self.show_status(f"Deleted “{profile.name}” (kept in its history).")
            self.refresh()

        self._run(lambda: self._store.delete(profile.name), deleted,
                  f"Could not delete “{profile.name}”")

    # -- compare -------------------------------------------------------------------------------
    def compare(self, a: str, b: str) -> list[list[str]]:
        """Show ``a`` and ``b`` side by side (the Compare page); the differing rows."""
        self.tabs.setCurrentWidget(self.compare_page)
        return self.compare_page.compare(a, b)

    def compare_rows(self) -> list[list[str]]:
        return self.compare_page.rows()

    # -- history -----------------------------------------------------------------------------
    def _load_history(self, profile: Profile | None) -> None:
        if profile is None:
            self.history_page.clear("Pick one of your profiles to see its earlier versions.")
            return
        if profile.shipped:
            self.history_page.clear("Shipped profiles have no history: they never change. "
                                    "Save your own copy to edit one.")
            return
        self.history_page.clear("Loading…")
        name = profile.name

        def loaded(entries: list[HistoryEntry]) -> None:
            current = self.selected()
            if current is None or current.name != name:
                return   # another profile was picked meanwhile
            self.history_page.set_entries(name, entries)

        self._run(lambda: self._store.history(name), loaded, "Could not read the history")

    def history_entries(self) -> list[HistoryEntry]:
        return list(self.history_page.entries)

    def _on_history_row(self, row: int) -> None:
        entries, current = self.history_page.entries, self.selected()
        if row < 0 or row >= len(entries) or current is None:
            return
        entry = entries[row]

        def loaded(old: Profile) -> None:
            picked = self.selected()
            if self.history_list.currentRow() != row or picked is None \
                    or picked.name != current.name:
                return   # another version or profile was picked meanwhile
            self.history_page.show_diff(diff(old, current))

        self._run(lambda: self._store.load_version(entry), loaded,
                  f"Could not read {entry.path}")

    def history_rows(self) -> list[list[str]]:
        return self.history_page.rows()

    def restore_version(self, row: int) -> None:
        entries = self.history_page.entries
        if row < 0 or row >= len(entries):
            return
        entry = entries[row]

        def restored(profile: Profile) -> None:
            self.show_status(f"Restored the version of “{profile.name}” from "
                             f"{entry.when.astimezone():%Y-%m-%d %H:%M:%S}; the replaced "
                             "one is in the history.")
            self.message_posted.emit(f"Profile restored: {profile.name}")
            self.refresh(select=profile.name)

        self._run(lambda: self._store.restore(entry), restored,
                  f"Could not restore {entry.path}")
