"""Resumable, verified file downloads (Qt-free): one file's fetch, per-host tokens, the
persisted queue and its runner. ``services/downloads.py`` puts them on the app's loop."""

from .errors import DownloadError
from .fetch import FetchConfig, FetchProgress, FetchResult, FetchSpec, fetch, part_path
from .queue import DownloadQueue, ThreadedStore
from .store import DOWNLOAD_STATES, DownloadRow, DownloadsRepository
from .tokens import HostTokens

__all__ = [
    "DOWNLOAD_STATES", "DownloadError", "DownloadQueue", "DownloadRow", "DownloadsRepository",
    "FetchConfig", "FetchProgress", "FetchResult", "FetchSpec", "HostTokens", "ThreadedStore",
    "fetch", "part_path",
]
