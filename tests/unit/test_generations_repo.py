"""The ``generations`` table (migration 3) and its repository."""

from __future__ import annotations

import sqlite3

import pytest

from isengard_desktop.core.comfy.jobs import GalleryItem
from isengard_desktop.core.db.generations import GenerationsRepository
from isengard_desktop.core.db.repository import Repository
from isengard_desktop.core.db.schema import MIGRATIONS, SCHEMA_VERSION, connect


@pytest.fixture
def conn(tmp_path):
    c = connect(tmp_path / "db.sqlite3")
    yield c
    c.close()


def item(**changes) -> GalleryItem:
    values = dict(id=0, job_id="job1", path="/tmp/x.png", prompt="ohwx, a cat", negative="ugly",
                  seed=42, width=1024, height=1024, workflow="sdxl-lora",
                  model="sd_xl_base_1.0.safetensors", lora_path="/data/loras/a.safetensors",
                  lora_strength=0.8, character_id=None, status="gallery",
                  params={"steps": 30, "cfg": 6.5}, server="http://127.0.0.1:8188",
                  parent_image="", prompt_id="p1")
    values.update(changes)
    return GalleryItem(**values)


def test_migration_3_creates_the_table(conn):
    assert SCHEMA_VERSION == len(MIGRATIONS) >= 3
    cols = {r["name"] for r in conn.execute("PRAGMA table_info(generations)")}
    assert {"job_id", "prompt_id", "character_id", "path", "width", "height", "seed", "prompt",
            "negative", "workflow", "model", "lora_path", "lora_strength", "server",
            "params_json", "parent_image", "status", "created"} <= cols


def test_upgrade_from_version_2_keeps_data(tmp_path):
    db = tmp_path / "old.sqlite3"
    old = sqlite3.connect(db, isolation_level=None)
    for statements in MIGRATIONS[:2]:
        for statement in statements:
            old.execute(statement)
    old.execute("PRAGMA user_version = 2")
    old.execute("INSERT INTO characters(name, trigger_word, folder, created, updated) "
                "VALUES ('A', 'a', 'a', 'now', 'now')")
    old.close()
    conn = connect(db)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("SELECT count(*) FROM characters").fetchone()[0] == 1
        assert conn.execute("SELECT count(*) FROM generations").fetchone()[0] == 0
    finally:
        conn.close()


def test_insert_and_read_back(conn, tmp_path):
    repo = GenerationsRepository(conn, tmp_path / "outputs")
    inside = tmp_path / "outputs" / "generations" / "2026-01-01" / "a.png"
    [a, b] = repo.insert([item(path=str(inside)), item(path="/elsewhere/b.png", seed=7)])
    assert a.id and b.id and a.id != b.id
    assert a.path == str(inside)
    stored = conn.execute("SELECT path FROM generations WHERE id=?", (a.id,)).fetchone()[0]
    assert stored == "generations/2026-01-01/a.png"          # relative: a portable install moves
    assert b.path == "/elsewhere/b.png"
    assert a.params == {"steps": 30, "cfg": 6.5}
    assert a.created and a.server == "http://127.0.0.1:8188" and a.prompt_id == "p1"
    assert a.lora_strength == 0.8 and a.status == "gallery"


def test_huge_seeds_round_trip(conn):
    repo = GenerationsRepository(conn)
    seeds = [0, 2**63 - 1, 2**63, 2**64 - 1]
    got = repo.insert([item(seed=s) for s in seeds])
    assert [g.seed for g in got] == seeds
    assert [g.seed for g in repo.get([g.id for g in got])] == seeds


def test_lists_by_status_and_character_newest_first(conn, tmp_path):
    lib = Repository(conn, tmp_path)
    alice = lib.create_character("Alice", "ohwx", "", "alice")
    repo = GenerationsRepository(conn)
    rows = repo.insert([item(path="/1.png"), item(path="/2.png", status="staging",
                                                  character_id=alice.id),
                        item(path="/3.png", status="staging", character_id=alice.id),
                        item(path="/4.png", status="staging", character_id=None)])
    gallery = repo.list_items(("gallery",))
    assert [g.path for g in gallery] == ["/1.png"]
    staging = repo.list_items(("staging",), character_id=alice.id)
    assert [g.path for g in staging] == ["/3.png", "/2.png"]
    assert len(repo.list_items()) == 4
    assert [g.path for g in repo.by_job("job1")] == ["/1.png", "/2.png", "/3.png", "/4.png"]
    assert rows[1].character_id == alice.id


def test_set_status(conn):
    repo = GenerationsRepository(conn)
    rows = repo.insert([item(status="staging"), item(status="staging")])
    changed = repo.set_status([rows[0].id, 9999], "kept")
    assert [(c.id, c.status) for c in changed] == [(rows[0].id, "kept")]
    assert repo.get([rows[1].id])[0].status == "staging"
    with pytest.raises(ValueError):
        repo.set_status([rows[1].id], "deleted")
    with pytest.raises(ValueError):
        repo.insert([item(status="bogus")])
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("UPDATE generations SET status='bogus' WHERE id=?", (rows[1].id,))


def test_unknown_character_becomes_null_and_delete_sets_null(conn, tmp_path):
    lib = Repository(conn, tmp_path)
    bob = lib.create_character("Bob", "bxb", "", "bob")
    repo = GenerationsRepository(conn)
    [gone, kept] = repo.insert([item(character_id=12345), item(character_id=bob.id)])
    assert gone.character_id is None
    lib.delete_character(bob.id)
    assert repo.get([kept.id])[0].character_id is None


def test_delete_rows(conn):
    repo = GenerationsRepository(conn)
    rows = repo.insert([item(), item()])
    repo.delete([rows[0].id])
    assert [r.id for r in repo.list_items()] == [rows[1].id]
