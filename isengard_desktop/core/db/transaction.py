"""The one transaction helper: ``with transaction(conn): ...`` commits or rolls back.

Connections are opened with ``isolation_level=None`` (autocommit, see :func:`.schema.connect`),
so a group of statements is atomic only inside a transaction. At the outermost level this
takes the write lock at once (``BEGIN IMMEDIATE``: no late "database is locked" half way);
nested inside a running transaction it uses a SAVEPOINT, so a repository method that is
atomic on its own stays atomic when a caller (the database service's write op) already opened
a transaction around it. Any exception (``KeyboardInterrupt`` included) rolls back the
level it happened in and propagates.
"""

from __future__ import annotations

import itertools
import sqlite3
from contextlib import contextmanager
from collections.abc import Iterator

__all__ = ["transaction"]

_savepoints = itertools.count(1)


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """Run the ``with`` body in a transaction (or a savepoint when one is open)."""
    if conn.in_transaction:
        name = f"isengard_sp_{next(_savepoints)}"
        conn.execute(f"SAVEPOINT {name}")
        try:
            yield conn
        except BaseException:
            conn.execute(f"ROLLBACK TO SAVEPOINT {name}")
            conn.execute(f"RELEASE SAVEPOINT {name}")
            raise
        conn.execute(f"RELEASE SAVEPOINT {name}")
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
