"""Connection setup and ordered migrations keyed by ``PRAGMA user_version``.

Each migration is a list of SQL statements applied in one transaction; the schema version is
the index of the last applied migration. Never edit a released migration: append a new one.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from .transaction import transaction

MIGRATIONS: list[list[str]] = [
    # 1: characters, images, trained LoRAs
    [
        """CREATE TABLE characters (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE COLLATE NOCASE,
            trigger_word TEXT NOT NULL,
            description TEXT NOT NULL DEFAULT '',
            folder TEXT NOT NULL UNIQUE,
            created TEXT NOT NULL,
            updated TEXT NOT NULL
        )""",
        """CREATE TABLE images (
            id INTEGER PRIMARY KEY,
            character_id INTEGER NOT NULL REFERENCES characters(id) ON DELETE CASCADE,
            path TEXT NOT NULL UNIQUE,
            sha256 TEXT NOT NULL,
            width INTEGER NOT NULL,
            height INTEGER NOT NULL,
            caption TEXT NOT NULL DEFAULT '',
            source TEXT NOT NULL DEFAULT '',
            created TEXT NOT NULL,
            UNIQUE (character_id, sha256)
        )""",
        "CREATE INDEX images_by_character ON images(character_id)",
        "CREATE INDEX images_by_sha256 ON images(sha256)",
        """CREATE TABLE loras (
            id INTEGER PRIMARY KEY,
            character_id INTEGER NOT NULL REFERENCES characters(id) ON DELETE CASCADE,
            path TEXT NOT NULL,
            family TEXT NOT NULL DEFAULT '',
            steps INTEGER NOT NULL DEFAULT 0,
            created TEXT NOT NULL
        )""",
        "CREATE INDEX loras_by_character ON loras(character_id)",
    ],
    # 2: training jobs (the persistent queue and history; see core/db/jobs.py)
    [
        """CREATE TABLE jobs (
            job_id TEXT PRIMARY KEY,
            character_id INTEGER REFERENCES characters(id) ON DELETE SET NULL,
            backend TEXT NOT NULL DEFAULT 'builtin',
            family TEXT NOT NULL DEFAULT '',
            preset TEXT NOT NULL DEFAULT '',
            state TEXT NOT NULL,
            spec_json TEXT NOT NULL,
            job_dir TEXT NOT NULL,
            created TEXT NOT NULL,
            started TEXT,
            finished TEXT,
            pid INTEGER,
            step INTEGER NOT NULL DEFAULT 0,
            total_steps INTEGER NOT NULL DEFAULT 0,
            last_loss REAL,
            lora_path TEXT,
            error_kind TEXT,
            error_message TEXT,
            sec_per_step REAL
        )""",
        "CREATE INDEX jobs_by_state ON jobs(state)",
        "CREATE INDEX jobs_by_character ON jobs(character_id)",
    ],
    # 3: generated images: gallery, staging (synthetic dataset expansion), kept, discarded
    #    (see core/db/generations.py)
    [
        """CREATE TABLE generations (
            id INTEGER PRIMARY KEY,
            job_id TEXT NOT NULL,
            prompt_id TEXT NOT NULL DEFAULT '',
            character_id INTEGER REFERENCES characters(id) ON DELETE SET NULL,
            path TEXT NOT NULL,
            width INTEGER NOT NULL DEFAULT 0,
            height INTEGER NOT NULL DEFAULT 0,
            seed INTEGER NOT NULL DEFAULT 0,
            prompt TEXT NOT NULL DEFAULT '',
            negative TEXT NOT NULL DEFAULT '',
            workflow TEXT NOT NULL DEFAULT '',
            model TEXT NOT NULL DEFAULT '',
            lora_path TEXT NOT NULL DEFAULT '',
            lora_strength REAL NOT NULL DEFAULT 0,
            server TEXT NOT NULL DEFAULT '',
            params_json TEXT NOT NULL DEFAULT '{}',
            parent_image TEXT NOT NULL DEFAULT '',
            status TEXT NOT NULL DEFAULT 'gallery'
                CHECK (status IN ('gallery', 'staging', 'kept', 'discarded')),
            created TEXT NOT NULL
        )""",
        "CREATE INDEX generations_by_status ON generations(status, character_id)",
        "CREATE INDEX generations_by_job ON generations(job_id)",
    ],
    # 4: a resumed job keeps its first start; the time between its runs is not running time
    [
        "ALTER TABLE jobs ADD COLUMN paused_seconds REAL NOT NULL DEFAULT 0",
    ],
    # 5: the download queue (see core/downloads/store.py): survives restarts, resumes .part
    [
        """CREATE TABLE downloads (
            id INTEGER PRIMARY KEY,
            url TEXT NOT NULL,
            dest TEXT NOT NULL,
            label TEXT NOT NULL DEFAULT '',
            size INTEGER NOT NULL DEFAULT 0,
            sha256 TEXT NOT NULL DEFAULT '',
            state TEXT NOT NULL DEFAULT 'queued'
                CHECK (state IN ('queued', 'running', 'paused', 'done', 'failed', 'cancelled')),
            bytes_done INTEGER NOT NULL DEFAULT 0,
            error TEXT NOT NULL DEFAULT '',
            error_kind TEXT NOT NULL DEFAULT '',
            created TEXT NOT NULL,
            updated TEXT NOT NULL
        )""",
        "CREATE INDEX downloads_by_state ON downloads(state)",
        "CREATE INDEX downloads_by_dest ON downloads(dest)",
    ],
    # 6: out-of-memory recovery (core/training/oom.py): one note per recovery, a JSON list
    [
        "ALTER TABLE jobs ADD COLUMN oom_notes TEXT NOT NULL DEFAULT '[]'",
    ],
    # 7: face-centred crops, non-destructive (core/db/crops.py): one rectangle per image in
    #    pixels of the stored photo, the bucket whose aspect it has, proposed or set by hand
    [
        """CREATE TABLE image_crops (
            image_id INTEGER PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE,
            x INTEGER NOT NULL CHECK (x >= 0),
            y INTEGER NOT NULL CHECK (y >= 0),
            width INTEGER NOT NULL CHECK (width > 0),
            height INTEGER NOT NULL CHECK (height > 0),
            bucket_width INTEGER NOT NULL CHECK (bucket_width > 0),
            bucket_height INTEGER NOT NULL CHECK (bucket_height > 0),
            source TEXT NOT NULL DEFAULT 'proposed' CHECK (source IN ('proposed', 'manual')),
            updated TEXT NOT NULL
        )""",
    ],
    # 8: lineage of generated pictures (core/comfy/funnel.py): the parent generation, the
    #    draft funnel and its stage, the funnel's keep/discard decision
    [
        "ALTER TABLE generations ADD COLUMN parent_id INTEGER "
        "REFERENCES generations(id) ON DELETE SET NULL",
        "ALTER TABLE generations ADD COLUMN funnel_id TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE generations ADD COLUMN stage TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE generations ADD COLUMN pick TEXT NOT NULL DEFAULT ''",
        "CREATE INDEX generations_by_parent ON generations(parent_id)",
        "CREATE INDEX generations_by_funnel ON generations(funnel_id, stage)",
    ],
    # 9: the resource monitor's warnings a job met (core/training/job_warnings.py): a JSON
    #    list of {when, kind, message, gpu}, shown in the History after the job
    [
        "ALTER TABLE jobs ADD COLUMN resource_warnings TEXT NOT NULL DEFAULT '[]'",
    ],
]

SCHEMA_VERSION = len(MIGRATIONS)


class SchemaTooNewError(RuntimeError):
    """The database was written by a newer version of the app."""


def connect(db_file: Path) -> sqlite3.Connection:
    """Open the database with WAL and foreign keys on, migrated to :data:`SCHEMA_VERSION`."""
    db_file.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(db_file, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=5000")
    migrate(conn)
    return conn


def migrate(conn: sqlite3.Connection) -> int:
    """Apply every migration newer than the database's ``user_version``; return the version."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise SchemaTooNewError(
            f"The database is schema version {version}, but this app knows only up to "
            f"{SCHEMA_VERSION}. Update Isengard Desktop to open it."
        )
    for index in range(version, SCHEMA_VERSION):
        with transaction(conn):
            # another connection (the download queue's) may have migrated while we waited
            # for the write lock: read the version again inside the transaction
            if conn.execute("PRAGMA user_version").fetchone()[0] > index:
                continue
            for statement in MIGRATIONS[index]:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {index + 1}")
    return SCHEMA_VERSION
