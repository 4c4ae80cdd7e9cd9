"""The draft funnel on GPU tiers (service level, ComfyUI doubles over real sockets): drafts
render on the draft server (split across two of them), the kept drafts' standard pictures on
the standard server with the same seeds, the final on the final server, and "more like this"
on the tier of its picture's stage. Lineage read back from the database."""

from __future__ import annotations

from dataclasses import replace

import pytest

from isengard_desktop.core.comfy.funnel import FunnelSizes
from tests.helpers.comfy_double import make_comfy_double  # noqa: F401
from tests.helpers.generation_harness import SD15, WAIT, Harness, request


@pytest.fixture
def harness(qtbot, qt_asyncio_loop):
    h = Harness(qtbot, qt_asyncio_loop)
    yield h
    h.close()


def seeds_sent(double) -> list[int]:
    return sorted(int(node["inputs"]["seed"]) for body in double.accepted_prompts
                  for node in body["prompt"].values() if node["class_type"] == "KSampler")


def test_each_stage_renders_on_its_tier_with_the_same_seeds(harness, make_comfy_double, qtbot):
    drafts_a, drafts_b = (make_comfy_double(models={"checkpoints": [SD15]}, image_delay=0.2)
                          for _ in range(2))
    standard = make_comfy_double(models={"checkpoints": [SD15]})
    final = make_comfy_double(models={"checkpoints": [SD15]})
    harness.settings.settings = replace(harness.settings.settings, server_tiers={
        drafts_a.url: "draft", drafts_b.url: "draft", standard.url: "standard",
        final.url: "final"})
    service = harness.start([final.url, standard.url, drafts_a.url, drafts_b.url])

    funnel_id, job = service.explore(request(seed=700, tier="High"), FunnelSizes(4, 2, 1))
    kind, _, drafts = harness.outcome(job)
    assert kind == "finished", drafts
    assert sorted(d.seed for d in drafts) == [700, 701, 702, 703]
    assert {d.server for d in drafts} == {drafts_a.url, drafts_b.url}   # split over the tier
    assert sorted(seeds_sent(drafts_a) + seeds_sent(drafts_b)) == [700, 701, 702, 703]
    assert standard.accepted_prompts == [] and final.accepted_prompts == []

    kept = sorted(drafts, key=lambda d: d.seed)[1:3]                    # seeds 701, 702
    service.set_pick([k.id for k in kept], "keep")
    jobs = service.advance(funnel_id, "draft")
    assert len(jobs) == 2
    made = [harness.outcome(j) for j in jobs]
    assert all(kind == "finished" for kind, _, _ in made), made
    standards = [item for _, _, items in made for item in items]
    assert {s.server for s in standards} == {standard.url}
    assert seeds_sent(standard) == [701, 702]
    assert sorted((s.parent_id, s.seed) for s in standards) == sorted((k.id, k.seed)
                                                                       for k in kept)

    [chosen] = [s for s in standards if s.seed == 702]
    service.set_pick([chosen.id], "keep")
    [job] = service.advance(funnel_id, "standard")
    kind, _, [picture] = harness.outcome(job)
    assert kind == "finished" and picture.server == final.url and picture.seed == 702
    assert seeds_sent(final) == [702]

    # more like this on a draft: the draft tier, nearby seeds, the draft as parent
    before = len(drafts_a.accepted_prompts) + len(drafts_b.accepted_prompts)
    kind, _, children = harness.outcome(service.more_like_this(kept[0].id, 0.3, 2))
    assert kind == "finished"
    assert {c.server for c in children} <= {drafts_a.url, drafts_b.url}
    assert len(drafts_a.accepted_prompts) + len(drafts_b.accepted_prompts) == before + 2
    assert sorted(c.seed for c in children) == [702, 703]
    assert all(c.parent_id == kept[0].id and c.stage == "draft" for c in children)

    rows: list = []
    service.lineage(picture.id, rows.extend)
    qtbot.waitUntil(lambda: bool(rows), timeout=WAIT)
    assert [(r.id, r.depth) for r in rows] == [(kept[1].id, 0), (chosen.id, 1),
                                              (picture.id, 2)]
    assert rows[-1].current and rows[0].label == "Drafts · seed 702 · kept"
