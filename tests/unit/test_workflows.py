"""Workflow library: the shipped workflows and fragments, manifest validation, substitution,
feature fragments, and checking graphs against a real ComfyUI 0.3.64 /object_info."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
import yaml

from isengard_desktop.core.comfy import workflows as wf
from isengard_desktop.core.comfy.graph_check import MODEL_INPUTS
from isengard_desktop.core.comfy.workflow_manifest import (MAX_SEED, WorkflowError, WorkflowLibrary,
                                                      default_workflows_dir)
from isengard_desktop.core.comfy.workflows import build_graph
from isengard_desktop.core.comfy.graph_check import (check_graph, feature_support, model_choices,
                                                     suggest_models, workflow_availability)

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "comfyui" / "workflows"
WORKFLOWS = REPO / "workflows"
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
YAML_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

# Model files a fully equipped test server lists, per loader input (the recorded server had none).
FAKE_MODELS = {
    "checkpoints": ["v1-5-pruned-emaonly.safetensors", "sd_xl_base_1.0.safetensors", "sdxl/juggernaut.safetensors",
                    "ltx-video-2b-v0.9.5.safetensors"],
    "loras": ["character.safetensors", "alice_v2.safetensors"],
    "unet": ["flux1-dev.safetensors", "flux1-schnell.safetensors", "Chroma1-HD.safetensors",
             "wan2.1_i2v_480p_14B_fp8_e4m3fn.safetensors", "wan2.1_flf2v_720p_14B_fp8_e4m3fn.safetensors",
             "wan2.1_t2v_1.3B_fp16.safetensors"],
    "clip": ["clip_l.safetensors", "t5xxl_fp8_e4m3fn.safetensors", "umt5_xxl_fp8_e4m3fn_scaled.safetensors",
             "t5xxl_fp16.safetensors"],
    "vae": ["ae.safetensors", "pixel_space", "wan_2.1_vae.safetensors"],
    "upscale_models": ["4x-UltraSharp.pth"],
    "controlnet": ["control.safetensors"],
    "clip_vision": ["CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors", "clip_vision_h.safetensors"],
    "ipadapter": ["ip-adapter-plus-face_sdxl_vit-h.safetensors"],
    "ultralytics": ["bbox/face_yolov8m.pt", "segm/person_yolov8m-seg.pt"],
    "sams": ["sam_vit_b_01ec64.pth"],
}


def load_object_info() -> dict:
    return json.loads((FIXTURES / "object_info_full.json").read_text(encoding="utf-8"))


def load_custom_nodes() -> dict:
    return json.loads((FIXTURES / "custom_nodes_object_info.json").read_text(encoding="utf-8"))["nodes"]


def _set_choices(spec: list, names: list[str]) -> None:
    if isinstance(spec[0], list):
        spec[0] = list(names)
    elif spec[0] == "COMBO":
        spec[1]["options"] = list(names)


def with_models(object_info: dict, *, custom_nodes: bool = False, models: dict | None = None) -> dict:
    """A copy of ``object_info`` whose empty model combos list fake model files (and, optionally,
    with the custom nodes that IP-Adapter and FaceDetailer need)."""
    info = copy.deepcopy(object_info)
    if custom_nodes:
        info.update(copy.deepcopy(load_custom_nodes()))
    names = {**FAKE_MODELS, **(models or {})}
    for (cls, inp), folder in MODEL_INPUTS.items():
        node = info.get(cls)
        if node is None:
            continue
        for section in ("required", "optional"):
            spec = node["input"].get(section, {}).get(inp)
            if spec is not None:
                _set_choices(spec, names[folder])
    return info


@pytest.fixture(scope="module")
def library() -> WorkflowLibrary:
    return WorkflowLibrary.load(WORKFLOWS)


@pytest.fixture(scope="module")
def object_info() -> dict:
    return load_object_info()


@pytest.fixture(scope="module")
def full_server(object_info) -> dict:
    return with_models(object_info, custom_nodes=True)


def minimal_params(spec) -> dict:
    """The required params of a workflow, with values a test server lists."""
    params = {}
    for name, p in spec.params.items():
        if p.required:
            params[name] = spec.default(name) if p.type != "text" else "a portrait of alice"
    return params


def feature_params(feature: str) -> dict:
    return {
        "controlnet": {"image": "pose.png", "model": "control.safetensors", "strength": 0.7},
        "ipadapter": {"image": "face.png", "weight": 0.6},
        "facedetailer": {"denoise": 0.4},
        "upscale": {"model": "4x-UltraSharp.pth", "scale": 0.5},
    }[feature]


# --------------------------------------------------------------------------------------------
# The shipped files
# --------------------------------------------------------------------------------------------


def test_recorded_object_info_copy_matches_the_shared_fixture():
    shared = Path("/work/shared/fixtures/comfyui/object_info/object_info_full.json")
    if not shared.exists():
        pytest.skip("the shared fixtures are not on this machine (clean clone)")
    assert json.loads(shared.read_text()) == load_object_info()


def test_the_required_workflows_exist(library):
    names = set(library.names())
    required = {"flux-schnell", "flux-dev", "flux-schnell-lora", "flux-dev-lora", "chroma", "chroma-lora",
                "sdxl", "sdxl-lora", "sd15", "sd15-lora", "upscale"}
    assert required <= names
    for fam in ("flux-schnell", "flux-dev", "chroma", "sdxl", "sd15"):
        for lora in (False, True):
            img = library.find(fam, kind="img2img", lora=lora)
            assert img is not None, (fam, lora)
            assert img.kind == "img2img"
            txt = library.find(fam, kind="txt2img", lora=lora)
            assert txt is not None and txt.lora == lora and txt.family == fam
    assert library.find("any", kind="upscale").name == "upscale"
    assert library.find("nope") is None


def test_default_folder_is_the_repo_workflows_folder(monkeypatch):
    monkeypatch.delenv("ISENGARD_WORKFLOWS", raising=False)
    assert default_workflows_dir() == WORKFLOWS
    assert WorkflowLibrary.load().folder == WORKFLOWS


def test_env_overrides_the_folder(tmp_path, monkeypatch):
    folder = tmp_path / "wf"
    shutil.copytree(WORKFLOWS, folder)
    doc = yaml.safe_load((folder / "manifest.yaml").read_text())
    doc["workflows"] = {"sd15": doc["workflows"]["sd15"]}
    (folder / "manifest.yaml").write_text(yaml.safe_dump(doc))
    monkeypatch.setenv("ISENGARD_WORKFLOWS", str(folder))
    assert WorkflowLibrary.load().names() == ["sd15"]


def test_every_workflow_file_is_api_format(library):
    for spec in library.specs():
        graph = json.loads(spec.path.read_text(encoding="utf-8"))
        assert graph == dict(spec.graph)
        for node_id, node in graph.items():
            assert isinstance(node_id, str) and node_id.isdigit(), (spec.name, node_id)
            assert set(node) == {"class_type", "inputs", "_meta"}, (spec.name, node_id)
            assert node["_meta"]["title"]
            for value in node["inputs"].values():
                if isinstance(value, list):
                    assert len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int)
                    assert value[0] in graph, (spec.name, node_id, value)
        assert sorted(spec.nodes) == sorted({n["class_type"] for n in graph.values()})


def test_every_workflow_passes_check_graph_on_the_recorded_server(library, object_info):
    server = with_models(object_info)
    for spec in library.specs():
        assert check_graph(spec.fresh_graph(), server) == [], spec.name
        seed = {"seed": MAX_SEED} if "seed" in spec.params else {}
        graph = build_graph(spec, minimal_params(spec) | seed)
        assert check_graph(graph, server) == [], spec.name


def test_the_recorded_server_without_models_names_each_missing_model(library, object_info):
    gaps = check_graph(library.get("sdxl-lora").fresh_graph(), object_info)
    assert [(g.node_id, g.class_type, g.input_name, g.kind) for g in gaps] == [
        ("4", "CheckpointLoaderSimple", "ckpt_name", "not_in_list"),
        ("10", "LoraLoader", "lora_name", "not_in_list"),
    ]
    assert "LoRA 'character.safetensors' is not in the server's loras list" in gaps[1].message
    assert "models/loras" in gaps[1].message


def test_flux_workflows_have_the_flux_nodes(library):
    for name in ("flux-schnell", "flux-dev", "flux-schnell-lora", "flux-dev-lora"):
        spec = library.get(name)
        g = spec.graph
        by_class = {n["class_type"]: (i, n) for i, n in g.items()}
        for cls in ("UNETLoader", "DualCLIPLoader", "VAELoader", "CLIPTextEncode", "EmptySD3LatentImage",
                    "KSampler", "VAEDecode", "SaveImage"):
            assert cls in by_class, (name, cls)
        clip = by_class["DualCLIPLoader"][1]["inputs"]
        assert clip["type"] == "flux"
        assert "clip_l" in clip["clip_name1"] and "t5xxl" in clip["clip_name2"]
        ks = by_class["KSampler"][1]["inputs"]
        assert ks["cfg"] == 1.0
        assert ("FluxGuidance" in by_class) == name.startswith("flux-dev")
        if "FluxGuidance" in by_class:
            assert ks["positive"] == [by_class["FluxGuidance"][0], 0]
            assert by_class["FluxGuidance"][1]["inputs"]["guidance"] == 3.5
        unet_id = by_class["UNETLoader"][0]
        if spec.lora:
            lora_id, lora = by_class["LoraLoaderModelOnly"]
            assert lora["inputs"]["model"] == [unet_id, 0]
            assert ks["model"] == [lora_id, 0]
        else:
            assert ks["model"] == [unet_id, 0]
            assert "LoraLoaderModelOnly" not in by_class


def test_sd_lora_workflows_patch_model_and_clip(library):
    for name in ("sd15-lora", "sdxl-lora", "sd15-img2img-lora", "sdxl-img2img-lora"):
        g = library.get(name).graph
        lora_id = next(i for i, n in g.items() if n["class_type"] == "LoraLoader")
        ks = next(n for n in g.values() if n["class_type"] == "KSampler")
        assert ks["inputs"]["model"] == [lora_id, 0]
        encoders = [n for n in g.values() if n["class_type"] == "CLIPTextEncode"]
        assert len(encoders) == 2
        assert all(n["inputs"]["clip"] == [lora_id, 1] for n in encoders)


def test_img2img_workflows_encode_a_loaded_image(library):
    for spec in library.specs():
        if spec.kind != "img2img":
            continue
        classes = set(spec.nodes)
        assert {"LoadImage", "VAEEncode", "KSampler"} <= classes, spec.name
        assert spec.params["image"].required
        assert spec.default("denoise") < 1.0


def test_chroma_uses_t5_only(library):
    g = library.get("chroma").graph
    loader = next(n for n in g.values() if n["class_type"] == "CLIPLoader")
    assert loader["inputs"]["type"] == "chroma"
    ks = next(n for n in g.values() if n["class_type"] == "KSampler")
    assert ks["inputs"]["cfg"] > 1.0  # Chroma is not guidance-distilled: real CFG with a negative prompt
    assert "negative" in library.get("chroma").params


def test_manifest_params_name_existing_nodes_and_inputs(library):
    for spec in library.specs():
        for p in spec.params.values():
            assert p.input in spec.graph[p.node]["inputs"], (spec.name, p.name)
            if p.type == "model":
                assert p.model_folder
        for role in spec.roles.values():
            assert role.source[0] in spec.graph


# --------------------------------------------------------------------------------------------
# Manifest validation
# --------------------------------------------------------------------------------------------


def _broken(tmp_path, mutate) -> Path:
    folder = tmp_path / "wf"
    shutil.copytree(WORKFLOWS, folder)
    doc = yaml.load((folder / "manifest.yaml").read_text(), Loader=YAML_LOADER)
    mutate(doc, folder)
    (folder / "manifest.yaml").write_text(yaml.dump(doc, Dumper=YAML_DUMPER, sort_keys=False))
    return folder


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d, f: d["workflows"]["flux-dev"]["params"]["prompt"].update(node="99"),
         "workflow 'flux-dev', field 'params.prompt.node': node '99' does not exist in flux-dev.json"),
        (lambda d, f: d["workflows"]["sdxl"]["params"]["seed"].update(input="sead"),
         "workflow 'sdxl', field 'params.seed.input': node '3' (KSampler) in sdxl.json has no input 'sead'"),
        (lambda d, f: d["workflows"]["sd15"]["params"]["steps"].update(type="number"),
         "workflow 'sd15', field 'params.steps.type': 'number' is not one of"),
        (lambda d, f: d["workflows"]["sd15"]["params"]["model"].pop("folder"),
         "workflow 'sd15', field 'params.model.folder'"),
        (lambda d, f: d["workflows"]["sd15"].update(family="sd3"), "workflow 'sd15', field 'family': 'sd3'"),
        (lambda d, f: d["workflows"]["sd15"].update(kind="video"), "workflow 'sd15', field 'kind'"),
        (lambda d, f: d["workflows"]["sd15"].pop("title"), "workflow 'sd15', field 'title': is missing"),
        (lambda d, f: d["workflows"]["sd15"]["nodes"].remove("VAEDecode"),
         "workflow 'sd15', field 'nodes': sd15.json also uses VAEDecode"),
        (lambda d, f: d["workflows"]["sd15"].update(file="missing.json"),
         "workflow 'sd15', field 'file': file missing.json does not exist"),
        (lambda d, f: (f / "sd15.json").write_text("{not json"),
         "workflow 'sd15', field 'file': sd15.json is not valid JSON"),
        (lambda d, f: (f / "sd15.json").write_text('{"nodes": [], "links": []}'),
         "sd15.json: node 'nodes' has no class_type"),
        (lambda d, f: d.update(version=2), "field 'version': is 2"),
        (lambda d, f: d["workflows"]["sdxl"]["params"]["prompt"].update(input="clip"),
         "node '6' input 'clip' in sdxl.json is a link"),
        (lambda d, f: d["workflows"]["sd15-lora"]["params"].pop("lora"),
         "workflow 'sd15-lora', field 'params': a LoRA workflow needs"),
        (lambda d, f: d["workflows"]["sd15"]["roles"].pop("image"),
         "workflow 'sd15', field 'roles': feature 'facedetailer' needs the role 'image'"),
        (lambda d, f: d["features"]["upscale"]["params"]["scale"].update(node="nope"),
         "feature 'upscale', field 'params.scale.node': node 'nope' does not exist in upscale.json"),
        (lambda d, f: d.update(feature_order=["warp"]), "field 'feature_order': names the unknown feature 'warp'"),
    ],
)
def test_manifest_errors_name_the_workflow_and_field(tmp_path, mutate, expected):
    folder = _broken(tmp_path, mutate)
    with pytest.raises(WorkflowError) as exc:
        WorkflowLibrary.load(folder)
    assert expected in str(exc.value)


def test_missing_manifest_says_where(tmp_path):
    with pytest.raises(WorkflowError, match="manifest.yaml does not exist"):
        WorkflowLibrary.load(tmp_path)


def test_get_unknown_workflow_is_a_clear_key_error(library):
    with pytest.raises(KeyError, match="no workflow named 'flux-pro'"):
        library.get("flux-pro")


# --------------------------------------------------------------------------------------------
# build_graph
# --------------------------------------------------------------------------------------------


def test_build_graph_sets_every_param_at_its_node_input(library):
    spec = library.get("sdxl-lora")
    params = {"prompt": "p", "negative": "n", "seed": 42, "steps": 31, "cfg": 5.5, "sampler": "euler",
              "scheduler": "normal", "width": 832, "height": 1216, "batch": 4, "model": "sdxl/juggernaut.safetensors",
              "lora": "alice_v2.safetensors", "lora_strength": 0.65, "filename_prefix": "isengard/alice"}
    before = copy.deepcopy(dict(spec.graph))
    g = build_graph(spec, params)
    for name, value in params.items():
        p = spec.params[name]
        assert g[p.node]["inputs"][p.input] == value, name
    assert g["10"]["inputs"]["strength_clip"] == 0.65  # `also` target
    assert dict(spec.graph) == before  # the loaded graph is never mutated
    assert isinstance(g["3"]["inputs"]["seed"], int) and isinstance(g["3"]["inputs"]["cfg"], float)


def test_build_graph_rejects_unknown_and_missing_params(library):
    spec = library.get("flux-dev")
    with pytest.raises(WorkflowError, match="workflow 'flux-dev' has no parameter 'sampler_name'"):
        build_graph(spec, {"prompt": "x", "model": "m", "sampler_name": "euler"})
    with pytest.raises(WorkflowError, match="the parameter 'prompt' is required"):
        build_graph(spec, {"model": "m"})
    with pytest.raises(WorkflowError, match=r"the parameter 'model' \(Flux dev diffusion model\) is required"):
        build_graph(spec, {"prompt": "x"})
    with pytest.raises(WorkflowError, match="the parameter 'lora' .* is required"):
        build_graph(library.get("flux-dev-lora"), {"prompt": "x", "model": "m"})


def test_flux_accepts_and_drops_a_negative_prompt(library):
    spec = library.get("flux-schnell")
    g = build_graph(spec, {"prompt": "x", "model": "flux1-schnell.safetensors", "negative": "blurry", "guidance": 3.5})
    assert "blurry" not in json.dumps(g)
    assert spec.accepts("negative") and not spec.accepts("denoise")


@pytest.mark.parametrize("seed", [True, -1, MAX_SEED + 1, 1.5, "7", None.__class__])
def test_seed_must_be_an_int_in_comfyui_range(library, seed):
    with pytest.raises(WorkflowError, match="parameter 'seed'"):
        build_graph(library.get("sd15"), {"prompt": "x", "model": "m", "seed": seed})


def test_seed_edges_and_random_seed(library, object_info):
    server = with_models(object_info)
    spec = library.get("sd15")
    for seed in (0, 1, 2**53 + 1, MAX_SEED):
        g = build_graph(spec, {"prompt": "x", "model": "v1-5-pruned-emaonly.safetensors", "seed": seed})
        assert g["3"]["inputs"]["seed"] == seed
        assert json.loads(json.dumps(g))["3"]["inputs"]["seed"] == seed
        assert check_graph(g, server) == []
    seeds = {wf.random_seed() for _ in range(50)}
    assert len(seeds) > 45 and all(0 <= s < 2**50 for s in seeds)


@pytest.mark.parametrize(("param", "value"), [("steps", "20"), ("cfg", "7"), ("prompt", 5), ("model", ""),
                                              ("width", 512.5), ("cfg", float("nan"))])
def test_param_types_are_checked(library, param, value):
    params = {"prompt": "x", "model": "m", param: value}
    with pytest.raises(WorkflowError, match=f"parameter '{param}'"):
        build_graph(library.get("sd15"), params)


def test_param_type_coercion(library):
    g = build_graph(library.get("sd15"), {"prompt": "x", "model": "m", "cfg": 7, "width": 768.0})
    assert g["3"]["inputs"]["cfg"] == 7.0 and isinstance(g["3"]["inputs"]["cfg"], float)
    assert g["5"]["inputs"]["width"] == 768 and isinstance(g["5"]["inputs"]["width"], int)


# --------------------------------------------------------------------------------------------
# Feature fragments
# --------------------------------------------------------------------------------------------


def _all_feature_cases(library):
    for spec in library.specs():
        for feature in spec.features:
            yield spec, feature


def test_every_feature_on_every_supported_workflow_gives_a_valid_graph(library, full_server):
    seen = set()
    for spec, feature in _all_feature_cases(library):
        seen.add(feature)
        g = build_graph(spec, minimal_params(spec), features={feature: feature_params(feature)})
        assert check_graph(g, full_server) == [], (spec.name, feature)
        assert json.loads(json.dumps(g)) == g
    assert seen == {"upscale", "controlnet", "ipadapter", "facedetailer"}


def test_all_features_together(library, full_server):
    for name in ("sdxl-lora", "sd15-img2img"):
        spec = library.get(name)
        feats = {f: feature_params(f) for f in ("upscale", "controlnet", "ipadapter", "facedetailer")}
        g = build_graph(spec, minimal_params(spec), features=feats)
        assert check_graph(g, full_server) == [], name
        classes = [n["class_type"] for n in g.values()]
        for cls in ("ControlNetApplyAdvanced", "IPAdapterAdvanced", "FaceDetailer", "ImageUpscaleWithModel"):
            assert classes.count(cls) == 1
        by_class = {n["class_type"]: i for i, n in g.items()}
        ks = g["3"]["inputs"]
        assert ks["model"] == [by_class["IPAdapterAdvanced"], 0]
        assert ks["positive"] == [by_class["ControlNetApplyAdvanced"], 0]
        assert ks["negative"] == [by_class["ControlNetApplyAdvanced"], 1]
        fd = g[by_class["FaceDetailer"]]["inputs"]
        assert fd["image"] == ["8", 0]
        assert fd["model"] == [by_class["IPAdapterAdvanced"], 0]
        up = g[by_class["ImageUpscaleWithModel"]]["inputs"]
        assert up["image"] == [by_class["FaceDetailer"], 0]
        assert g["9"]["inputs"]["images"] == [by_class["ImageScaleBy"], 0]


def test_upscale_repoints_the_save_node(library, full_server):
    spec = library.get("flux-dev")
    g = build_graph(spec, minimal_params(spec), features={"upscale": {"model": "4x-UltraSharp.pth", "scale": 0.5}})
    new = {i: n for i, n in g.items() if i not in spec.graph}
    assert {n["class_type"] for n in new.values()} == {"UpscaleModelLoader", "ImageUpscaleWithModel", "ImageScaleBy"}
    assert all(i.isdigit() and int(i) > max(int(k) for k in spec.graph) for i in new)
    rescale = next(i for i, n in new.items() if n["class_type"] == "ImageScaleBy")
    assert g["10"]["inputs"]["images"] == [rescale, 0]
    upscale = next(n for n in new.values() if n["class_type"] == "ImageUpscaleWithModel")
    assert upscale["inputs"]["image"] == ["9", 0]
    assert new[rescale]["inputs"]["scale_by"] == 0.5
    assert check_graph(g, full_server) == []


def test_controlnet_on_flux_does_not_create_a_cycle(library, full_server):
    # flux-schnell's negative (ConditioningZeroOut) reads the positive encoder: only the sampler moves.
    spec = library.get("flux-schnell")
    g = build_graph(spec, minimal_params(spec), features={"controlnet": feature_params("controlnet")})
    apply_id = next(i for i, n in g.items() if n["class_type"] == "ControlNetApplyAdvanced")
    assert g["6"]["inputs"]["conditioning"] == ["4", 0]
    assert g[apply_id]["inputs"]["positive"] == ["4", 0]
    assert g[apply_id]["inputs"]["negative"] == ["6", 0]
    assert g[apply_id]["inputs"]["vae"] == ["3", 0]
    assert g["8"]["inputs"]["positive"] == [apply_id, 0]
    assert check_graph(g, full_server) == []


def test_facedetailer_samples_like_the_base_workflow(library, full_server):
    spec = library.get("sdxl")
    params = minimal_params(spec) | {"seed": 1234, "steps": 33, "cfg": 6.0, "sampler": "euler", "scheduler": "normal"}
    g = build_graph(spec, params, features={"facedetailer": {"denoise": 0.35}})
    fd = next(n for n in g.values() if n["class_type"] == "FaceDetailer")["inputs"]
    assert (fd["seed"], fd["steps"], fd["cfg"], fd["sampler_name"],
            fd["scheduler"]) == (1234, 33, 6.0, "euler", "normal")
    assert fd["denoise"] == 0.35
    assert fd["positive"] == ["6", 0] and fd["negative"] == ["7", 0] and fd["clip"] == ["4", 1]
    assert check_graph(g, full_server) == []


def test_unsupported_or_unknown_features_are_refused(library):
    with pytest.raises(WorkflowError, match="workflow 'flux-dev' cannot take the feature 'ipadapter'"):
        build_graph(library.get("flux-dev"), {"prompt": "x", "model": "m"}, features={"ipadapter": {"image": "a.png"}})
    with pytest.raises(WorkflowError, match="cannot take the feature 'controlnet'"):
        build_graph(library.get("chroma"), {"prompt": "x", "model": "m"}, features={"controlnet": {}})
    with pytest.raises(WorkflowError, match="cannot take the feature 'upscale'"):
        build_graph(library.get("upscale"), {"image": "a.png"}, features={"upscale": {}})
    with pytest.raises(WorkflowError, match="feature 'controlnet' of workflow 'sd15': the parameter 'image'"):
        build_graph(library.get("sd15"), {"prompt": "x", "model": "m"}, features={"controlnet": {"model": "c"}})
    with pytest.raises(WorkflowError, match="feature 'upscale' of workflow 'sd15' has no parameter 'factor'"):
        build_graph(library.get("sd15"), {"prompt": "x", "model": "m"}, features={"upscale": {"factor": 2}})


# --------------------------------------------------------------------------------------------
# check_graph: each gap kind names node, class, input and value
# --------------------------------------------------------------------------------------------


def _sd15(library) -> dict:
    return build_graph(library.get("sd15"), {"prompt": "x", "model": "v1-5-pruned-emaonly.safetensors"})


def _one_gap(graph, server):
    gaps = check_graph(graph, server)
    assert len(gaps) == 1, gaps
    return gaps[0]


def test_gap_unknown_class_names_the_pack(library, object_info):
    server = with_models(object_info)
    spec = library.get("sd15")
    g = build_graph(spec, minimal_params(spec), features={"facedetailer": {}})
    gaps = check_graph(g, server)
    assert {(x.class_type, x.kind) for x in gaps} == {("FaceDetailer", "unknown_class"),
                                                      ("UltralyticsDetectorProvider", "unknown_class")}
    fd = next(x for x in gaps if x.class_type == "FaceDetailer")
    assert fd.node_id in g and fd.value == "FaceDetailer"
    assert "install the custom-node pack ComfyUI-Impact-Pack" in fd.message
    g2 = build_graph(library.get("sdxl"), minimal_params(library.get("sdxl")),
                     features={"ipadapter": {"image": "f.png"}})
    msgs = [x.message for x in check_graph(g2, server)]
    assert any("IPAdapterAdvanced" in m and "ComfyUI_IPAdapter_plus" in m for m in msgs)


def test_gap_lora_not_in_list(library, object_info):
    server = with_models(object_info)
    spec = library.get("sd15-lora")
    g = build_graph(spec, {"prompt": "x", "model": "v1-5-pruned-emaonly.safetensors", "lora": "alice.safetensors"})
    gap = _one_gap(g, server)
    assert (gap.node_id, gap.class_type, gap.input_name, gap.value, gap.kind) == (
        "10", "LoraLoader", "lora_name", "alice.safetensors", "not_in_list")
    assert gap.message.startswith("Node 10 (LoraLoader): LoRA 'alice.safetensors' is not in the server's loras list")
    assert "'character.safetensors'" in gap.message


def test_gap_plain_combo_not_in_list(library, object_info):
    g = _sd15(library)
    g["3"]["inputs"]["sampler_name"] = "euler_magic"
    gap = _one_gap(g, with_models(object_info))
    assert (gap.node_id, gap.class_type, gap.input_name, gap.value) == ("3", "KSampler", "sampler_name", "euler_magic")
    assert "'euler_magic' is not one of the server's choices" in gap.message


@pytest.mark.parametrize(
    ("node", "inp", "value", "text"),
    [
        ("5", "width", 99999, "Node 5 (EmptyLatentImage): input 'width' = 99999 is above the maximum 16384."),
        ("5", "width", 0, "Node 5 (EmptyLatentImage): input 'width' = 0 is below the minimum 16."),
        ("3", "cfg", 100.5, "Node 3 (KSampler): input 'cfg' = 100.5 is above the maximum 100.0."),
        ("3", "denoise", -0.1, "Node 3 (KSampler): input 'denoise' = -0.1 is below the minimum 0.0."),
        ("3", "seed", MAX_SEED + 1, f"input 'seed' = {MAX_SEED + 1} is above the maximum {MAX_SEED}."),
    ],
)
def test_gap_out_of_range(library, object_info, node, inp, value, text):
    g = _sd15(library)
    g[node]["inputs"][inp] = value
    gap = _one_gap(g, with_models(object_info))
    assert (gap.node_id, gap.input_name, gap.value, gap.kind) == (node, inp, value, "out_of_range")
    assert text in gap.message


@pytest.mark.parametrize(("node", "inp", "value"), [("5", "width", "abc"), ("3", "steps", 2.5), ("6", "text", 5),
                                                    ("3", "cfg", True)])
def test_gap_bad_value_type(library, object_info, node, inp, value):
    g = _sd15(library)
    g[node]["inputs"][inp] = value
    gap = _one_gap(g, with_models(object_info))
    assert (gap.node_id, gap.input_name, gap.value, gap.kind) == (node, inp, value, "bad_value")


def test_gap_missing_required_input(library, object_info):
    g = _sd15(library)
    del g["3"]["inputs"]["seed"]
    gap = _one_gap(g, with_models(object_info))
    assert (gap.node_id, gap.class_type, gap.input_name, gap.kind) == ("3", "KSampler", "seed", "missing_input")
    assert gap.message == "Node 3 (KSampler): the required input 'seed' is missing."


def test_gap_links(library, object_info):
    server = with_models(object_info)
    g = _sd15(library)
    g["8"]["inputs"]["samples"] = ["77", 0]
    gap = _one_gap(g, server)
    assert (gap.node_id, gap.class_type, gap.input_name, gap.value, gap.kind) == (
        "8", "VAEDecode", "samples", ["77", 0], "bad_link")
    assert "linked to node 77, which is not in the workflow" in gap.message
    g = _sd15(library)
    g["8"]["inputs"]["vae"] = ["4", 5]
    gap = _one_gap(g, server)
    assert "output 5 of node 4 (CheckpointLoaderSimple), which has 3 output(s)" in gap.message
    g = _sd15(library)
    g["9"]["inputs"]["images"] = ["3", 0]  # LATENT into IMAGE
    gap = _one_gap(g, server)
    assert gap.message == ("Node 9 (SaveImage): input 'images' expects IMAGE but node 3 (KSampler) "
                           "output 0 gives LATENT.")
    g = _sd15(library)
    g["3"]["inputs"]["model"] = "not a link"
    assert _one_gap(g, server).kind == "bad_link"


def test_gap_no_output_node_and_bad_node(library, object_info):
    server = with_models(object_info)
    g = _sd15(library)
    del g["9"]
    gap = _one_gap(g, server)
    assert gap.kind == "no_output" and "no output node" in gap.message
    assert check_graph({}, server)[0].kind == "no_output"
    g = _sd15(library)
    g["99"] = {"inputs": {}}
    assert [x.kind for x in check_graph(g, server)] == ["bad_node"]


def test_upload_inputs_are_not_checked_against_the_list(library, object_info):
    spec = library.get("sd15-img2img")
    g = build_graph(spec, {"prompt": "x", "model": "v1-5-pruned-emaonly.safetensors",
                           "image": "isengard/fresh-upload.png"})
    assert check_graph(g, with_models(object_info)) == []


def test_v3_combo_specs_are_understood(library, object_info):
    server = with_models(object_info)
    assert server["UpscaleModelLoader"]["input"]["required"]["model_name"][0] == "COMBO"
    g = build_graph(library.get("upscale"), {"image": "a.png", "upscale_model": "nope.pth"})
    gap = _one_gap(g, server)
    assert gap.message.startswith("Node 2 (UpscaleModelLoader): upscale model 'nope.pth' is not in "
                                  "the server's upscale_models list")


# --------------------------------------------------------------------------------------------
# Servers: models, features, availability
# --------------------------------------------------------------------------------------------


def test_model_choices(object_info):
    assert model_choices(object_info, "loras") == []
    assert model_choices(object_info, "vae") == []  # "pixel_space" is not a file
    server = with_models(object_info, custom_nodes=True)
    assert model_choices(server, "loras") == FAKE_MODELS["loras"]
    assert model_choices(server, "checkpoints") == FAKE_MODELS["checkpoints"]
    assert model_choices(server, "diffusion_models") == FAKE_MODELS["unet"]
    assert model_choices(server, "vae") == ["ae.safetensors", "wan_2.1_vae.safetensors"]
    assert model_choices(server, "upscale_models") == ["4x-UltraSharp.pth"]
    assert model_choices(server, "ultralytics_bbox") == ["bbox/face_yolov8m.pt"]
    assert model_choices(server, "no_such_folder") == []


def test_feature_support_reasons(library, object_info):
    assert feature_support("sdxl", "facedetailer", object_info, library=library) == (
        False, "needs node FaceDetailer (ComfyUI-Impact-Pack); "
               "needs node UltralyticsDetectorProvider (ComfyUI-Impact-Subpack)")
    assert feature_support("sdxl", "upscale", object_info, library=library) == (
        False, "no upscale model in models/upscale_models")
    ok, why = feature_support("flux-dev", "ipadapter", object_info, library=library)
    assert not ok and "SD 1.5 and SDXL" in why
    ok, why = feature_support("chroma", "controlnet", object_info, library=library)
    assert not ok and "Chroma" in why
    assert feature_support("sdxl", "ipadapter", object_info, library=library) == (
        False, ("needs node IPAdapterUnifiedLoader (ComfyUI_IPAdapter_plus); needs node IPAdapterAdvanced "
                "(ComfyUI_IPAdapter_plus); no CLIP vision model in models/clip_vision"))
    ok, why = feature_support("sdxl", "warp", object_info, library=library)
    assert not ok and "unknown feature 'warp'" in why
    nodes_only = with_models(object_info, custom_nodes=True, models={"ultralytics": [], "ipadapter": []})
    assert feature_support("sd15", "facedetailer", nodes_only, library=library) == (
        False, "no face detection model in models/ultralytics/bbox")
    assert feature_support("sd15", "ipadapter", nodes_only, library=library) == (
        False, "no IP-Adapter model in models/ipadapter")
    full = with_models(object_info, custom_nodes=True)
    for fam in ("sd15", "sdxl"):
        for feature in ("upscale", "controlnet", "ipadapter", "facedetailer"):
            assert feature_support(fam, feature, full, library=library) == (True, ""), (fam, feature)
    # the default library is used when none is given
    assert feature_support("flux-dev", "upscale", full) == (True, "")


def test_workflow_availability(library, object_info):
    bare = workflow_availability(library, object_info)
    assert [s.name for s in bare] == library.names()
    assert not any(s.ok for s in bare)
    flux = next(s for s in bare if s.name == "flux-dev-lora")
    assert flux.missing == ("no diffusion model in models/diffusion_models (or models/unet)",
                            "no text encoder in models/text_encoders (or models/clip)", "no VAE in models/vae",
                            "no LoRA in models/loras")
    assert flux.features["facedetailer"][0] is False
    full = workflow_availability(library, with_models(object_info, custom_nodes=True))
    assert all(s.ok and s.missing == () for s in full), [s for s in full if not s.ok]
    assert all(ok for s in full for ok, _ in s.features.values())
    # text encoders present, but no T5: the flux workflows say exactly that
    no_t5 = with_models(object_info, models={"clip": ["clip_l.safetensors"]})
    flux = next(s for s in workflow_availability(library, no_t5) if s.name == "flux-dev")
    assert flux.missing == ("no T5-XXL text encoder in models/text_encoders (or models/clip)",)
    sdxl = next(s for s in workflow_availability(library, no_t5) if s.name == "sdxl")
    assert sdxl.ok


def test_auxiliary_models_are_picked_from_the_server(library, object_info):
    server = with_models(object_info, custom_nodes=True, models={
        "clip": ["t5/t5xxl_fp16.safetensors", "clip_l.safetensors", "ViT-L-14.safetensors"],
        "vae": ["sdxl_vae.safetensors", "flux/ae.safetensors", "pixel_space"],
        "upscale_models": ["RealESRGAN_x4plus.pth"],
        "ultralytics": ["bbox/hand_yolov8s.pt", "bbox/face_yolov8n.pt"],
    })
    spec = library.get("flux-dev")
    base, feats = suggest_models(spec, server, features=["upscale", "facedetailer"])
    assert base == {"t5": "t5/t5xxl_fp16.safetensors", "vae": "flux/ae.safetensors"}
    assert feats == {"upscale": {"model": "RealESRGAN_x4plus.pth"},
                     "facedetailer": {"detector": "bbox/face_yolov8n.pt"}}
    g = build_graph(spec, {"prompt": "x", "model": "flux1-dev.safetensors", "vae": "flux/ae.safetensors"},
                    features={"upscale": {}, "facedetailer": {}}, object_info=server)
    assert check_graph(g, server) == []
    assert g["2"]["inputs"]["clip_name2"] == "t5/t5xxl_fp16.safetensors"
    # an explicit value wins over the suggestion
    g = build_graph(spec, {"prompt": "x", "model": "flux1-dev.safetensors", "t5": "clip_l.safetensors"},
                    object_info=server)
    assert g["2"]["inputs"]["clip_name2"] == "clip_l.safetensors"
