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
(b) **Fan-out**: 20 jobs submitted at once over 1, 2 and 4 doubles, each node taking a fixed
    ``--node-delay`` (EmptyImage → ImageBlur → SaveImage: 3 nodes, 0.1 s each; ``--quick``
    0.05 s). Each job picks its server with the service's router
    (``core/comfy/routing.choose_server``: healthy, has the models, then least busy), one
    ComfyClient per server. Throughput relative to 1 server (goal: 2 servers ≥ 1.8×,
    4 servers ≥ 3.5×). Repeated 3 times (``--quick`` 1), median.
(c) **One batch over a tier** (issue 17): a 20-picture job spread by the service's own
    dispatcher (``services/generation/batch.py`` ``BatchDispatcher``: each idle server of
    the tier takes the next picture) over 1, 2 and 4 doubles of the same tier, each picture
    3 nodes x ``--node-delay``. Throughput relative to 1 double (goal ≥ 0.9·N).
(d) **Mixed speeds**: the same 20 pictures over a fast and a slow double (node delays
    ``--node-delay`` / 3 and ``--node-delay``: 3x slower). The fast one must take more
    pictures; wall time within 10 % of the ideal split (the best whole-picture split for
    the per-picture times each double showed alone). Run twice on the same servers: the
    first batch starts with no speed measured, the second uses the measured speeds
    (the goal is on the second).
    The dispatcher runs with a stand-in runner (``BenchRunner``: one ComfyClient per
    double, the blur graph, no Qt, no database) so only the spreading is measured.

    .venv/bin/python benchmarks/generation_overhead.py [--quick] [--jobs N] [--node-delay S]
                                                       [--only-batch]
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
BATCH = 20
GOAL_BATCH_SCALE = 0.9        # throughput on N servers >= 0.9 * N
GOAL_MIXED = 1.10             # mixed-speed wall time <= 1.1 x the ideal split


def tiny_graph(n: int) -> dict:
    return {"1": {"class_type": "EmptyImage",
                  "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": n % 0xFFFFFF}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0],
                                                        "filename_prefix": "bench"}}}


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


async def measure_overhead(url: str, jobs: int, block: int = 10) -> dict[str, list[float]]:
    from isengard_desktop.core.comfy.client import ComfyClient

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


# --------------------------------------------------------------------------- (c, d) batch

class BenchPool:
    """The few ServerPool reads the dispatcher makes, over plain Server objects."""

    def __init__(self, servers: list) -> None:
        self.servers = {s.key: s for s in servers}

    def views(self) -> list:
        return [s.view() for s in self.servers.values()]

    def get(self, key: str):  # noqa: ANN201
        return self.servers.get(key)

    async def refresh(self) -> None:
        return None

    def mark_failed(self, key: str, message: str) -> None:
        self.servers[key].state = "offline"


class BenchRunner:
    """What BatchDispatcher asks of JobRunner: the graph check (none here) and one picture:
    the blur graph on that server's ComfyClient, counted in flight like ``JobRunner._run_on``."""

    def __init__(self, pool: BenchPool, clients: dict) -> None:
        from types import SimpleNamespace

        self.pool = pool
        self.clients = clients
        self.paths = SimpleNamespace(loras=Path("."))
        self.colour = int(time.time() * 1000) % 100000 * 100   # fresh: no cache hits

    def _graph(self, plan, route, server) -> dict:  # noqa: ANN001
        return {}

    def _check(self, graph, server, plan) -> list[str]:  # noqa: ANN001
        return []

    async def run_picture(self, job, plan, route, server, progress) -> list:  # noqa: ANN001
        self.colour += 1
        server.in_flight += 1
        try:
            client = self.clients[server.key]
            result = await client.run(blur_graph(self.colour))
            return [await client.fetch_image(ref) for ref in result.images]
        finally:
            server.in_flight -= 1


async def batch_over(urls: list[str], pictures: int, rounds: int = 1
                     ) -> list[tuple[float, dict[str, int]]]:
    """``rounds`` jobs of ``pictures`` one after another on the same servers (speeds
    measured in one carry to the next): (wall seconds, pictures per server) each."""
    from types import SimpleNamespace

    from isengard_desktop.core.comfy.client import ComfyClient
    from isengard_desktop.core.comfy.jobs import ServerState
    from isengard_desktop.core.comfy.routing import ModelNeed
    from isengard_desktop.services.generation.batch import BatchDispatcher
    from isengard_desktop.services.generation.server_state import Server

    need = ModelNeed("checkpoints", "bench.safetensors")
    servers = []
    clients = {}
    for url in urls:
        server = Server(url, url, url, "remote")
        server.state = ServerState.READY
        server.models = {"checkpoints": frozenset({need.name})}
        server.tier = "draft"
        servers.append(server)
        clients[url] = ComfyClient(url)
    runner = BenchRunner(BenchPool(servers), clients)
    out = []
    try:
        for client in clients.values():
            await client.connect()
        for n in range(rounds):
            job = SimpleNamespace(job_id=f"bench{n}", blocked={}, upload_problems=[],
                                  cancelled=False, assignments=[])
            plan = SimpleNamespace(needs=[need], spec=SimpleNamespace(title="bench"))
            dispatcher = BatchDispatcher(runner, job, [plan] * pictures, "draft",
                                         lambda p: None, lambda m: None)
            t0 = time.perf_counter()
            await dispatcher.run()
            wall = time.perf_counter() - t0
            counts = {url: sum(1 for _i, k in job.assignments if k == url) for url in urls}
            out.append((wall, counts))
    finally:
        for client in clients.values():
            await client.aclose()
    return out


def ideal_split(pictures: int, per_picture: list[float]) -> float:
    """The shortest wall time of any whole-picture split over servers with these times."""
    if len(per_picture) == 1:
        return pictures * per_picture[0]
    a, b = per_picture
    return min(max(k * a, (pictures - k) * b) for k in range(pictures + 1))


def measure_batches(node_delay: float, reps: int) -> tuple[dict, dict]:
    from tests.helpers.comfy_double import ComfyDouble

    walls: dict[int, float] = {}
    for count in (1, 2, 4):
        doubles = [ComfyDouble(node_delay=node_delay) for _ in range(count)]
        try:
            urls = [d.start() for d in doubles]
            walls[count] = median([asyncio.run(batch_over(urls, BATCH))[0][0]
                                   for _ in range(reps)])
        finally:
            for d in doubles:
                d.stop()
    speed = {c: ratio(walls[1], walls[c]) for c in walls}
    print_table(f"(c) one {BATCH}-picture job over N doubles of its tier "
                f"(3 nodes x {node_delay:g} s a picture)", [
        *((f"{c} double(s)", f"{walls[c]:.2f} s  throughput {speed[c]:.2f}x "
           f"(goal >= {GOAL_BATCH_SCALE * c:.1f}x)") for c in (1, 2, 4)),
    ])

    fast_delay, slow_delay = node_delay / 3, node_delay
    fast, slow = ComfyDouble(node_delay=fast_delay), ComfyDouble(node_delay=slow_delay)
    try:
        urls = [fast.start(), slow.start()]
        solo = [asyncio.run(batch_over([u], BATCH))[0][0] / BATCH for u in urls]
        runs = asyncio.run(batch_over(urls, BATCH, rounds=2))
    finally:
        fast.stop()
        slow.stop()
    ideal = ideal_split(BATCH, solo)
    (cold, cold_counts), (warm, warm_counts) = runs
    print_table(f"(d) {BATCH} pictures over a fast and a 3x slower double", [
        ("per picture alone", f"fast {solo[0] * 1000:.0f} ms, slow {solo[1] * 1000:.0f} ms"),
        ("ideal split", f"{ideal:.2f} s"),
        ("first batch (no speeds yet)", f"{cold:.2f} s = {cold / ideal:.2f}x ideal; fast "
         f"{cold_counts[urls[0]]}, slow {cold_counts[urls[1]]}"),
        ("second batch (measured speeds)", f"{warm:.2f} s = {warm / ideal:.2f}x ideal; fast "
         f"{warm_counts[urls[0]]}, slow {warm_counts[urls[1]]} (goal <= {GOAL_MIXED}x)"),
    ])
    figures = {
        "batch_node_delay_s": node_delay,
        "batch_wall_s": {str(c): walls[c] for c in walls},
        "batch_throughput_vs_1": {str(c): speed[c] for c in speed},
        "mixed_solo_s_per_picture": {"fast": solo[0], "slow": solo[1]},
        "mixed_ideal_s": ideal, "mixed_cold_s": cold, "mixed_warm_s": warm,
        "mixed_cold_counts": {"fast": cold_counts[urls[0]], "slow": cold_counts[urls[1]]},
        "mixed_warm_counts": {"fast": warm_counts[urls[0]], "slow": warm_counts[urls[1]]},
    }
    goals = {**{f"batch_scale_{c}": speed[c] >= GOAL_BATCH_SCALE * c for c in (2, 4)},
             "mixed_fast_takes_more": warm_counts[urls[0]] > warm_counts[urls[1]],
             "mixed_within_10pct": warm <= GOAL_MIXED * ideal}
    return figures, goals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="40 jobs, 0.05 s nodes, 1 repetition")
    parser.add_argument("--jobs", type=int, default=None, help="jobs per side in (a)")
    parser.add_argument("--node-delay", type=float, default=None, help="seconds per node in (b)")
    parser.add_argument("--reps", type=int, default=None, help="repetitions of (b)")
    parser.add_argument("--only-batch", action="store_true", help="only (c) and (d)")
    args = parser.parse_args(argv)
    prepare_env()
    jobs = args.jobs or (40 if args.quick else 200)
    node_delay = args.node_delay if args.node_delay is not None else (0.05 if args.quick else 0.1)
    reps = args.reps or (1 if args.quick else 3)

    from tests.helpers.comfy_double import ComfyDouble

    if args.only_batch:
        with fresh_home("generation"):
            figures, goals = measure_batches(node_delay, reps)
        emit_json("generation_overhead", figures, goals)
        return 0
    with fresh_home("generation"):
        batch_figures, batch_goals = measure_batches(node_delay, reps)
        with ComfyDouble() as double:
            times = asyncio.run(measure_overhead(double.url, jobs))
        raw_ms, client_ms = median(times["raw"]), median(times["client"])
        overhead = ratio(client_ms, raw_ms)
        print_table("(a) per-job time, tiny workflow (median)", [
            ("raw httpx + websockets", fmt_ms(raw_ms)),
            ("ComfyClient.run + fetch_image", fmt_ms(client_ms)),
            ("ratio client / raw", f"{overhead:.2f}x (goal <= {GOAL_OVERHEAD})"),
            ("jobs per side", str(len(times["client"]))),
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
        "fanout_wall_s": {str(c): walls[c] for c in walls},
        "fanout_throughput_vs_1": {str(c): speed[c] for c in speed},
        **batch_figures,
    }
    goals = {"client_overhead": overhead <= GOAL_OVERHEAD,
             **{f"scale_{c}_servers": speed[c] >= GOAL_SCALE[c] for c in GOAL_SCALE},
             **batch_goals}
    emit_json("generation_overhead", figures, goals)
    return 0


if __name__ == "__main__":
    sys.exit(main())
