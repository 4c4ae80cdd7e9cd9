"""Plain SQL for characters, images and LoRAs. One writer thread calls these (see services).

Image paths are stored relative to the data folder so a portable install can move.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, UTC
from pathlib import Path
from collections.abc import Iterable, Sequence

from .records import Character, ImageRecord, LoraRecord, NewImage
from .transaction import transaction


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _row_id(cur: sqlite3.Cursor) -> int:
    """The id of the row an INSERT just added."""
    assert cur.lastrowid is not None
    return cur.lastrowid


class DuplicateNameError(ValueError):
    """A character with that name already exists."""


class Repository:
    """All reads and writes of the library tables for one connection."""

    def __init__(self, conn: sqlite3.Connection, data_root: Path) -> None:
        self.conn = conn
        self.data_root = data_root

    # -- paths ---------------------------------------------------------------------------
    def _to_db_path(self, path: Path) -> str:
        path = Path(path)
        try:
            return path.relative_to(self.data_root).as_posix()
        except ValueError:
            return str(path)

    def _from_db_path(self, stored: str) -> Path:
        p = Path(stored)
        return p if p.is_absolute() else self.data_root / p

    # -- characters ------------------------------------------------------------------------
    def _character(self, row: sqlite3.Row) -> Character:
        return Character(id=row["id"], name=row["name"], trigger_word=row["trigger_word"],
                         description=row["description"], folder=row["folder"],
                         created=row["created"], updated=row["updated"])

    def list_characters(self) -> list[Character]:
        rows = self.conn.execute("SELECT * FROM characters ORDER BY name COLLATE NOCASE")
        return [self._character(r) for r in rows]

    def get_character(self, character_id: int) -> Character | None:
        row = self.conn.execute("SELECT * FROM characters WHERE id=?", (character_id,)).fetchone()
        return self._character(row) if row else None

    def create_character(self, name: str, trigger_word: str, description: str,
                         folder: str) -> Character:
        stamp = now_iso()
        try:
            cur = self.conn.execute(
                "INSERT INTO characters(name, trigger_word, description, folder, created, updated)"
                " VALUES (?,?,?,?,?,?)", (name, trigger_word, description, folder, stamp, stamp))
        except sqlite3.IntegrityError as exc:
            raise DuplicateNameError(f"A character named “{name}” already exists.") from exc
        character = self.get_character(_row_id(cur))
        assert character is not None
        return character

    def update_character(self, character_id: int, *, name: str | None = None,
                         trigger_word: str | None = None,
                         description: str | None = None) -> Character:
        current = self.get_character(character_id)
        if current is None:
            raise KeyError(f"character {character_id} no longer exists")
        try:
            self.conn.execute(
                "UPDATE characters SET name=?, trigger_word=?, description=?, updated=? WHERE id=?",
                (name if name is not None else current.name,
                 trigger_word if trigger_word is not None else current.trigger_word,
                 description if description is not None else current.description,
                 now_iso(), character_id))
        except sqlite3.IntegrityError as exc:
            raise DuplicateNameError(f"A character named “{name}” already exists.") from exc
        return self.get_character(character_id)  # type: ignore[return-value]

    def delete_character(self, character_id: int) -> None:
        self.conn.execute("DELETE FROM characters WHERE id=?", (character_id,))

    # -- images ----------------------------------------------------------------------------
    def _image(self, row: sqlite3.Row) -> ImageRecord:
        return ImageRecord(id=row["id"], character_id=row["character_id"],
                           path=self._from_db_path(row["path"]), sha256=row["sha256"],
                           width=row["width"], height=row["height"], caption=row["caption"],
                           source=row["source"], created=row["created"])

    def list_images(self, character_id: int | None = None) -> list[ImageRecord]:
        if character_id is None:
            rows = self.conn.execute("SELECT * FROM images ORDER BY id")
        else:
            rows = self.conn.execute("SELECT * FROM images WHERE character_id=? ORDER BY id",
                                     (character_id,))
        return [self._image(r) for r in rows]

    def get_images(self, ids: Iterable[int]) -> list[ImageRecord]:
        ids = list(ids)
        out: list[ImageRecord] = []
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            out += [self._image(r) for r in
                    self.conn.execute(f"SELECT * FROM images WHERE id IN ({marks})", chunk)]
        return out

    def add_images(self, character_id: int, items: Sequence[NewImage]) -> list[ImageRecord]:
        """Insert image rows in one transaction; returns the rows added (a path already
        recorded, or the same content twice for one character, is skipped)."""
        stamp = now_iso()
        ids: list[int] = []
        with transaction(self.conn):
            for item in items:
                cur = self.conn.execute(
                    "INSERT OR IGNORE INTO images(character_id, path, sha256, width, height,"
                    " caption, source, created) VALUES (?,?,?,?,?,?,?,?)",
                    (character_id, self._to_db_path(item.path), item.sha256, item.width,
                     item.height, item.caption, item.source, stamp))
                if cur.rowcount:
                    ids.append(_row_id(cur))
        return self.get_images(ids)

    def set_captions(self, captions: dict[int, str]) -> None:
        with transaction(self.conn):
            self.conn.executemany("UPDATE images SET caption=? WHERE id=?",
                                  [(c, i) for i, c in captions.items()])

    def delete_images(self, ids: Iterable[int]) -> None:
        ids = list(ids)
        with transaction(self.conn):
            self.conn.executemany("DELETE FROM images WHERE id=?", [(i,) for i in ids])

    # -- loras -----------------------------------------------------------------------------
    def list_loras(self) -> list[LoraRecord]:
        rows = self.conn.execute("SELECT * FROM loras ORDER BY id")
        return [LoraRecord(id=r["id"], character_id=r["character_id"], path=r["path"],
                           family=r["family"], steps=r["steps"], created=r["created"])
                for r in rows]

    def add_lora(self, character_id: int, path: str, family: str, steps: int) -> LoraRecord:
        cur = self.conn.execute(
            "INSERT INTO loras(character_id, path, family, steps, created) VALUES (?,?,?,?,?)",
            (character_id, path, family, steps, now_iso()))
        row_id = _row_id(cur)
        return next(lora for lora in self.list_loras() if lora.id == row_id)
