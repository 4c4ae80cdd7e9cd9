"""Resumable, verified file downloads (Qt-free): one file's fetch, per-host tokens, the
persisted queue and its runner, Hugging Face repo listings. ``services/downloads.py`` puts
them on the app's loop."""

from .errors import DownloadError
from .fetch import FetchConfig, FetchProgress, FetchResult, FetchSpec, fetch, part_path
from .hf_repo import HubFile, HubListing, list_repo, transformers_files
from .queue import DownloadQueue, ThreadedStore
from .store import DOWNLOAD_STATES, DownloadRow, DownloadsRepository
from .tokens import HostTokens

__all__ = [
    "DOWNLOAD_STATES", "DownloadError", "DownloadQueue", "DownloadRow", "DownloadsRepository",
    "FetchConfig", "FetchProgress", "FetchResult", "FetchSpec", "HostTokens", "HubFile",
    "HubListing", "ThreadedStore", "fetch", "list_repo", "part_path", "transformers_files",
]
