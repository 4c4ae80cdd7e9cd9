"""Qt-free code: paths, settings, secrets, logging, the database, dataset handling, training specs
and the ComfyUI client. Never imports PySide6."""
