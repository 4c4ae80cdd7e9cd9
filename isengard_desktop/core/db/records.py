"""Frozen records read from the database and handed to services and widgets."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, kw_only=True)
class Character:
    id: int
    name: str
    trigger_word: str
    description: str
    folder: str
    created: str
    updated: str


@dataclass(frozen=True, kw_only=True)
class ImageRecord:
    id: int
    character_id: int
    path: Path          # absolute path of the stored image
    sha256: str
    width: int
    height: int
    caption: str
    source: str         # where it came from (original path, "generated", ...)
    created: str

    @property
    def filename(self) -> str:
        return self.path.name


@dataclass(frozen=True, kw_only=True)
class LoraRecord:
    id: int
    character_id: int
    path: str
    family: str
    steps: int
    created: str


@dataclass(frozen=True, kw_only=True)
class NewImage:
    """An image row to insert (:meth:`.repository.Repository.add_images`); the id and the
    creation time are given by the database."""

    path: Path          # absolute path of the stored image
    sha256: str
    width: int
    height: int
    caption: str = ""
    source: str = ""    # where it came from (original path, "synthetic", ...)
