"""The fetcher against a real local download host: resume, faults, hashes, tokens, gated."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from loguru import logger

from isengard_desktop.core.downloads import (
    DownloadError, FetchConfig, FetchSpec, HostTokens, fetch, part_path,
)
from isengard_desktop.core.downloads.fetch import FetchProgress
from tests.helpers.download_host import DownloadHost, HostedFile, generated_bytes

SIZE = 3 * 1024 * 1024 + 123
PATH = "/org/model/resolve/main/model.safetensors"
TOKEN = "hf_secretTOKENvalue1234567890"


@pytest.fixture
def host() -> Iterator[DownloadHost]:
    with DownloadHost() as h:
        yield h


def fast(**kw: object) -> FetchConfig:
    base: dict[str, object] = dict(chunk_size=256 * 1024, stall_s=0.5, retries=2,
                                   backoff_s=0.01, connect_timeout_s=5)
    base.update(kw)
    return FetchConfig(**base)  # type: ignore[arg-type]


async def run(url: str, dest: Path, config: FetchConfig, *, size: int = 0, sha: str = "",
              progress: list[FetchProgress] | None = None):
    async with httpx.AsyncClient(trust_env=False) as client:
        return await fetch(client, FetchSpec(url, dest, size, sha), config,
                           progress.append if progress is not None else None)


@pytest.mark.asyncio
async def test_whole_file_hash_progress_and_atomic_rename(host, tmp_path):
    hosted = host.add(PATH, HostedFile(size=SIZE))
    dest = tmp_path / "models" / "model.safetensors"
    seen: list[FetchProgress] = []
    result = await run(host.url(PATH), dest, fast(), size=SIZE, sha=hosted.sha256, progress=seen)
    assert dest.read_bytes() == generated_bytes(SIZE)
    assert result.sha256 == hosted.sha256 and result.fetched == SIZE
    assert not part_path(dest).exists()
    assert seen[-1].done == SIZE and seen[-1].total == SIZE
    assert [p.done for p in seen] == sorted(p.done for p in seen)


@pytest.mark.asyncio
async def test_resume_sends_range_and_fetches_only_the_rest(host, tmp_path):
    hosted = host.add(PATH, HostedFile(size=SIZE))
    dest = tmp_path / "m.bin"
    kept = 1_000_000
    part_path(dest).write_bytes(generated_bytes(SIZE, end=kept))
    result = await run(host.url(PATH), dest, fast(), size=SIZE, sha=hosted.sha256)
    assert result.resumed_from == kept and result.fetched == SIZE - kept
    assert host.requests[-1].range_start == kept and host.requests[-1].status == 206
    assert host.sent_for(PATH) == SIZE - kept
    assert dest.read_bytes() == generated_bytes(SIZE)


@pytest.mark.asyncio
async def test_drop_mid_file_resumes_from_the_break(host, tmp_path):
    hosted = host.add(PATH, HostedFile(size=SIZE, drop_after=1_500_000))
    dest = tmp_path / "m.bin"
    await run(host.url(PATH), dest, fast(), size=SIZE, sha=hosted.sha256)
    assert dest.read_bytes() == generated_bytes(SIZE)
    assert len(host.requests) == 2
    # the second request starts where the bytes written stopped; nothing fetched twice
    assert host.requests[1].range_start == host.requests[0].sent
    assert host.sent_for(PATH) == SIZE


@pytest.mark.asyncio
async def test_416_with_complete_part_is_verified_not_refetched(host, tmp_path):
    hosted = host.add(PATH, HostedFile(size=SIZE, range_416=True))
    dest = tmp_path / "m.bin"
    part_path(dest).write_bytes(generated_bytes(SIZE))
    result = await run(host.url(PATH), dest, fast(), sha=hosted.sha256)
    assert result.fetched == 0 and dest.read_bytes() == generated_bytes(SIZE)


@pytest.mark.asyncio
async def test_416_with_partial_part_restarts_from_zero(host, tmp_path):
    hosted = host.add(PATH, HostedFile(size=SIZE, range_416=True))
    dest = tmp_path / "m.bin"
    part_path(dest).write_bytes(generated_bytes(SIZE, end=1000))
    result = await run(host.url(PATH), dest, fast(), sha=hosted.sha256)
    assert result.fetched == SIZE and dest.read_bytes() == generated_bytes(SIZE)
    assert host.requests[-1].range_start is None


@pytest.mark.asyncio
async def test_server_ignoring_range_restarts_from_zero(host, tmp_path):
    hosted = host.add(PATH, HostedFile(size=SIZE, ignore_range=True))
    dest = tmp_path / "m.bin"
    part_path(dest).write_bytes(generated_bytes(SIZE, end=5000))
    await run(host.url(PATH), dest, fast(), size=SIZE, sha=hosted.sha256)
    assert dest.read_bytes() == generated_bytes(SIZE)
    assert host.requests[0].status == 200


@pytest.mark.asyncio
async def test_500_is_retried_then_succeeds(host, tmp_path):
    hosted = host.add(PATH, HostedFile(size=SIZE, fail_500=2))
    dest = tmp_path / "m.bin"
    await run(host.url(PATH), dest, fast(retries=3), sha=hosted.sha256)
    assert [r.status for r in host.requests] == [500, 500, 200]


@pytest.mark.asyncio
async def test_500_forever_ends_in_a_clear_error(host, tmp_path):
    host.add(PATH, HostedFile(size=SIZE, fail_500=99))
    with pytest.raises(DownloadError) as err:
        await run(host.url(PATH), tmp_path / "m.bin", fast(retries=2))
    assert err.value.kind == "http" and "m.bin" in err.value.message
    assert "3 times" in err.value.message and len(host.requests) == 3


@pytest.mark.asyncio
async def test_stall_is_retried_and_resumes(host, tmp_path):
    hosted = host.add(PATH, HostedFile(size=SIZE, stall_after=700_000))
    dest = tmp_path / "m.bin"
    with pytest.raises(DownloadError) as err:
        await run(host.url(PATH), dest, fast(retries=1, stall_s=0.3), sha=hosted.sha256)
    assert err.value.kind == "stalled"
    assert "stalled" in err.value.message and "m.bin" in err.value.message
    assert part_path(dest).stat().st_size == 700_000          # kept for a later resume
    hosted.stall_after = -1
    result = await run(host.url(PATH), dest, fast(), sha=hosted.sha256)
    assert result.resumed_from == 700_000 and dest.read_bytes() == generated_bytes(SIZE)


@pytest.mark.asyncio
async def test_wrong_bytes_delete_the_part_and_name_the_file(host, tmp_path):
    good = HostedFile(size=SIZE)
    host.add(PATH, HostedFile(size=SIZE, corrupt=True))
    dest = tmp_path / "model.safetensors"
    with pytest.raises(DownloadError) as err:
        await run(host.url(PATH), dest, fast(), sha=good.sha256)
    assert err.value.kind == "hash_mismatch" and "model.safetensors" in err.value.message
    assert not part_path(dest).exists() and not dest.exists()


@pytest.mark.asyncio
async def test_size_from_catalogue_differs_is_refused(host, tmp_path):
    host.add(PATH, HostedFile(size=SIZE))
    with pytest.raises(DownloadError) as err:
        await run(host.url(PATH), tmp_path / "m.bin", fast(), size=SIZE + 1)
    assert err.value.kind == "size_mismatch"


@pytest.mark.asyncio
async def test_free_disk_check_names_sizes(host, tmp_path):
    host.add(PATH, HostedFile(size=SIZE))

    class Usage:
        free = 10 * 1024 * 1024

    config = fast(disk_usage=lambda _p: Usage())
    with pytest.raises(DownloadError) as err:
        await run(host.url(PATH), tmp_path / "m.bin", config, size=SIZE)
    assert err.value.kind == "disk_full"
    assert "10.0 MB is free" in err.value.message and "m.bin" in err.value.message
    assert host.requests == []                 # nothing fetched


@pytest.mark.asyncio
async def test_token_goes_to_its_host_only_never_across_a_redirect(host, tmp_path):
    hosted = host.add("/cdn/blob", HostedFile(size=SIZE))
    # 127.0.0.1 plays huggingface.co, localhost plays the CDN it redirects to
    host.add(PATH, HostedFile(size=0, data=b"", redirect_to=host.url("/cdn/blob", "localhost")))
    dest = tmp_path / "m.bin"
    sink = io.StringIO()
    handler = logger.add(sink, level="DEBUG")
    try:
        await run(host.url(PATH), dest, fast(tokens=HostTokens({"127.0.0.1": TOKEN})),
                  sha=hosted.sha256)
    finally:
        logger.remove(handler)
    first, second = host.requests
    assert first.host == "127.0.0.1" and first.authorization == f"Bearer {TOKEN}"
    assert second.host == "localhost" and second.authorization == ""
    assert dest.read_bytes() == generated_bytes(SIZE)
    assert "redirected" in sink.getvalue() and TOKEN not in sink.getvalue()


@pytest.mark.asyncio
@pytest.mark.parametrize("token, status", [("", 401), ("hf_wrongwrongwrongwrong", 403)])
async def test_gated_model_says_what_to_do(host, tmp_path, token, status):
    host.add(PATH, HostedFile(size=SIZE, gated=True, token=TOKEN))
    tokens = HostTokens({"127.0.0.1": token} if token else {})
    with pytest.raises(DownloadError) as err:
        await run(host.url(PATH), tmp_path / "m.bin", fast(tokens=tokens))
    message = err.value.message
    assert err.value.kind == "gated" and f"HTTP {status}" in message
    assert host.url("/org/model") in message and "accept its licence" in message
    assert "Settings" in message and len(host.requests) == 1      # not retried


@pytest.mark.asyncio
async def test_gated_model_with_the_right_token_downloads(host, tmp_path):
    hosted = host.add(PATH, HostedFile(size=SIZE, gated=True, token=TOKEN))
    dest = tmp_path / "m.bin"
    await run(host.url(PATH), dest, fast(tokens=HostTokens({"127.0.0.1": TOKEN})),
              sha=hosted.sha256)
    assert dest.stat().st_size == SIZE


def test_host_tokens_match_exact_hosts_only(memory_keyring):
    from isengard_desktop.core.secrets import SecretStore

    store = SecretStore(memory_keyring)
    store.set("hf_token", TOKEN)
    store.set("civitai_token", "civitai-secret-0123456789")
    tokens = HostTokens.from_secrets(store)
    assert tokens.headers_for("https://huggingface.co/a/b/resolve/main/x") == {
        "Authorization": f"Bearer {TOKEN}"}
    assert tokens.headers_for("https://hf.co/a/b")["Authorization"].endswith(TOKEN)
    assert tokens.headers_for("https://cdn-lfs.hf.co/x?sig=1") == {}
    assert tokens.headers_for("https://huggingface.co.evil.example/x") == {}
    assert "civitai-secret" in tokens.headers_for("https://civitai.com/api/download/1")[
        "Authorization"]
    assert tokens.headers_for("https://civitai.com.evil.example/") == {}
    assert TOKEN not in repr(tokens)


@pytest.mark.asyncio
async def test_a_file_already_there_is_checked_not_fetched_and_a_wrong_one_replaced(host, tmp_path):
    hosted = host.add(PATH, HostedFile(size=SIZE))
    dest = tmp_path / "m.bin"
    dest.write_bytes(generated_bytes(SIZE))
    result = await run(host.url(PATH), dest, fast(), size=SIZE, sha=hosted.sha256)
    assert result.fetched == 0 and host.requests == []
    dest.write_bytes(b"\0" * SIZE)                       # same size, other bytes
    result = await run(host.url(PATH), dest, fast(), size=SIZE, sha=hosted.sha256)
    assert result.fetched == SIZE and dest.read_bytes() == generated_bytes(SIZE)
