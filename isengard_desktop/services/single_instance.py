"""One app instance per data folder (:class:`InstanceLock`).

Two instances on one data folder would both own the job queue: the second adopts the
first's trainer as an orphan, overwrites its results and launches its queued jobs again. The
first instance holds a :class:`QLockFile` in the data folder (stale-aware: a lock whose
process is gone is taken over) and listens on a :class:`QLocalServer` named after the
folder; a second start finds the lock held, asks the running one to come to the front
through a :class:`QLocalSocket`, and exits.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from loguru import logger
from PySide6.QtCore import QLockFile, QObject, Signal
from PySide6.QtNetwork import QLocalServer, QLocalSocket

__all__ = ["LOCK_FILE_NAME", "InstanceLock"]

LOCK_FILE_NAME = "isengard.lock"
LOCK_WAIT_MS = 200            # how long to wait for a lock another start is just taking
CONNECT_WAIT_MS = 2000        # how long a second start waits for the running one to answer
SHOW_MESSAGE = b"show\n"


def server_name(data_dir: Path) -> str:
    """The local server's name for this data folder (short: socket paths are limited)."""
    digest = hashlib.sha256(str(Path(data_dir).resolve()).encode("utf-8")).hexdigest()
    return f"isengard-desktop-{digest[:16]}"


class InstanceLock(QObject):
    """The data folder's instance lock.

    Signals:
        show_requested(): another start on this data folder asked this one to come to the front.
    """

    show_requested = Signal()

    def __init__(self, data_dir: Path, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / LOCK_FILE_NAME
        self._lock = QLockFile(str(self.path))
        self._lock.setStaleLockTime(0)    # stale only when its process is gone, never by age
        self._server: QLocalServer | None = None
        self.name = server_name(self.data_dir)

    def acquire(self) -> bool:
        """Take the lock and listen for other starts; False when another instance holds it."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self._lock.tryLock(LOCK_WAIT_MS):
            return False
        QLocalServer.removeServer(self.name)   # we hold the lock: any old socket is stale
        server = QLocalServer(self)
        server.setSocketOptions(QLocalServer.SocketOption.UserAccessOption)
        if server.listen(self.name):
            server.newConnection.connect(self._on_connection)
            self._server = server
        else:  # the lock still holds; only "bring to front" is lost
            logger.warning("cannot listen for other starts ({}): {}", self.name,
                           server.errorString())
        return True

    def holder_pid(self) -> int | None:
        """The pid of the instance holding the lock (None when unknown)."""
        info = self._lock.getLockInfo()   # (pid, hostname, appname); pid 0 when unknown
        pid = info[0] if isinstance(info, tuple) and info else 0
        return int(pid) if pid else None

    def ask_to_show(self) -> bool:
        """Ask the running instance to come to the front; True when it got the message."""
        socket = QLocalSocket()
        socket.connectToServer(self.name)
        if not socket.waitForConnected(CONNECT_WAIT_MS):
            return False
        socket.write(SHOW_MESSAGE)
        sent = socket.waitForBytesWritten(CONNECT_WAIT_MS)
        socket.disconnectFromServer()
        return sent

    def release(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._lock.isLocked():
            self._lock.unlock()

    def _on_connection(self) -> None:
        server = self._server
        if server is None:
            return
        while server.hasPendingConnections():
            socket = server.nextPendingConnection()
            if socket is None:
                break

            def read(sock: QLocalSocket = socket) -> None:
                if SHOW_MESSAGE.strip() in bytes(sock.readAll().data()):
                    logger.info("another start on this data folder: coming to the front")
                    self.show_requested.emit()

            socket.readyRead.connect(read)
            socket.disconnected.connect(socket.deleteLater)
