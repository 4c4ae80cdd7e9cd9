"""The draft funnel's rules (core/comfy/funnel.py) and the lineage columns of the
``generations`` table (migration 8)."""

from __future__ import annotations

import sqlite3

import pytest

from isengard_desktop.core.comfy.funnel import (DRAFT_SIDE_SCALE, MAX_SEED, FunnelSizes,
                                                draft_request, lineage_rows, more_like_request,
                                                nearby_seed, next_stage, scaled_size,
                                                stage_request)
from isengard_desktop.core.comfy.jobs import GalleryItem, GenerationRequest, LoraChoice
from isengard_desktop.core.db.generations import GenerationsRepository
from isengard_desktop.core.db.schema import MIGRATIONS, SCHEMA_VERSION, connect


@pytest.fixture
def conn(tmp_path):
    c = connect(tmp_path / "db.sqlite3")
    yield c
    c.close()


def item(**changes) -> GalleryItem:
    values = dict(id=0, job_id="job1", path="/out/x.png", prompt="ohwx, a cat", negative="ugly",
                  seed=42, width=768, height=768, workflow="sdxl-lora",
                  model="sdxl.safetensors", lora_path="/loras/a.safetensors",
                  lora_strength=0.8, character_id=None, status="gallery",
                  params={"prompt": "a cat", "negative": "ugly", "family": "sdxl",
                          "model": "sdxl.safetensors", "aspect": "4:5", "tier": "Draft",
                          "features": ["controlnet"],
                          "feature_inputs": {"controlnet_image": "/c.png"},
                          "lora": {"character_id": 3, "path": "/loras/a.safetensors",
                                   "strength": 0.8, "trigger": "ohwx"},
                          "size_scale": DRAFT_SIDE_SCALE, "server_tier": "draft"},
                  funnel_id="f1", stage="draft")
    values.update(changes)
    return GalleryItem(**values)


def test_sizes_clamp_and_decrease():
    assert FunnelSizes() == FunnelSizes(20, 8, 3, 1)
    assert FunnelSizes.from_values(6, 3, 1) == FunnelSizes(6, 3, 1)
    assert FunnelSizes.from_values(4, 9, 7) == FunnelSizes(4, 4, 4)     # never more than made
    assert FunnelSizes.from_values(500, 0, -1) == FunnelSizes(64, 1, 1)
    sizes = FunnelSizes(6, 3, 1)
    assert [sizes.keep(s) for s in ("draft", "standard", "final")] == [3, 1, 1]
    assert next_stage("draft") == "standard" and next_stage("final") is None
    with pytest.raises(ValueError, match="Unknown funnel stage 'x'"):
        next_stage("x")
    assert nearby_seed(MAX_SEED, 2) == 1
    assert scaled_size(1024, 1024, 0.75, 64) == (768, 768)
    assert scaled_size(832, 1216, 0.75, 64) == (640, 896)
    assert scaled_size(512, 512, 0.25, 64) == (256, 256)


def test_requests_keep_seeds_and_set_lineage():
    base = GenerationRequest(prompt="a cat", family="sdxl", model="sdxl.safetensors",
                             tier="High", seed=None, batch=1,
                             features=frozenset({"upscale", "controlnet"}))
    drafts = draft_request(base, FunnelSizes(6, 3, 1), "f1", seed=1000)
    assert (drafts.batch, drafts.seed, drafts.tier, drafts.stage, drafts.server_tier) == \
        (6, 1000, "Draft", "draft", "draft")
    assert drafts.size_scale == DRAFT_SIDE_SCALE and drafts.features == {"controlnet"}
    draft = item(id=7, seed=1003)
    standard = stage_request(draft, "standard")
    assert standard.seed == 1003 and standard.parent_id == 7
    assert standard.parent_image == "/out/x.png" and standard.stage == "standard"
    assert standard.tier == "Standard" and standard.server_tier == "standard"
    assert standard.size_scale == 1.0 and standard.batch == 1
    assert standard.features == {"img2img", "controlnet"}
    assert standard.feature_inputs == {"controlnet_image": "/c.png", "denoise": "0.55"}
    assert standard.lora == LoraChoice(3, "/loras/a.safetensors", 0.8, "ohwx")
    assert standard.prompt == "a cat" and standard.aspect == "4:5"
    final = stage_request(item(id=9, seed=1003, stage="standard"), "final", upscale=True)
    assert final.tier == "High" and final.features == {"img2img", "controlnet", "upscale"}
    assert final.feature_inputs["denoise"] == "0.35" and final.seed == 1003
    with pytest.raises(ValueError, match="not made from a parent"):
        stage_request(draft, "draft")
    more = more_like_request(draft, 0.3, 4)
    assert (more.seed, more.batch, more.parent_id, more.stage, more.funnel_id) == \
        (1004, 4, 7, "draft", "f1")
    assert more.origin == "more_like_this" and more.feature_inputs["denoise"] == "0.30"
    assert more.size_scale == DRAFT_SIDE_SCALE and more.server_tier == "draft"
    with pytest.raises(ValueError, match="between 1 and 16"):
        more_like_request(draft, 0.3, 0)


def test_lineage_columns_survive_and_the_tree_reads_back(conn, tmp_path):
    assert SCHEMA_VERSION == len(MIGRATIONS) >= 8
    repo = GenerationsRepository(conn)
    [root] = repo.insert([item(seed=10)])
    kids = repo.insert([item(seed=11, parent_id=root.id, stage="standard"),
                        item(seed=12, parent_id=root.id, stage="draft",
                             params={"origin": "more_like_this",
                                     "feature_inputs": {"denoise": "0.35"}})])
    [grandchild] = repo.insert([item(seed=11, parent_id=kids[0].id, stage="final")])
    [other] = repo.insert([item(seed=99, funnel_id="f2")])
    [orphan] = repo.insert([item(seed=5, parent_id=123456)])     # a parent gone: NULL
    assert orphan.parent_id is None
    assert kids[0].parent_id == root.id and kids[0].stage == "standard"
    assert repo.set_pick([root.id, kids[0].id], "keep")[0].pick == "keep"
    with pytest.raises(ValueError, match="pick"):
        repo.set_pick([root.id], "maybe")
    tree = repo.lineage(grandchild.id)
    assert [i.id for i in tree] == [root.id, kids[0].id, kids[1].id, grandchild.id]
    rows = lineage_rows(tree, grandchild.id)
    assert [(r.id, r.depth, r.current) for r in rows] == [
        (root.id, 0, False), (kids[0].id, 1, False), (grandchild.id, 2, True),
        (kids[1].id, 1, False)]
    assert rows[0].label == "Drafts · seed 10 · kept"
    assert rows[1].label == "Standard · seed 11 · kept"
    assert rows[3].label == "Drafts · seed 12 · more like this · denoise 0.35"
    assert [i.id for i in repo.lineage(other.id)] == [other.id]
    # deleting a parent keeps the child, without a parent
    repo.delete([root.id])
    assert repo.get([kids[0].id])[0].parent_id is None


def test_upgrade_from_version_7_keeps_generations(tmp_path):
    db = tmp_path / "old.sqlite3"
    old = sqlite3.connect(db, isolation_level=None)
    for statements in MIGRATIONS[:7]:
        for statement in statements:
            old.execute(statement)
    old.execute("PRAGMA user_version = 7")
    old.execute("INSERT INTO generations(job_id, path, created) VALUES ('j', 'a.png', 'now')")
    old.close()
    conn = connect(db)
    try:
        [row] = GenerationsRepository(conn).list_items()
        assert (row.parent_id, row.funnel_id, row.stage, row.pick) == (None, "", "", "")
    finally:
        conn.close()
