"""A tab page that builds its real content the first time it is shown.

Keeps start-up fast: a rich page (the Training tab costs ~100 ms of widget polishing) is
made only when the user opens it, or when code asks for :attr:`page`.

Signals:
    built(QWidget): the real page was just created (connect its signals here).
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Signal
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import QVBoxLayout, QWidget


class LazyTabWidget(QWidget):
    built = Signal(QWidget)

    def __init__(self, factory: Callable[[], QWidget], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._factory = factory
        self._page: QWidget | None = None
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)

    @property
    def is_built(self) -> bool:
        return self._page is not None

    @property
    def page(self) -> QWidget:
        if self._page is None:
            self._page = self._factory()
            self._layout.addWidget(self._page)
            self.built.emit(self._page)
        return self._page

    def showEvent(self, event: QShowEvent) -> None:
        self.page  # noqa: B018 - build on first show
        super().showEvent(event)
