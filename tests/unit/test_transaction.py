"""The one transaction helper of core/db: commit, rollback, savepoints when nested."""

from __future__ import annotations

import pytest

from isengard_desktop.core.db.records import NewImage
from isengard_desktop.core.db.repository import Repository
from isengard_desktop.core.db.schema import connect
from isengard_desktop.core.db.transaction import transaction


@pytest.fixture
def conn(tmp_path):
    c = connect(tmp_path / "db.sqlite3")
    c.execute("CREATE TABLE t (x INTEGER UNIQUE)")
    yield c
    c.close()


def values(conn) -> list[int]:
    return [r[0] for r in conn.execute("SELECT x FROM t ORDER BY x")]


def test_the_body_is_committed(conn):
    with transaction(conn):
        assert conn.in_transaction
        conn.execute("INSERT INTO t VALUES (1)")
        conn.execute("INSERT INTO t VALUES (2)")
    assert not conn.in_transaction
    assert values(conn) == [1, 2]


@pytest.mark.parametrize("error", [ValueError("boom"), KeyboardInterrupt()])
def test_an_exception_rolls_everything_back_and_propagates(conn, error):
    with pytest.raises(type(error)), transaction(conn):
        conn.execute("INSERT INTO t VALUES (1)")
        raise error
    assert not conn.in_transaction
    assert values(conn) == []


def test_nested_failure_rolls_back_only_the_inner_level(conn):
    with transaction(conn):
        conn.execute("INSERT INTO t VALUES (1)")
        with pytest.raises(ValueError), transaction(conn):
            conn.execute("INSERT INTO t VALUES (2)")
            raise ValueError("inner")
        conn.execute("INSERT INTO t VALUES (3)")
    assert values(conn) == [1, 3]


def test_outer_failure_rolls_back_a_released_inner_level(conn):
    with pytest.raises(RuntimeError), transaction(conn):
        with transaction(conn):
            conn.execute("INSERT INTO t VALUES (1)")
        raise RuntimeError("outer")
    assert values(conn) == []


def test_a_repository_write_inside_a_failed_outer_transaction_is_undone(tmp_path):
    """Repository methods are atomic alone and join a caller's transaction (the database
    service wraps every write op in one)."""
    conn = connect(tmp_path / "lib.sqlite3")
    try:
        repo = Repository(conn, tmp_path)
        ch = repo.create_character("Ann", "ohwx", "", "ann")
        row = NewImage(path=tmp_path / "ann" / "a.jpg", sha256="a" * 64, width=512,
                       height=512, caption="c", source="src.jpg")
        with pytest.raises(LookupError), transaction(conn):
            assert len(repo.add_images(ch.id, [row])) == 1
            raise LookupError("later step failed")
        assert repo.list_images() == []
        [added] = repo.add_images(ch.id, [row])
        assert (added.path, added.caption, added.source) == (row.path, "c", "src.jpg")
    finally:
        conn.close()
