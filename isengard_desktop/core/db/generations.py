"""Plain SQL for the ``generations`` table (migration 3): generated images and their status;
their lineage (migration 8: ``parent_id``, ``funnel_id``, ``stage``, ``pick``).

Only the database service's writer thread calls these (``DatabaseService.read/write``).
Image paths are stored relative to the outputs folder when they lie inside it, so a portable
install can move.
Seeds are 64-bit unsigned in ComfyUI but SQLite integers are signed: seeds of 2**63 and above
are stored as their two's complement and read back unchanged.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from datetime import datetime, UTC
from pathlib import Path
from collections.abc import Iterable, Sequence

from ..comfy.funnel import PICKS
from ..comfy.jobs import GALLERY_STATUSES, GalleryItem
from .transaction import transaction

__all__ = ["GenerationsRepository", "now_iso"]

_COLUMNS = ("job_id", "prompt_id", "character_id", "path", "width", "height", "seed", "prompt",
            "negative", "workflow", "model", "lora_path", "lora_strength", "server",
            "params_json", "parent_image", "status", "created", "parent_id", "funnel_id",
            "stage", "pick")
_U64 = 1 << 64
_I64_MAX = (1 << 63) - 1


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _seed_to_db(seed: int) -> int:
    seed = int(seed) % _U64
    return seed - _U64 if seed > _I64_MAX else seed


def _seed_from_db(value: int) -> int:
    return int(value) + _U64 if value < 0 else int(value)


class GenerationsRepository:
    """Insert, list and change the status of generated images on one connection."""

    def __init__(self, conn: sqlite3.Connection, outputs_root: Path | None = None) -> None:
        self.conn = conn
        self.outputs_root = outputs_root

    # -- paths -----------------------------------------------------------------------------
    def _to_db_path(self, path: str) -> str:
        if self.outputs_root is None:
            return str(path)
        try:
            return Path(path).relative_to(self.outputs_root).as_posix()
        except ValueError:
            return str(path)

    def _from_db_path(self, stored: str) -> str:
        p = Path(stored)
        if p.is_absolute() or self.outputs_root is None:
            return str(p)
        return str(self.outputs_root / p)

    def _item(self, row: sqlite3.Row) -> GalleryItem:
        try:
            params = json.loads(row["params_json"] or "{}")
        except ValueError:
            params = {}
        return GalleryItem(
            id=row["id"], job_id=row["job_id"], path=self._from_db_path(row["path"]),
            prompt=row["prompt"], negative=row["negative"], seed=_seed_from_db(row["seed"]),
            width=row["width"], height=row["height"], workflow=row["workflow"],
            model=row["model"], lora_path=row["lora_path"],
            lora_strength=float(row["lora_strength"]), character_id=row["character_id"],
            status=row["status"], params=params if isinstance(params, dict) else {},
            created=row["created"], server=row["server"], parent_image=row["parent_image"],
            prompt_id=row["prompt_id"], parent_id=row["parent_id"],
            funnel_id=row["funnel_id"], stage=row["stage"], pick=row["pick"])

    # -- writes ----------------------------------------------------------------------------
    def insert(self, items: Sequence[GalleryItem]) -> list[GalleryItem]:
        """Insert items (their ``id`` is ignored) in one transaction; returns them with ids.

        A ``character_id`` whose character no longer exists is stored as NULL."""
        stamp = now_iso()
        ids: list[int] = []
        with transaction(self.conn):
            for item in items:
                if item.status not in GALLERY_STATUSES:
                    raise ValueError(f"status {item.status!r} is not one of "
                                     f"{', '.join(GALLERY_STATUSES)}")
                values = {
                    "job_id": item.job_id, "prompt_id": item.prompt_id,
                    "character_id": item.character_id, "path": self._to_db_path(item.path),
                    "width": int(item.width), "height": int(item.height),
                    "seed": _seed_to_db(item.seed), "prompt": item.prompt,
                    "negative": item.negative, "workflow": item.workflow, "model": item.model,
                    "lora_path": item.lora_path, "lora_strength": float(item.lora_strength),
                    "server": item.server,
                    "params_json": json.dumps(dict(item.params), ensure_ascii=False,
                                              default=str),
                    "parent_image": item.parent_image, "status": item.status,
                    "created": item.created or stamp, "parent_id": item.parent_id,
                    "funnel_id": item.funnel_id, "stage": item.stage, "pick": item.pick,
                }
                # a parent deleted meanwhile is stored as NULL, like a character
                marks = ", ".join("(SELECT id FROM characters WHERE id=:character_id)"
                                  if c == "character_id" else
                                  "(SELECT id FROM generations WHERE id=:parent_id)"
                                  if c == "parent_id" else f":{c}" for c in _COLUMNS)
                cur = self.conn.execute(
                    f"INSERT INTO generations({', '.join(_COLUMNS)}) VALUES ({marks})", values)
                assert cur.lastrowid is not None
                ids.append(cur.lastrowid)
        by_id = {i.id: i for i in self.get(ids)}
        return [by_id[i] for i in ids]

    def set_status(self, ids: Iterable[int], status: str) -> list[GalleryItem]:
        """Change the status of rows; returns the changed rows (unknown ids are skipped)."""
        if status not in GALLERY_STATUSES:
            raise ValueError(f"status {status!r} is not one of {', '.join(GALLERY_STATUSES)}")
        ids = [int(i) for i in ids]
        with transaction(self.conn):
            self.conn.executemany("UPDATE generations SET status=? WHERE id=?",
                                  [(status, i) for i in ids])
        return self.get(ids)

    def set_pick(self, ids: Iterable[int], pick: str) -> list[GalleryItem]:
        """Record the funnel decision ("keep", "discard" or "" = undecided) of rows."""
        if pick not in PICKS:
            raise ValueError(f"pick {pick!r} is not one of {PICKS}")
        ids = [int(i) for i in ids]
        with transaction(self.conn):
            self.conn.executemany("UPDATE generations SET pick=? WHERE id=?",
                                  [(pick, i) for i in ids])
        return self.get(ids)

    def delete(self, ids: Iterable[int]) -> None:
        with transaction(self.conn):
            self.conn.executemany("DELETE FROM generations WHERE id=?",
                                  [(int(i),) for i in ids])

    def delete_discarded(self, funnel_id: str) -> list[int]:
        """Remove the rows of a funnel's discarded pictures (their files are in the trash
        already); returns their ids."""
        with transaction(self.conn):
            ids = [int(r[0]) for r in self.conn.execute(
                "SELECT id FROM generations WHERE funnel_id=? AND status='discarded'",
                (str(funnel_id),))]
            self.conn.executemany("DELETE FROM generations WHERE id=?", [(i,) for i in ids])
        return ids

    # -- reads -----------------------------------------------------------------------------
    def get(self, ids: Iterable[int]) -> list[GalleryItem]:
        ids = [int(i) for i in ids]
        out: list[GalleryItem] = []
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            out += [self._item(r) for r in self.conn.execute(
                f"SELECT * FROM generations WHERE id IN ({marks}) ORDER BY id", chunk)]
        return out

    def list_items(self, statuses: Sequence[str] | None = None,
                   character_id: int | None = None, limit: int | None = None
                   ) -> list[GalleryItem]:
        """Rows with one of ``statuses`` (all when None), of one character if given,
        newest first."""
        where: list[str] = []
        args: list[str | int] = []
        if statuses:
            where.append(f"status IN ({','.join('?' * len(statuses))})")
            args += list(statuses)
        if character_id is not None:
            where.append("character_id=?")
            args.append(character_id)
        sql = "SELECT * FROM generations"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created DESC, id DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [self._item(r) for r in self.conn.execute(sql, args)]

    def lineage(self, item_id: int) -> list[GalleryItem]:
        """Every row in ``item_id``'s tree: its ancestors up to the root, then every
        descendant of that root (any status), oldest first."""
        root = int(item_id)
        seen = {root}
        while True:
            row = self.conn.execute("SELECT parent_id FROM generations WHERE id=?",
                                    (root,)).fetchone()
            if row is None or row["parent_id"] is None or row["parent_id"] in seen:
                break
            root = int(row["parent_id"])
            seen.add(root)
        rows = self.conn.execute(
            """WITH RECURSIVE tree(id) AS (
                   SELECT id FROM generations WHERE id=?
                   UNION SELECT g.id FROM generations g JOIN tree t ON g.parent_id = t.id)
               SELECT * FROM generations WHERE id IN (SELECT id FROM tree) ORDER BY id""",
            (root,))
        return [self._item(r) for r in rows]

    def by_job(self, job_id: str) -> list[GalleryItem]:
        return [self._item(r) for r in self.conn.execute(
            "SELECT * FROM generations WHERE job_id=? ORDER BY id", (job_id,))]


def with_status(item: GalleryItem, status: str) -> GalleryItem:
    return replace(item, status=status)
