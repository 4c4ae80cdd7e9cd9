"""A child process that downloads through the persisted queue (the kill/restart test).

``python -m tests.helpers.download_child DB_FILE URL DEST SIZE SHA256``: opens the database,
queues the file unless an unfinished row for DEST exists, runs the queue until it is idle and
prints the final row's state. Killed half way, the next run resumes from the ``.part``.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import httpx

from isengard_desktop.core.downloads import DownloadQueue, FetchConfig, ThreadedStore


async def main(db_file: Path, url: str, dest: Path, size: int, sha256: str) -> int:
    store = ThreadedStore(db_file)
    async with httpx.AsyncClient(trust_env=False) as client:
        queue = DownloadQueue(store, client, config=FetchConfig(
            chunk_size=256 * 1024, stall_s=5, retries=1, backoff_s=0.1))
        await queue.load()
        if not queue.items():
            await queue.enqueue(url, dest, size=size, sha256=sha256)
        print("started", flush=True)
        await queue.wait_idle()
        rows = queue.items()
    store.close()
    print("state", rows[0].state, rows[0].error, flush=True)
    return 0 if rows[0].state == "done" else 1


if __name__ == "__main__":
    args = sys.argv[1:]
    sys.exit(asyncio.run(main(Path(args[0]), args[1], Path(args[2]), int(args[3]), args[4])))
