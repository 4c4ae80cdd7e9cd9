"""Server tiers: defaults from the GPUs, home tier, overflow, the mixed-speed tail rule."""

from __future__ import annotations

import pytest

from isengard_desktop.core.comfy.tiers import (TierCandidate, default_tiers, job_tier,
                                               should_wait, tier_servers)
from isengard_desktop.core.hardware.machine import GpuInfo, GpuVendor


def gpu(index: int, vram_mb: int) -> GpuInfo:
    return GpuInfo(GpuVendor.NVIDIA, f"card {index}", vram_mb=vram_mb, index=index)


def test_defaults_from_the_cards():
    assert default_tiers([]) == {}
    assert default_tiers([gpu(0, 24000)]) == {}
    tiers = default_tiers([gpu(0, 12000), gpu(1, 24000), gpu(2, 8000), gpu(3, 24000)])
    assert tiers == {"gpu0": "standard", "gpu1": "final", "gpu2": "draft", "gpu3": "standard"}


def test_job_tier_from_quality_or_given():
    assert job_tier("", "Draft") == "draft"
    assert job_tier("", "High") == "final"
    assert job_tier("", "Standard") == "standard"
    assert job_tier("draft", "High") == "draft"
    with pytest.raises(ValueError, match="Unknown server tier 'huge'"):
        job_tier("huge", "Draft")


def test_home_tier_then_nearest_up_then_down():
    cands = [TierCandidate("a", "final"), TierCandidate("b", "draft"),
             TierCandidate("c", "draft", other_load=1)]
    assert tier_servers("draft", cands) == (["b", "c"], "draft", False)
    assert tier_servers("final", cands) == (["a"], "final", False)
    # no standard server: a standard job goes up to final first
    assert tier_servers("standard", cands)[:2] == (["a"], "final")
    # only drafts: a final job runs there (nothing else can take it)
    assert tier_servers("final", cands[1:])[:2] == (["b", "c"], "draft")
    assert tier_servers("draft", []) == ([], "draft", False)


def test_overflow_only_when_other_work_fills_the_tier():
    busy = [TierCandidate("d1", "draft", other_load=2), TierCandidate("d2", "draft", 3),
            TierCandidate("s", "standard", 0), TierCandidate("f", "final", 0)]
    keys, home, overflow = tier_servers("draft", busy)
    assert (keys, home, overflow) == (["d1", "d2", "s"], "draft", True)
    # one draft card below the threshold: no overflow
    calm = [TierCandidate("d1", "draft", 1), *busy[1:]]
    assert tier_servers("draft", calm) == (["d1", "d2"], "draft", False)
    # the standard tier busy too: the final card helps
    both = [*busy[:2], TierCandidate("s", "standard", 5), busy[3]]
    assert tier_servers("draft", both)[0] == ["d1", "d2", "f"]
    # a final job never spills down
    full = [TierCandidate("f", "final", 9), TierCandidate("s", "standard", 0)]
    assert tier_servers("final", full) == (["f"], "final", False)


def test_slow_server_leaves_the_tail_to_a_faster_one():
    speeds = {"fast": 1.0, "slow": 3.0}
    # one picture left, fast finishes its current one in 0.5 s and the next at 1.5 < 3
    assert should_wait("slow", 1, speeds, {"fast": 0.5})
    # four left: fast would do two of them before slow finishes one; slow takes one
    assert not should_wait("slow", 4, speeds, {"fast": 0.5})
    # the fast one never waits for the slow one; unknown speeds never wait
    assert not should_wait("fast", 1, speeds, {"slow": 0.1})
    assert not should_wait("new", 1, speeds, {"fast": 0.0})
    assert not should_wait("slow", 1, {"slow": 3.0}, {"fast": 0.5})


def test_settings_keep_only_known_tiers(tmp_path):
    import json

    from isengard_desktop.core.settings import load_settings, save_settings

    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"version": 1, "server_tiers": {
        "gpu0": "final", "gpu1": "huge", "http://box:8188": "draft", "gpu2": 3}}))
    settings = load_settings(path)
    assert settings.server_tiers == {"gpu0": "final", "http://box:8188": "draft"}
    save_settings(path, settings)
    assert load_settings(path).server_tiers == settings.server_tiers
    path.write_text(json.dumps({"version": 1, "server_tiers": ["final"]}))
    assert load_settings(path).server_tiers == {}


def test_the_double_sees_gpus_as_torch_does():
    from tests.helpers.fake_comfyui_main import visible_gpus

    cards = [{"name": "a"}, {"name": "b"}, {"name": "c"}]
    names = lambda env: [g["name"] for g in visible_gpus(cards, env)]  # noqa: E731
    assert names({}) == ["a", "b", "c"]
    assert names({"CUDA_VISIBLE_DEVICES": "2"}) == ["c"]
    assert names({"CUDA_VISIBLE_DEVICES": "1,0"}) == ["b", "a"]
    # read up to the first entry that is not a device; an empty list hides every card
    assert names({"CUDA_VISIBLE_DEVICES": "1,7,0"}) == ["b"]
    assert names({"CUDA_VISIBLE_DEVICES": ""}) == []
    # AMD: HIP_VISIBLE_DEVICES first; an NVIDIA machine ignores it
    amd = [dict(c, vendor="amd") for c in cards]
    assert [g["name"] for g in visible_gpus(amd, {"HIP_VISIBLE_DEVICES": "1",
                                                  "CUDA_VISIBLE_DEVICES": "0"})] == ["b"]
    assert names({"HIP_VISIBLE_DEVICES": "1"}) == ["a", "b", "c"]


def test_free_port_never_hands_the_same_port_twice_in_a_row(monkeypatch):
    import socket

    from isengard_desktop.services.generation import comfy_launch

    offered = iter([47001, 47001, 47001, 47002])     # the OS offers a port again

    class Sock:
        def __init__(self, *a):
            self.port = 0

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return None

        def bind(self, addr):
            self.port = next(offered)

        def getsockname(self):
            return ("127.0.0.1", self.port)

    monkeypatch.setattr(comfy_launch, "_HANDED", {})
    monkeypatch.setattr(comfy_launch.socket, "socket", Sock)
    assert comfy_launch.free_port() == 47001
    assert comfy_launch.free_port() == 47002      # not 47001 again: another server has it
    monkeypatch.setattr(comfy_launch.socket, "socket", socket.socket)
