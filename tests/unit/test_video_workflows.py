"""The video workflows: manifest entries, substitution (fuzzed prompts and image names), the
availability check against the recorded ComfyUI 0.3.64 /object_info, and catalogue coverage."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from isengard_desktop.core.comfy.graph_check import check_graph, workflow_availability
from isengard_desktop.core.comfy.workflow_manifest import VIDEO_KINDS, WorkflowLibrary
from isengard_desktop.core.comfy.workflows import build_graph
from isengard_desktop.core.models_catalogue import load_catalogue
from isengard_desktop.core.video.specs import VIDEO_FAMILIES, VideoRequest, plan_video, run_params

REPO = Path(__file__).resolve().parents[2]
LIBRARY = WorkflowLibrary.load(REPO / "workflows")
INFO = json.loads((REPO / "tests/fixtures/comfyui/object_info/object_info_full.json")
                  .read_text(encoding="utf-8"))
VIDEO = [s for s in LIBRARY.specs() if s.kind in VIDEO_KINDS]


def equipped(info: dict, remove: str = "") -> dict:
    """The recorded server with every default model file of the video workflows listed."""
    info = copy.deepcopy(info)
    for spec in VIDEO:
        for p in spec.params.values():
            if p.type != "model":
                continue
            entry = info[spec.graph[p.node]["class_type"]]["input"]
            cfg = entry.get("required", {}).get(p.input) or entry["optional"][p.input]
            if isinstance(cfg[0], list) and spec.graph[p.node]["inputs"][p.input] not in cfg[0]:
                cfg[0].append(spec.graph[p.node]["inputs"][p.input])
    if remove:
        info.pop(remove)
    return info


def test_every_family_has_each_video_kind_and_the_specs_name_them():
    for fam in VIDEO_FAMILIES.values():
        for kind in VIDEO_KINDS:
            spec = LIBRARY.get(fam.workflows[kind])
            assert (spec.family, spec.kind) == (fam.id, kind)
            assert "SaveVideo" in spec.nodes and "CreateVideo" in spec.nodes
            images = [p for p in spec.params.values() if p.type == "image"]
            assert len(images) == {"txt2vid": 0, "img2vid": 1, "flf2vid": 2}[kind]


def test_catalogue_holds_every_default_model_file_of_the_video_workflows():
    names = {n for f in load_catalogue().files.values() for n in f.names}
    for spec in VIDEO:
        for p in spec.params.values():
            if p.type == "model":
                assert spec.graph[p.node]["inputs"][p.input] in names, (spec.name, p.name)


def test_availability_names_what_each_server_lacks():
    bare = {s.name: s for s in workflow_availability(LIBRARY, INFO)}
    assert not bare["wan21-flf2v"].ok
    assert "no CLIP vision model in models/clip_vision" in bare["wan21-flf2v"].missing
    full = {s.name: s for s in workflow_availability(LIBRARY, equipped(INFO))}
    assert all(full[s.name].ok for s in VIDEO), {s.name: full[s.name].missing for s in VIDEO}
    old = {s.name: s for s in workflow_availability(LIBRARY, equipped(INFO, "LTXVAddGuide"))}
    assert not old["ltxv-flf2v"].ok and old["ltxv-i2v"].ok
    assert any("LTXVAddGuide" in m for m in old["ltxv-flf2v"].missing)


@pytest.mark.parametrize("family", list(VIDEO_FAMILIES))
@pytest.mark.parametrize("keys", [0, 1, 3])
def test_planned_runs_build_graphs_the_recorded_server_accepts(family, keys):
    server = equipped(INFO)
    frames = [f"k{i}.png" for i in range(keys)]
    for cls in ("LoadImage",):
        server[cls]["input"]["required"]["image"][0] = frames or ["example.png"]
    request = VideoRequest(prompt="turns and smiles", family=family, keyframes=tuple(frames),
                           seconds=3, fps=VIDEO_FAMILIES[family].fps, width=640, height=368)
    runs = plan_video(request)
    assert len(runs) == max(1, keys - 1)
    for run in runs:
        spec = LIBRARY.get(run.workflow)
        params = run_params(request, run, 7, {f: f for f in frames})
        graph = build_graph(spec, params | {"model": spec.default("model")}, object_info=server)
        assert check_graph(graph, server) == []
        length = spec.params["length"]
        assert graph[length.node]["inputs"][length.input] == run.frames
        assert (run.frames - 1) % VIDEO_FAMILIES[family].step == 0


NASTY = ['"', "\\", "{{prompt}}", "%date:yyyy%", "\n", "漢字", "🧙‍♂️", "\x00", '", "inputs": {']
text = st.lists(st.sampled_from(NASTY) | st.text(max_size=6), max_size=40).map("".join)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=st.sampled_from([s for s in VIDEO if s.kind == "flf2vid"]), prompt=text, start=text,
       end=text, seed=st.integers(0, 2**50))
def test_prompts_and_image_names_land_exactly(spec, prompt, start, end, seed):
    params = {"prompt": prompt, "seed": seed, "model": spec.default("model"),
              "start_image": start or "a.png", "end_image": end or "b.png"}
    graph = build_graph(spec, params)
    again = json.loads(json.dumps(graph))
    for name, value in params.items():
        p = spec.params[name]
        assert again[p.node]["inputs"][p.input] == value
    assert again == graph
