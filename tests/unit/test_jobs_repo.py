"""The jobs table (migration 2) and JobsRepository."""

from __future__ import annotations

import sqlite3

import pytest

from isengard_desktop.core.db.jobs import JOB_COLUMNS, JobRow, JobsRepository
from isengard_desktop.core.db.repository import Repository
from isengard_desktop.core.db.schema import MIGRATIONS, SCHEMA_VERSION, connect


@pytest.fixture
def conn(tmp_path):
    c = connect(tmp_path / "db.sqlite3")
    yield c
    c.close()


def row(job_id: str, created: str, **kw) -> JobRow:
    base = dict(job_id=job_id, character_id=None, backend="builtin", family="sd15",
                preset="Quick", state="queued", spec_json=f'{{"job_id": "{job_id}"}}',
                job_dir=f"/data/jobs/{job_id}", created=created)
    base.update(kw)
    return JobRow(**base)


def test_migration_2_creates_the_jobs_table(conn):
    assert SCHEMA_VERSION == len(MIGRATIONS) >= 2
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    cols = [r["name"] for r in conn.execute("PRAGMA table_info(jobs)")]
    assert tuple(cols) == JOB_COLUMNS


def test_migration_2_upgrades_a_version_1_database(tmp_path):
    db = tmp_path / "old.sqlite3"
    old = sqlite3.connect(db, isolation_level=None)
    for statement in MIGRATIONS[0]:
        old.execute(statement)
    old.execute("PRAGMA user_version = 1")
    old.execute("INSERT INTO characters(name, trigger_word, folder, created, updated) "
                "VALUES ('A', 'a', 'a', 'x', 'x')")
    old.close()
    conn = connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("SELECT count(*) FROM characters").fetchone()[0] == 1
    JobsRepository(conn).save(row("j1", "2026-01-01", character_id=1))
    assert JobsRepository(conn).get("j1").character_id == 1
    conn.close()


def test_crud_and_order(conn):
    repo = JobsRepository(conn)
    repo.insert(row("a", "2026-01-01T00:00:00"))
    repo.insert(row("b", "2026-01-02T00:00:00", state="running", pid=123))
    with pytest.raises(sqlite3.IntegrityError):
        repo.insert(row("a", "2026-01-03T00:00:00"))
    assert [j.job_id for j in repo.list_jobs()] == ["b", "a"]
    assert [j.job_id for j in repo.list_jobs(("running", "stopping"))] == ["b"]
    updated = repo.update("b", state="completed", pid=None, step=100, total_steps=100,
                          last_loss=0.05, lora_path="/x.safetensors", sec_per_step=0.5,
                          finished="2026-01-02T01:00:00")
    assert updated == repo.get("b")
    assert updated.state == "completed" and updated.pid is None and updated.last_loss == 0.05
    with pytest.raises(KeyError):
        repo.update("zzz", state="failed")
    with pytest.raises(ValueError):
        repo.update("a", nonsense=1)
    repo.save(row("a", "2026-01-01T00:00:00", state="failed", error_kind="oom",
                  error_message="Out of memory"))
    assert repo.get("a").error_kind == "oom"
    repo.delete("a")
    assert repo.get("a") is None and len(repo.list_jobs()) == 1


def test_character_link_is_set_null_on_delete(conn, tmp_path):
    lib = Repository(conn, tmp_path)
    alice = lib.create_character("Alice", "alc", "", "alice")
    repo = JobsRepository(conn)
    repo.save(row("j", "2026-01-01", character_id=alice.id))
    # a character that does not exist is stored as NULL instead of failing
    repo.save(row("k", "2026-01-01", character_id=9999))
    assert repo.get("k").character_id is None
    assert repo.get("j").character_id == alice.id
    lib.delete_character(alice.id)
    assert repo.get("j").character_id is None


def test_job_dir_is_stored_relative_to_the_data_folder(conn, tmp_path):
    repo = JobsRepository(conn, data_root=tmp_path)
    repo.save(row("j", "2026-01-01", job_dir=str(tmp_path / "jobs" / "j")))
    stored = conn.execute("SELECT job_dir FROM jobs").fetchone()[0]
    assert stored == "jobs/j"
    assert repo.get("j").job_dir == str(tmp_path / "jobs" / "j")
    moved = JobsRepository(conn, data_root=tmp_path / "moved")
    assert moved.get("j").job_dir == str(tmp_path / "moved" / "jobs" / "j")


def test_upgrade_to_version_4_adds_the_paused_time_of_resumed_jobs(tmp_path):
    import sqlite3 as sql

    db = tmp_path / "old.sqlite3"
    old = sql.connect(db, isolation_level=None)
    for statements in MIGRATIONS[:3]:
        for statement in statements:
            old.execute(statement)
    old.execute("PRAGMA user_version = 3")
    old.execute("INSERT INTO jobs(job_id, state, spec_json, job_dir, created) "
                "VALUES ('j1', 'completed', '{}', 'jobs/j1', 'now')")
    old.close()
    conn = connect(db)
    try:
        assert SCHEMA_VERSION >= 4
        assert conn.execute("SELECT paused_seconds FROM jobs").fetchone()[0] == 0
    finally:
        conn.close()
