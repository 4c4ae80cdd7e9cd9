"""SQLite storage: connection setup, ordered migrations, repositories (Qt-free)."""
