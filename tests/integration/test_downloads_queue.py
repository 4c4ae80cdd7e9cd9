"""The persisted download queue: pause/resume/cancel/retry, restarts and a killed process."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from isengard_desktop.core.db.schema import connect
from isengard_desktop.core.downloads import (
    DownloadQueue, DownloadsRepository, FetchConfig, ThreadedStore, part_path,
)
from tests.helpers.download_host import DownloadHost, HostedFile, generated_bytes

SIZE = 2 * 1024 * 1024 + 77
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def host() -> Iterator[DownloadHost]:
    with DownloadHost() as h:
        yield h


class Harness:
    def __init__(self, db_file: Path, client: httpx.AsyncClient) -> None:
        self.store = ThreadedStore(db_file)
        self.changes: list[tuple[int, str]] = []
        self.queue = DownloadQueue(
            self.store, client,
            config=FetchConfig(chunk_size=128 * 1024, stall_s=0.5, retries=1, backoff_s=0.01),
            on_changed=lambda row: self.changes.append((row.id, row.state)))

    async def until(self, item_id: int, *states: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while self.queue.rows[item_id].state not in states:
            assert time.monotonic() < deadline, self.queue.rows[item_id]
            await asyncio.sleep(0.01)


@pytest_asyncio.fixture
async def harness(tmp_path) -> AsyncIterator[Harness]:
    async with httpx.AsyncClient(trust_env=False) as client:
        h = Harness(tmp_path / "db.sqlite", client)
        yield h
        await h.queue.aclose()
        h.store.close()


@pytest.mark.asyncio
async def test_enqueue_runs_and_persists_done(host, harness, tmp_path):
    hosted = host.add("/a.bin", HostedFile(size=SIZE))
    dest = tmp_path / "models" / "a.bin"
    row = await harness.queue.enqueue(host.url("/a.bin"), dest, size=SIZE, sha256=hosted.sha256)
    await harness.queue.wait_idle()
    assert dest.read_bytes() == generated_bytes(SIZE)
    assert [s for i, s in harness.changes if i == row.id] == ["queued", "running", "done"]
    stored = DownloadsRepository(connect(tmp_path / "db.sqlite")).get(row.id)
    assert stored is not None and stored.state == "done" and stored.bytes_done == SIZE


@pytest.mark.asyncio
async def test_pause_keeps_part_resume_fetches_the_rest_cancel_deletes(host, harness, tmp_path):
    hosted = host.add("/a.bin", HostedFile(size=SIZE, piece_delay_s=0.05))
    dest = tmp_path / "a.bin"
    row = await harness.queue.enqueue(host.url("/a.bin"), dest, sha256=hosted.sha256)
    await harness.until(row.id, "running")
    while not part_path(dest).exists() or part_path(dest).stat().st_size < 300_000:
        await asyncio.sleep(0.01)
    await harness.queue.pause(row.id)
    kept = part_path(dest).stat().st_size
    assert harness.queue.rows[row.id].state == "paused" and kept >= 300_000
    hosted.piece_delay_s = 0
    await harness.queue.resume(row.id)
    await harness.queue.wait_idle()
    assert harness.queue.rows[row.id].state == "done"
    assert host.requests[-1].range_start == kept
    assert dest.read_bytes() == generated_bytes(SIZE)

    other = host.add("/b.bin", HostedFile(size=SIZE, piece_delay_s=0.05))
    row_b = await harness.queue.enqueue(host.url("/b.bin"), tmp_path / "b.bin",
                                        sha256=other.sha256)
    await harness.until(row_b.id, "running")
    while not part_path(tmp_path / "b.bin").exists():
        await asyncio.sleep(0.01)
    await harness.queue.cancel(row_b.id)
    assert harness.queue.rows[row_b.id].state == "cancelled"
    assert not part_path(tmp_path / "b.bin").exists() and not (tmp_path / "b.bin").exists()


@pytest.mark.asyncio
async def test_failure_is_stored_with_its_message_and_retry_finishes(host, harness, tmp_path):
    hosted = host.add("/a.bin", HostedFile(size=SIZE, fail_500=99))
    row = await harness.queue.enqueue(host.url("/a.bin"), tmp_path / "a.bin")
    await harness.queue.wait_idle()
    failed = harness.queue.rows[row.id]
    assert failed.state == "failed" and failed.error_kind == "http" and "a.bin" in failed.error
    hosted.fail_500 = 0
    await harness.queue.retry(row.id)
    await harness.queue.wait_idle()
    assert harness.queue.rows[row.id].state == "done" and harness.queue.rows[row.id].error == ""


@pytest.mark.asyncio
async def test_one_at_a_time_in_order(host, harness, tmp_path):
    for name in ("a", "b"):
        host.add(f"/{name}.bin", HostedFile(size=SIZE, seed=ord(name)))
    first = await harness.queue.enqueue(host.url("/a.bin"), tmp_path / "a.bin")
    second = await harness.queue.enqueue(host.url("/b.bin"), tmp_path / "b.bin")
    await harness.queue.wait_idle()
    order = [(i, s) for i, s in harness.changes if s in ("running", "done")]
    assert order == [(first.id, "running"), (first.id, "done"),
                     (second.id, "running"), (second.id, "done")]


@pytest.mark.asyncio
async def test_restart_queues_interrupted_rows_and_resumes_from_the_part(host, tmp_path):
    hosted = host.add("/a.bin", HostedFile(size=SIZE))
    dest = tmp_path / "a.bin"
    db_file = tmp_path / "db.sqlite"
    repo = DownloadsRepository(connect(db_file))
    row = repo.add(host.url("/a.bin"), str(dest), size=SIZE, sha256=hosted.sha256)
    repo.update(row.id, state="running", bytes_done=600_000)      # a run that was killed
    repo.conn.close()
    part_path(dest).write_bytes(generated_bytes(SIZE, end=600_000))
    async with httpx.AsyncClient(trust_env=False) as client:
        h = Harness(db_file, client)
        await h.queue.load()
        await h.queue.wait_idle()
        await h.queue.aclose()
        h.store.close()
    assert h.queue.rows[row.id].state == "done"
    assert host.requests[0].range_start == 600_000 and host.sent_for("/a.bin") == SIZE - 600_000


def test_killed_child_resumes_from_the_part_offset(host, tmp_path):
    size = 8 * 1024 * 1024
    hosted = host.add("/big.bin", HostedFile(size=size, piece_delay_s=0.02))
    dest = tmp_path / "models" / "big.bin"
    argv = [sys.executable, "-m", "tests.helpers.download_child", str(tmp_path / "db.sqlite"),
            host.url("/big.bin"), str(dest), str(size), hosted.sha256]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not part_path(dest).exists() or part_path(dest).stat().st_size < 2 * 1024 * 1024:
            assert child.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
        assert child.stdout is not None
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    kept = part_path(dest).stat().st_size
    assert 2 * 1024 * 1024 <= kept < size
    hosted.piece_delay_s = 0
    again = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "state done" in again.stdout
    assert dest.read_bytes() == generated_bytes(size)
    second = [r for r in host.requests if r.path == "/big.bin"][-1]
    assert second.range_start == kept and second.status == 206
    # only the rest came again (the second request's own count: the first one's handler may
    # still have counted a piece or two into the dead connection after the kill)
    deadline = time.monotonic() + 5        # (the server thread counts after each write)
    while second.sent < size - kept and time.monotonic() < deadline:
        time.sleep(0.01)
    assert second.sent == size - kept
