"""Which token goes to which host: the Hugging Face token only to Hugging Face, the Civitai
token only to Civitai, nothing anywhere else.

Matching is on the exact host name (no suffix match): ``cdn-lfs.hf.co`` and other CDN hosts
that Hugging Face redirects to get no token — their URLs are pre-signed. The fetcher follows
redirects itself and asks :meth:`HostTokens.headers_for` again on every hop, so a token never
follows a redirect to another host (httpx would drop ``Authorization`` on a cross-origin
redirect too — ``httpx/_client.py`` ``_redirect_headers`` — but it keeps it on an http→https
upgrade of the same host, and we do not want to rely on a library detail for a secret).
Values are never logged; ``repr`` shows hosts only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from ..secrets import SecretStore

__all__ = ["CIVITAI_HOSTS", "HF_HOSTS", "HostTokens", "host_of", "read_tokens"]

HF_HOSTS = ("huggingface.co", "www.huggingface.co", "hf.co")
CIVITAI_HOSTS = ("civitai.com", "www.civitai.com")


def host_of(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


class HostTokens:
    """Bearer tokens keyed by exact host name."""

    def __init__(self, by_host: Mapping[str, str] | None = None) -> None:
        self._by_host = {h.lower(): t for h, t in (by_host or {}).items() if t}

    def __repr__(self) -> str:     # never the values
        return f"HostTokens(hosts={sorted(self._by_host)})"

    def headers_for(self, url: str) -> dict[str, str]:
        token = self._by_host.get(host_of(url))
        return {"Authorization": f"Bearer {token}"} if token else {}

    def has_token_for(self, url: str) -> bool:
        return host_of(url) in self._by_host

    @classmethod
    def from_secrets(cls, secrets: SecretStore) -> HostTokens:
        """Read the tokens from the OS keyring (blocking: call it off the UI thread)."""
        by_host: dict[str, str] = {}
        hf = secrets.get("hf_token")
        civitai = secrets.get("civitai_token")
        if hf:
            by_host.update(dict.fromkeys(HF_HOSTS, hf))
        if civitai:
            by_host.update(dict.fromkeys(CIVITAI_HOSTS, civitai))
        return cls(by_host)


async def read_tokens(source: Callable[[], HostTokens] | None) -> HostTokens:
    """The tokens ``source`` gives (it may read the keyring: run off the loop), or none."""
    return await asyncio.to_thread(source) if source is not None else HostTokens()
