"""Spreading one job's pictures over the servers of its tier (used by :class:`.jobs.JobRunner`).

A job of N pictures (one prompt per picture, seeds ``seed, seed+1, …``) is a queue of N
pictures. :class:`BatchDispatcher` hands the next picture to every allowed server that has
none of this job's pictures running, and the next one again when a server finishes, so each
server gets as many pictures as its speed allows (8 on 4 equal cards = 2 each; a card three
times faster takes about three times as many). Near the end a slow server leaves the last
pictures to a faster one when that would finish them sooner (``tiers.should_wait``, using each
server's measured seconds per picture, a moving average kept on the server).

Which servers are allowed is decided again before every hand-out
(:func:`~...core.comfy.tiers.tier_servers`): healthy, lists every model the job needs
(a server that lacks one is skipped and the job is told which file is missing there), the
graph passes that server's ``/object_info`` check, and of the job's tier (or overflow into the
next tier up when the tier is busy with other work). When a server dies mid-picture, the
picture goes back to the front of the queue, that server is excluded for this job, and the
job is told. Results come back in picture order whatever server made them.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from loguru import logger

from ...core.comfy.errors import ComfyConnectionError
from ...core.comfy.routing import NoServerError, Route, choose_server, rank_servers
from ...core.comfy.tiers import TIER_LABELS, TierCandidate, should_wait, tier_servers
from ...core.types import Progress

__all__ = ["SPEED_WEIGHT", "BatchDispatcher"]

SPEED_WEIGHT = 0.5      # weight of the newest picture in a server's seconds-per-picture average


class BatchDispatcher:
    """Runs the pictures of one job; see the module docstring.

    ``runner`` is the :class:`.jobs.JobRunner` (its pool, ``_graph``, ``_check``,
    ``run_picture``); ``notify(message)`` tells the user something about the job (a server
    skipped, overflow, failover)."""

    def __init__(self, runner: Any, job: Any, parts: list[Any], tier: str,
                 progress: Callable[[Progress], None], notify: Callable[[str], None]) -> None:
        self.runner = runner
        self.pool = runner.pool
        self.job = job
        self.parts = parts
        self.tier = tier
        self.progress = progress
        self.notify = notify
        self.excluded: set[str] = set()
        self.failures: dict[str, str] = {}           # server key -> why it was dropped
        self._told: set[str] = set()
        self._gaps: dict[tuple[str, int], list[str]] = {}   # (server, lists) -> gaps
        self._refreshed = False
        self._fractions: dict[int, float] = {}
        self.assignments: list[tuple[int, str]] = job.assignments  # (picture, server)

    # -- which servers -----------------------------------------------------------------------
    async def allowed(self, own: set[str]) -> list[tuple[Route, Any]]:
        """Servers that may take a picture now, in order (home tier first, best first).
        ``own``: servers running one of this job's pictures. Raises ``JobFailed`` when no
        server at all can run the job."""
        from .jobs import JobFailed

        plan = self.parts[0]
        job = self.job
        lora_folder = str(self.runner.paths.loras)
        while True:
            routes, reasons = rank_servers(self.pool.views(), plan.needs,
                                           model=plan.needs[0].name, exclude=self.excluded,
                                           lora_folder=lora_folder, blocked=job.blocked)
            usable: list[tuple[Route, Any]] = []
            problems: list[tuple[Any, list[str]]] = []
            for route in routes:
                server = self.pool.get(route.server)
                if server is None:
                    continue
                gaps = self._graph_gaps(route, server)
                if gaps:
                    problems.append((server, gaps))
                else:
                    usable.append((route, server))
            if usable:
                self._tell_skipped(reasons, problems)
                return self._by_tier(usable, own)
            if not self._refreshed:
                self._refreshed = True           # a new LoRA or model may not be listed yet
                await self.pool.refresh()
                continue
            if problems:
                if len(problems) == 1 and not reasons:
                    server, gaps = problems[0]
                    raise JobFailed(f"The workflow '{plan.spec.title}' cannot run on "
                                    f"{server.label}:\n" + "\n".join(f"• {g}" for g in gaps))
                raise JobFailed(f"The workflow '{plan.spec.title}' cannot run on any server:\n"
                                + "\n".join(f"• {s.label}: {g}" for s, gaps in problems
                                            for g in gaps))
            if self.failures:
                last = list(self.failures.values())[-1]
                raise JobFailed(f"{last} No other server can take the job.")
            try:
                choose_server(self.pool.views(), plan.needs, exclude=self.excluded,
                              lora_folder=lora_folder, blocked=job.blocked)
            except NoServerError as exc:
                shown = set(job.blocked.values())
                extra = "".join(f"\n• LoRA upload: {p}" for p in job.upload_problems
                                if p not in shown)
                raise JobFailed(str(exc) + extra) from None
            raise JobFailed("The servers changed while the job was being routed; try again.")

    def _graph_gaps(self, route: Route, server: Any) -> list[str]:
        """The check of the job's graph against ``server``'s /object_info (kept per server
        until its lists are read again)."""
        key = (server.key, id(server.object_info))
        gaps = self._gaps.get(key)
        if gaps is None:
            plan = self.parts[0]
            try:
                gaps = self.runner._check(self.runner._graph(plan, route, server), server, plan)
            except ValueError as exc:       # WorkflowError
                gaps = [str(exc)]
            self._gaps[key] = gaps
        return gaps

    def _by_tier(self, usable: list[tuple[Route, Any]], own: set[str]
                 ) -> list[tuple[Route, Any]]:
        cands = []
        for _route, server in usable:
            mine = 1 if server.key in own else 0
            # its queue (all clients, running + waiting) once polled; our prompts routed
            # there count at once (in_flight), each prompt once
            other = max(0, max(server.queue_length, server.in_flight) - mine)
            cands.append(TierCandidate(server.key, server.tier, other))
        keys, home, overflow = tier_servers(self.tier, cands)
        if home != self.tier:
            self._tell_once(f"home:{home}",
                            f"No {TIER_LABELS.get(self.tier, self.tier)} server can take this "
                            f"job; it runs on the {TIER_LABELS.get(home, home)} servers.")
        if overflow:
            extra = [s.label for _r, s in usable if s.key in keys and s.tier != home]
            self._tell_once("overflow:" + ",".join(extra),
                            f"The {TIER_LABELS.get(home, home)} servers are busy with other "
                            f"work; {', '.join(extra)} help with this job.")
        allowed = set(keys)
        home_servers = [pair for pair in usable if pair[1].key in allowed
                        and pair[1].tier == home]
        spill = [pair for pair in usable if pair[1].key in allowed and pair[1].tier != home]
        # overflow: the free servers of the next tier take the next pictures first
        return spill + home_servers if overflow else home_servers

    def _tell_skipped(self, reasons: dict[str, str], problems: list[tuple[Any, list[str]]]
                      ) -> None:
        for key, why in reasons.items():
            server = self.pool.get(key)
            if server is None or key in self.excluded or "missing" not in why:
                continue
            self._tell_once(f"skip:{key}:{why}", f"{server.label} was skipped: {why}.")
        for server, gaps in problems:
            self._tell_once(f"gaps:{server.key}",
                            f"{server.label} was skipped: " + "; ".join(gaps))

    def _tell_once(self, key: str, message: str) -> None:
        if key not in self._told:
            self._told.add(key)
            logger.info("job {}: {}", self.job.job_id, message)
            self.notify(message)

    # -- running -----------------------------------------------------------------------------
    async def run(self) -> list[Any]:
        from .jobs import CANCELLED, JobFailed

        count = len(self.parts)
        pending: deque[int] = deque(range(count))
        results: dict[int, list[Any]] = {}
        running: dict[asyncio.Future, tuple[int, Any, float]] = {}
        try:
            while pending or running:
                if self.job.cancelled:
                    raise JobFailed(CANCELLED)
                if pending:
                    own = {s.key for _i, s, _t in running.values()}
                    allowed = await self.allowed(own)
                    self._hand_out(allowed, pending, running, own)
                if not running:
                    raise JobFailed("No ComfyUI server could take the job's next picture.")
                done, _ = await asyncio.wait(set(running), return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    index, server, started = running.pop(task)
                    try:
                        pictures = task.result()
                    except ComfyConnectionError as exc:
                        if self.job.cancelled:
                            raise JobFailed(CANCELLED) from None
                        self._failed_over(index, server, exc, pending)
                        continue
                    results[index] = pictures
                    self._fractions[index] = 1.0
                    elapsed = time.monotonic() - started
                    server.sec_per_picture = elapsed if server.sec_per_picture <= 0 else (
                        SPEED_WEIGHT * elapsed + (1 - SPEED_WEIGHT) * server.sec_per_picture)
        finally:
            for task in running:
                task.cancel()
            if running:
                await asyncio.gather(*running, return_exceptions=True)
        return [picture for index in sorted(results) for picture in results[index]]

    def _hand_out(self, allowed: list[tuple[Route, Any]], pending: deque[int],
                  running: dict[asyncio.Future, tuple[int, Any, float]], own: set[str]) -> None:
        now = time.monotonic()
        speeds = {s.key: s.sec_per_picture for _r, s in allowed}
        left = {s.key: s.sec_per_picture - (now - t) for _i, s, t in running.values()}
        for route, server in allowed:
            if not pending:
                return
            if server.key in own:
                continue
            if running and should_wait(server.key, len(pending), speeds, left):
                continue
            index = pending.popleft()
            own.add(server.key)
            self.assignments.append((index, server.key))
            task = asyncio.ensure_future(self.runner.run_picture(
                self.job, self.parts[index], route, server, self._reporter(index, server)))
            running[task] = (index, server, now)
            left[server.key] = server.sec_per_picture

    def _failed_over(self, index: int, server: Any, exc: BaseException,
                     pending: deque[int]) -> None:
        logger.warning("job {}: server {} failed: {}", self.job.job_id, server.label, exc)
        reason = str(exc)
        if server.kind == "managed" and not server.healthy and server.message:
            # the supervisor knows better than "connection closed"
            reason = f"{server.label} stopped during the job: {server.message}"
        self.pool.mark_failed(server.key, str(exc))
        self.excluded.add(server.key)
        self.failures[server.key] = reason
        pending.appendleft(index)
        self._fractions[index] = 0.0
        self.notify(f"{server.label} stopped answering during the job ({reason}); picture "
                    f"{index + 1} of {len(self.parts)} goes to another server.")

    def _reporter(self, index: int, server: Any) -> Callable[[Progress], None]:
        count = len(self.parts)
        if count <= 1:
            return self.progress

        def report(p: Progress) -> None:
            self._fractions[index] = p.fraction
            overall = sum(self._fractions.values()) / count
            self.progress(replace(p, overall=overall,
                                  detail=f"picture {index + 1} of {count} on {server.label}"
                                  + (f" · {p.detail}" if p.detail else "")))
        return report
