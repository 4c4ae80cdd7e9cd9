"""Server tiers and batch spreading against ComfyUI doubles over real sockets (pytest-qt +
the app's qasync loop): tier routing, overflow, failover, batch split with a seed per
picture, missing-model skip, and speed-weighted spreading."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.helpers.comfy_double import make_comfy_double  # noqa: F401
from tests.helpers.generation_harness import SD15, WAIT, Harness, request


@pytest.fixture
def qloop(qt_asyncio_loop):
    return qt_asyncio_loop


@pytest.fixture
def harness(qtbot, qloop):
    h = Harness(qtbot, qloop)
    h.notices = []
    yield h
    h.close()


def start(harness, tiers: dict, urls: list[str]):
    harness.settings.settings = replace(harness.settings.settings, server_tiers=tiers)
    service = harness.start(urls)
    service.job_notice.connect(lambda job, message: harness.notices.append((job, message)))
    return service


def seeds_sent(double) -> list[int]:
    """The KSampler seeds of the prompts the double queued."""
    out = []
    for body in double.accepted_prompts:
        for node in body["prompt"].values():
            if node["class_type"] == "KSampler":
                out.append(int(node["inputs"]["seed"]))
    return out


def label(double) -> str:
    return double.url.split("//")[1]


def test_jobs_go_to_their_tier(harness, make_comfy_double):
    draft = make_comfy_double(models={"checkpoints": [SD15]})
    final = make_comfy_double(models={"checkpoints": [SD15]})
    service = start(harness, {draft.url: "draft", final.url: "final"}, [final.url, draft.url])
    assert {s.url: s.tier for s in service.servers()} == {draft.url: "draft",
                                                         final.url: "final"}
    kind, _, items = harness.outcome(service.submit(request(tier="Draft", batch=3)))
    assert kind == "finished", items
    assert {i.server for i in items} == {draft.url}
    # the Generate tab may set the tier itself; High quality goes to the final card
    kind, _, items = harness.outcome(service.submit(request(tier="Draft", server_tier="final")))
    assert [i.server for i in items] == [final.url]
    kind, _, items = harness.outcome(service.submit(request(tier="High")))
    assert [i.server for i in items] == [final.url]
    assert (len(draft.accepted_prompts), len(final.accepted_prompts)) == (3, 2)
    # no standard server: a standard job runs on the next tier up and the user is told
    job = service.submit(request(tier="Standard"))
    kind, _, items = harness.outcome(job)
    assert [i.server for i in items] == [final.url]
    assert any(j == job and "No Standard server" in m for j, m in harness.notices)
    # an unknown tier is refused with its name
    kind, _, message = harness.outcome(service.submit(request(server_tier="huge")))
    assert kind == "failed" and "Unknown server tier 'huge'" in message


def test_batch_of_eight_is_split_over_four_servers_with_a_seed_each(harness,
                                                                   make_comfy_double):
    doubles = [make_comfy_double(models={"checkpoints": [SD15]}, image_delay=0.5)
               for _ in range(4)]
    other = make_comfy_double(models={"checkpoints": [SD15]})       # another tier: unused
    tiers = {d.url: "draft" for d in doubles} | {other.url: "final"}
    service = start(harness, tiers, [other.url] + [d.url for d in doubles])
    job = service.submit(request(tier="Draft", batch=8, seed=1234))
    kind, _, items = harness.outcome(job)
    assert kind == "finished", items
    assert [i.seed for i in items] == list(range(1234, 1242))       # gathered in order
    assert [len(d.accepted_prompts) for d in doubles] == [2, 2, 2, 2]
    assert sorted(s for d in doubles for s in seeds_sent(d)) == list(range(1234, 1242))
    assert other.accepted_prompts == []
    # each picture's seed is the one its server was sent
    by_server = {d.url: seeds_sent(d) for d in doubles}
    assert all(i.seed in by_server[i.server] for i in items)


def test_overflow_into_the_next_tier_when_the_tier_is_busy(harness, make_comfy_double):
    draft = make_comfy_double(models={"checkpoints": [SD15]}, image_delay=1.5)
    standard = make_comfy_double(models={"checkpoints": [SD15]})
    service = start(harness, {draft.url: "draft", standard.url: "standard"},
                    [draft.url, standard.url])
    first = service.submit(request(tier="Draft", seed=1))
    second = service.submit(request(tier="Draft", seed=2))
    pool_draft = service.pool.get(draft.url)
    harness.qtbot.waitUntil(lambda: pool_draft.in_flight == 2, timeout=WAIT)
    # one running, one waiting on the only draft card (threshold 2): the next draft job
    # goes to the standard card
    third = service.submit(request(tier="Draft", seed=3))
    kind, _, items = harness.outcome(third)
    assert kind == "finished" and [i.server for i in items] == [standard.url]
    assert any(j == third and "busy with other work" in m and label(standard) in m
               for j, m in harness.notices)
    for job in (first, second):
        kind, _, items = harness.outcome(job)
        assert kind == "finished" and [i.server for i in items] == [draft.url]
    # not busy any more: a draft job stays on the draft card
    kind, _, items = harness.outcome(service.submit(request(tier="Draft", seed=4)))
    assert [i.server for i in items] == [draft.url]


def test_a_server_killed_mid_batch_hands_its_pictures_to_the_others(harness,
                                                                   make_comfy_double):
    doubles = [make_comfy_double(models={"checkpoints": [SD15]}, image_delay=0.4)
               for _ in range(3)]
    service = start(harness, {d.url: "draft" for d in doubles}, [d.url for d in doubles])
    victim = doubles[1]
    job = service.submit(request(tier="Draft", batch=6, seed=50))
    harness.qtbot.waitUntil(lambda: bool(victim.queue_state()[0]), timeout=WAIT)
    victim.kill()
    kind, _, items = harness.outcome(job)
    assert kind == "finished", items
    assert [i.seed for i in items] == list(range(50, 56))
    assert victim.url not in {i.server for i in items}
    moved = [m for j, m in harness.notices if j == job and "goes to another server" in m]
    assert moved and label(victim) in moved[0]
    harness.qtbot.waitUntil(
        lambda: next(s for s in service.servers() if s.url == victim.url).state == "offline",
        timeout=WAIT)


def test_a_server_without_the_model_is_skipped_and_the_user_told(harness, make_comfy_double):
    has = make_comfy_double(models={"checkpoints": [SD15]})
    lacks = make_comfy_double(models={"checkpoints": ["other.safetensors"]})
    service = start(harness, {has.url: "draft", lacks.url: "draft"}, [lacks.url, has.url])
    job = service.submit(request(tier="Draft", batch=4))
    kind, _, items = harness.outcome(job)
    assert kind == "finished" and {i.server for i in items} == {has.url}
    assert lacks.accepted_prompts == []
    skipped = [m for j, m in harness.notices if j == job and "was skipped" in m]
    assert len(skipped) == 1
    assert label(lacks) in skipped[0] and f"checkpoint '{SD15}' is missing" in skipped[0]


def test_a_faster_server_takes_more_pictures(harness, make_comfy_double):
    fast = make_comfy_double(models={"checkpoints": [SD15]}, image_delay=0.05)
    slow = make_comfy_double(models={"checkpoints": [SD15]}, image_delay=0.6)
    service = start(harness, {fast.url: "standard", slow.url: "standard"},
                    [slow.url, fast.url])
    kind, _, items = harness.outcome(service.submit(request(tier="Standard", batch=10)))
    assert kind == "finished", items
    on_fast = sum(i.server == fast.url for i in items)
    assert on_fast > 10 - on_fast >= 1, (on_fast, [i.server for i in items])
    # the speeds were measured (seconds per picture, a moving average per server)
    assert service.pool.get(slow.url).sec_per_picture > service.pool.get(fast.url).sec_per_picture
