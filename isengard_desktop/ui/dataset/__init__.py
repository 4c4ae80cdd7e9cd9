"""The Dataset tab: every photo in one grid, search, bulk caption edits and the checks panel.
Exports :class:`DatasetTab`."""

from .dataset_tab import DatasetTab

__all__ = ["DatasetTab"]
