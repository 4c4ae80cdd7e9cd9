"""A picture's lineage as a small tree (:class:`LineageTreeWidget`): its root picture, every
stage and "more like this" child under it, the picture asked about in bold and selected.

Fed with :class:`~...core.comfy.funnel.LineageRow` lists (depth-first, as
:func:`~...core.comfy.funnel.lineage_rows` gives them).

Signals:
    picture_activated(int): a row was double-clicked (its generation id).
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QAbstractItemView, QTreeWidget, QTreeWidgetItem, QWidget

from ...core.comfy.funnel import LineageRow

__all__ = ["LineageTreeWidget"]

IdRole = Qt.ItemDataRole.UserRole + 1


class LineageTreeWidget(QTreeWidget):
    picture_activated = Signal(int)

    def __init__(self, parent: QWidget | None = None, hide_single: bool = True) -> None:
        super().__init__(parent)
        self.hide_single = hide_single      # a picture without relatives: no tree at all
        self.setObjectName("LineageTree")
        self.setHeaderHidden(True)
        self.setColumnCount(1)
        self.setIndentation(14)
        self.setUniformRowHeights(True)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setMinimumHeight(70)
        self.setMaximumHeight(150)
        self.setToolTip("Where this picture comes from: the draft it started as, each stage "
                        "made from it with the same seed, and the \"more like this\" "
                        "pictures made from it. Double-click a row to show that picture.")
        self.itemDoubleClicked.connect(
            lambda item, _col: self.picture_activated.emit(int(item.data(0, IdRole))))
        self.rows: list[LineageRow] = []

    def set_rows(self, rows: Sequence[LineageRow]) -> None:
        """Show these rows (depth-first); an empty list (or, with ``hide_single``, one row)
        hides the tree."""
        self.rows = list(rows)
        self.clear()
        parents: dict[int, QTreeWidgetItem] = {}
        current: QTreeWidgetItem | None = None
        for row in rows:
            holder = parents.get(row.parent_id) if row.parent_id is not None else None
            node = QTreeWidgetItem([f"#{row.id} · {row.label}"])
            node.setToolTip(0, node.text(0))      # long seeds do not fit a narrow pane
            node.setData(0, IdRole, row.id)
            if holder is None:
                self.addTopLevelItem(node)
            else:
                holder.addChild(node)
            parents[row.id] = node
            if row.current:
                font = node.font(0)
                font.setBold(True)
                node.setFont(0, font)
                current = node
        self.expandAll()
        if current is not None:
            self.setCurrentItem(current)
            self.scrollToItem(current)
        self.setVisible(len(self.rows) > (1 if self.hide_single else 0))

    def texts(self) -> list[tuple[int, str]]:
        """(depth, text) of every row, top to bottom (what the user reads)."""
        out: list[tuple[int, str]] = []

        def walk(node: QTreeWidgetItem | None, depth: int) -> None:
            if node is None:
                return
            out.append((depth, node.text(0)))
            for i in range(node.childCount()):
                walk(node.child(i), depth + 1)

        for i in range(self.topLevelItemCount()):
            walk(self.topLevelItem(i), 0)
        return out
