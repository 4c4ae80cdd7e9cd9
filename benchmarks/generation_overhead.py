"""Generation overhead: ComfyClient vs raw HTTP/WebSocket round trips, and fan-out over servers.

Everything runs against the ComfyUI test double (``tests/helpers/comfy_double.py``: a real
aiohttp server on 127.0.0.1, in its own thread, answering message by message like ComfyUI
0.3.64). The double does no image work beyond tiny flat PNGs, so what is measured is protocol
and client cost.

(a) **Per-job client overhead** (goal: ComfyClient ≤ 1.25× raw). Job: EmptyImage 64×64 →
    SaveImage, a different colour every job so nothing is served from the node cache.
    * Raw: the least any client must do — one ``httpx.AsyncClient`` and one websocket opened
      once; per job ``POST /prompt`` (own prompt_id + client_id), read the socket until
      ``executing`` with ``node: null`` for that prompt, ``GET /history/<id>``, ``GET /view``
      of the image.
    * Client: ``ComfyClient.run()`` (its socket open already, events delivered to a callback)
      + ``fetch_image()``.
    Jobs one after another, the two sides in alternating blocks; medians of the per-job times.
    200 jobs per side (``--quick`` 40).
(c) **Per-job client overhead, video** (goal: ≤ 1.25× raw, issue 18). Job: EmptyImage 64×48
    × 9 frames → CreateVideo (16 fps) → SaveVideo: the double encodes a real H.264 MP4 and
    answers in ComfyUI's shape (``{"images": [...], "animated": [true]}``); both sides download
    the clip through ``/view``; the client side picks it by ``ImageRef.is_video``. 50 jobs per
    side (``--quick`` 20).
(b) **Fan-out**: 20 jobs submitted at once over 1, 2 and 4 doubles, each node taking a fixed
    ``--node-delay`` (EmptyImage → ImageBlur → SaveImage: 3 nodes, 0.1 s each; ``--quick``
    0.05 s). Each job picks its server with the service's router
    (``core/comfy/routing.choose_server``: healthy, has the models, then least busy), one
    ComfyClient per server. Throughput relative to 1 server (goal: 2 servers ≥ 1.8×,
    4 servers ≥ 3.5×). Repeated 3 times (``--quick`` 1), median.

    .venv/bin/python benchmarks/generation_overhead.py [--quick] [--jobs N] [--node-delay S]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO, emit_json, fmt_ms, fresh_home, median, prepare_env, print_table, ratio  # noqa: E402

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

GOAL_OVERHEAD = 1.25
GOAL_SCALE = {2: 1.8, 4: 3.5}
FANOUT_JOBS = 20


def tiny_graph(n: int) -> dict:
    return {"1": {"class_type": "EmptyImage",
                  "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": n % 0xFFFFFF}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0],
                                                        "filename_prefix": "bench"}}}


def video_graph(n: int) -> dict:
    """9 frames of a flat colour → CreateVideo → SaveVideo (core nodes; a real MP4)."""
    return {"1": {"class_type": "EmptyImage",
                  "inputs": {"width": 64, "height": 48, "batch_size": 9, "color": n % 0xFFFFFF}},
            "2": {"class_type": "CreateVideo", "inputs": {"images": ["1", 0], "fps": 16.0}},
            "3": {"class_type": "SaveVideo", "inputs": {"video": ["2", 0],
                                                        "filename_prefix": "bench/video",
                                                        "format": "mp4", "codec": "h264"}}}


def blur_graph(n: int) -> dict:
    return {"1": {"class_type": "EmptyImage",
                  "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": n % 0xFFFFFF}},
            "2": {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": 1,
                                                        "sigma": 1.0}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0],
                                                        "filename_prefix": "fanout"}}}


# --------------------------------------------------------------------------- (a) overhead

class RawClient:
    """The bare protocol: what any ComfyUI client has to do per job, nothing more."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.client_id = str(uuid.uuid4())

    async def __aenter__(self) -> RawClient:
        import httpx
        from websockets.asyncio.client import connect

        self.http = httpx.AsyncClient(timeout=30)
        ws_url = self.url.replace("http://", "ws://") + f"/ws?clientId={self.client_id}"
        self.ws = await connect(ws_url, compression=None, max_size=2**28)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.ws.close()
        await self.http.aclose()

    async def job(self, graph: dict) -> int:
        pid = str(uuid.uuid4())
        r = await self.http.post(self.url + "/prompt", json={
            "prompt": graph, "client_id": self.client_id, "prompt_id": pid, "extra_data": {}})
        r.raise_for_status()
        while True:
            msg = await self.ws.recv()
            if isinstance(msg, str):
                data = json.loads(msg)
                d = data.get("data") or {}
                if data.get("type") == "executing" and d.get("node") is None \
                        and d.get("prompt_id") == pid:
                    break
        entry = (await self.http.get(f"{self.url}/history/{pid}")).json()[pid]
        size = 0
        for out in entry["outputs"].values():
            for img in out.get("images", []):
                r = await self.http.get(self.url + "/view", params=img)
                size += len(r.content)
        return size


async def measure_overhead(url: str, jobs: int, block: int = 10, graph_for=tiny_graph,
                           videos_only: bool = False) -> dict[str, list[float]]:
    from isengard_desktop.core.comfy.client import ComfyClient

    tiny_graph = graph_for   # noqa: N806 - the job's graph (pictures or a video)

    times: dict[str, list[float]] = {"raw": [], "client": []}
    n = 0
    events: list = []
    async with RawClient(url) as raw, ComfyClient(url) as client:
        await client.connect()
        # warm-up: both paths once
        await raw.job(tiny_graph(n := n + 1))
        await client.run(tiny_graph(n := n + 1))
        order = ["raw", "client"]
        while len(times["client"]) < jobs:
            for side in order:
                for _ in range(block):
                    n += 1
                    t0 = time.perf_counter()
                    if side == "raw":
                        await raw.job(tiny_graph(n))
                    else:
                        result = await client.run(tiny_graph(n), on_event=events.append)
                        for ref in result.images:
                            if ref.is_video or not videos_only:
                                await client.fetch_image(ref)
                    times[side].append(time.perf_counter() - t0)
                events.clear()
            order.reverse()
    return times


# --------------------------------------------------------------------------- (b) fan-out

async def fanout(urls: list[str], jobs: int) -> float:
    from isengard_desktop.core.comfy.client import ComfyClient
    from isengard_desktop.core.comfy.routing import ServerView, choose_server, models_from_object_info, needs_from_graph

    clients = {url: ComfyClient(url) for url in urls}
    try:
        models = {}
        for url, client in clients.items():
            await client.connect()
            models[url] = models_from_object_info(await client.object_info())
        in_flight = {url: 0 for url in urls}

        async def one(n: int) -> None:
            graph = blur_graph(n)
            views = [ServerView(key=url, label=url, healthy=True, state="ready",
                                models=models[url], in_flight=in_flight[url]) for url in urls]
            route = choose_server(views, needs_from_graph(graph))
            in_flight[route.server] += 1
            try:
                result = await clients[route.server].run(graph)
                for ref in result.images:
                    await clients[route.server].fetch_image(ref)
            finally:
                in_flight[route.server] -= 1

        base = int(time.time() * 1000) % 100000 * 100   # fresh colours: no cache hits
        t0 = time.perf_counter()
        await asyncio.gather(*(one(base + i) for i in range(jobs)))
        return time.perf_counter() - t0
    finally:
        for client in clients.values():
            await client.aclose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="40 jobs, 0.05 s nodes, 1 repetition")
    parser.add_argument("--jobs", type=int, default=None, help="jobs per side in (a)")
    parser.add_argument("--node-delay", type=float, default=None, help="seconds per node in (b)")
    parser.add_argument("--reps", type=int, default=None, help="repetitions of (b)")
    parser.add_argument("--video-jobs", type=int, default=None, help="jobs per side in (c)")
    args = parser.parse_args(argv)
    prepare_env()
    jobs = args.jobs or (40 if args.quick else 200)
    node_delay = args.node_delay if args.node_delay is not None else (0.05 if args.quick else 0.1)
    reps = args.reps or (1 if args.quick else 3)
    video_jobs = args.video_jobs or (20 if args.quick else 50)

    from tests.helpers.comfy_double import ComfyDouble

    with fresh_home("generation"):
        with ComfyDouble() as double:
            times = asyncio.run(measure_overhead(double.url, jobs))
            vtimes = asyncio.run(measure_overhead(double.url, video_jobs, block=5,
                                                  graph_for=video_graph, videos_only=True))
        raw_ms, client_ms = median(times["raw"]), median(times["client"])
        overhead = ratio(client_ms, raw_ms)
        print_table("(a) per-job time, tiny workflow (median)", [
            ("raw httpx + websockets", fmt_ms(raw_ms)),
            ("ComfyClient.run + fetch_image", fmt_ms(client_ms)),
            ("ratio client / raw", f"{overhead:.2f}x (goal <= {GOAL_OVERHEAD})"),
            ("jobs per side", str(len(times["client"]))),
        ])
        vraw_ms, vclient_ms = median(vtimes["raw"]), median(vtimes["client"])
        voverhead = ratio(vclient_ms, vraw_ms)
        print_table("(c) per-job time, 9-frame MP4 video job (median)", [
            ("raw httpx + websockets", fmt_ms(vraw_ms)),
            ("ComfyClient.run + fetch of the clip", fmt_ms(vclient_ms)),
            ("ratio client / raw", f"{voverhead:.2f}x (goal <= {GOAL_OVERHEAD})"),
            ("jobs per side", str(len(vtimes["client"]))),
        ])

        walls: dict[int, float] = {}
        for count in (1, 2, 4):
            doubles = [ComfyDouble(node_delay=node_delay) for _ in range(count)]
            try:
                urls = [d.start() for d in doubles]
                walls[count] = median([asyncio.run(fanout(urls, FANOUT_JOBS)) for _ in range(reps)])
            finally:
                for d in doubles:
                    d.stop()
        speed = {c: ratio(walls[1], walls[c]) for c in walls}
        ideal = FANOUT_JOBS * 3 * node_delay
        print_table(f"(b) {FANOUT_JOBS} jobs, 3 nodes x {node_delay:g} s, routed by load", [
            *((f"{c} server(s)", f"{walls[c]:.2f} s  throughput {speed[c]:.2f}x "
               f"({FANOUT_JOBS / walls[c]:.1f} jobs/s)") for c in (1, 2, 4)),
            ("ideal 1 server", f"{ideal:.2f} s"),
        ])
    figures = {
        "raw_job_ms": raw_ms * 1000, "client_job_ms": client_ms * 1000,
        "client_over_raw": overhead, "fanout_node_delay_s": node_delay,
        "video_raw_job_ms": vraw_ms * 1000, "video_client_job_ms": vclient_ms * 1000,
        "video_client_over_raw": voverhead,
        "fanout_wall_s": {str(c): walls[c] for c in walls},
        "fanout_throughput_vs_1": {str(c): speed[c] for c in speed},
    }
    goals = {"client_overhead": overhead <= GOAL_OVERHEAD,
             "video_client_overhead": voverhead <= GOAL_OVERHEAD,
             **{f"scale_{c}_servers": speed[c] >= GOAL_SCALE[c] for c in GOAL_SCALE}}
    emit_json("generation_overhead", figures, goals)
    return 0


if __name__ == "__main__":
    sys.exit(main())
