"""The one error a download ends with: a kind (for code) and a message (for the user)."""

from __future__ import annotations

__all__ = ["DownloadError"]


class DownloadError(Exception):
    """A download failed for good (retries spent, or a failure no retry can fix).

    ``kind`` is one of ``gated``, ``not_found``, ``http``, ``network``, ``stalled``,
    ``hash_mismatch``, ``size_mismatch``, ``disk_full``, ``redirects``, ``bad_answer`` (a
    Hub listing not shaped as the Hub's); the message names the
    file and says what to do."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
