"""Download manager: throughput against a bare httpx stream, bytes re-fetched after a drop, and
memory while a large file comes in.

The host is the test download host (``tests/helpers/download_host.py``) in a child process on
127.0.0.1, serving a generated file (never held in memory), so both sides read the same bytes
from the same server and write them to the same disk.

(a) **Throughput** (goal: ours ≥ 0.95× bare). Bare: one ``httpx.AsyncClient`` streaming the
    file with ``aiter_raw`` into a file, nothing else. Ours: ``core.downloads.fetch`` (``.part``,
    SHA-256 of every byte, progress callback, fsync + atomic rename at the end). Sides
    alternate; median MB/s of ``--reps`` runs each. 1 GiB (``--quick`` 128 MiB).
(b) **Re-fetch after a drop** (goal: ≤ one chunk, 1 MiB): the host closes the connection half
    way through ``/drop.bin`` once; bytes that came over the network minus the file size.
(c) **Memory** (goal: peak RSS growth ≤ 64 MiB while the whole large file is fetched): RSS
    sampled every 20 ms during our fetch of (a), against the RSS before it.

    .venv/bin/python benchmarks/download.py [--quick] [--size-mb N] [--reps R]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO, emit_json, median, prepare_env, print_table, ratio, rss_mib  # noqa: E402

MIB = 1024 * 1024
CHUNK = MIB


def start_host(size_mb: int) -> tuple[subprocess.Popen[str], list[tuple[str, str, int]]]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "tests.helpers.download_host",
                             "--size-mb", str(size_mb)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    files = []
    for _ in range(2):
        url, sha, size = proc.stdout.readline().split()
        files.append((url, sha, int(size)))
    return proc, files


async def bare(url: str, dest: Path) -> float:
    import httpx

    async with httpx.AsyncClient(trust_env=False, timeout=30) as client:
        started = time.perf_counter()
        async with client.stream("GET", url) as response:
            with open(dest, "wb", buffering=0) as fh:
                async for chunk in response.aiter_raw(CHUNK):
                    fh.write(chunk)
        return time.perf_counter() - started


async def ours(url: str, dest: Path, size: int, sha: str, samples: list[float] | None = None
               ) -> tuple[float, int]:
    import httpx

    from isengard_desktop.core.downloads import FetchConfig, FetchSpec, fetch

    async def sample() -> None:
        while True:
            assert samples is not None
            samples.append(rss_mib())
            await asyncio.sleep(0.02)

    async with httpx.AsyncClient(trust_env=False) as client:
        sampler = asyncio.create_task(sample()) if samples is not None else None
        started = time.perf_counter()
        result = await fetch(client, FetchSpec(url, dest, size, sha),
                             FetchConfig(chunk_size=CHUNK, backoff_s=0.05), lambda p: None)
        took = time.perf_counter() - started
        if sampler is not None:
            sampler.cancel()
    return took, result.fetched


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--size-mb", type=int, default=0)
    parser.add_argument("--reps", type=int, default=0)
    args = parser.parse_args()
    prepare_env()
    size_mb = args.size_mb or (128 if args.quick else 1024)
    reps = args.reps or (2 if args.quick else 3)
    host, files = start_host(size_mb)
    (url, sha, size), (drop_url, drop_sha, drop_size) = files
    try:
        with tempfile.TemporaryDirectory(prefix="isengard-bench-dl-") as tmp:
            folder = Path(tmp)
            bare_s: list[float] = []
            ours_s: list[float] = []
            growth: list[float] = []
            for rep in range(reps):
                target = folder / "bare.bin"
                bare_s.append(asyncio.run(bare(url, target)))
                target.unlink()
                samples: list[float] = []
                before = rss_mib()
                took, _ = asyncio.run(ours(url, folder / "ours.bin", size, sha, samples))
                ours_s.append(took)
                growth.append(max(samples, default=before) - before)
                (folder / "ours.bin").unlink()
                print(f"  rep {rep + 1}: bare {size / MIB / bare_s[-1]:.0f} MB/s, "
                      f"ours {size / MIB / took:.0f} MB/s", flush=True)
            _, fetched = asyncio.run(ours(drop_url, folder / "drop.bin", drop_size, drop_sha))
    finally:
        host.terminate()
        host.wait(10)
        if host.stdout is not None:
            host.stdout.close()
    bare_rate = size / MIB / median(bare_s)
    ours_rate = size / MIB / median(ours_s)
    refetched = fetched - drop_size
    peak_growth = max(growth)
    print_table(f"Download, {size_mb} MiB from a local host ({reps} reps)", [
        ("bare httpx stream", f"{bare_rate:.0f} MB/s"),
        ("ours (hash + .part + rename)", f"{ours_rate:.0f} MB/s"),
        ("ratio ours / bare", f"{ratio(ours_rate, bare_rate):.2f}×  (goal ≥ 0.95×)"),
        ("re-fetched after a drop", f"{refetched} bytes  (goal ≤ {CHUNK})"),
        ("peak RSS growth during fetch", f"{peak_growth:.1f} MiB  (goal ≤ 64 MiB)"),
    ])
    emit_json("download", {
        "size_mb": size_mb, "reps": reps, "bare_mb_s": bare_rate, "ours_mb_s": ours_rate,
        "throughput_ratio": ratio(ours_rate, bare_rate), "refetched_bytes": refetched,
        "peak_rss_growth_mib": peak_growth,
    }, {
        "throughput_ge_0_95": ratio(ours_rate, bare_rate) >= 0.95,
        "refetch_le_one_chunk": refetched <= CHUNK,
        "rss_flat": peak_growth <= 64,
    })


if __name__ == "__main__":
    main()
