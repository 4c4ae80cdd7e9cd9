"""Check API graphs and workflows against a ComfyUI server's ``/object_info``.

Everything here is pure (no I/O except loading the default workflow library on demand) and
names each gap the way a user can act on it: the node id and class, the input, the bad value,
and which custom-node pack or model folder would fix it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .workflow_manifest import FeatureSpec, ParamSpec, WorkflowLibrary, WorkflowSpec

__all__ = [
    "MODEL_FOLDERS",
    "NODE_PACKS",
    "Gap",
    "WorkflowStatus",
    "check_graph",
    "feature_support",
    "folder_noun",
    "input_spec",
    "model_choices",
    "node_pack",
    "pick_model",
    "suggest_models",
    "workflow_availability",
]

PRIMITIVES = ("INT", "FLOAT", "STRING", "BOOLEAN")

# Custom-node packs that provide node classes our workflows and fragments use (exact names first,
# then prefixes). ComfyUI core nodes are not listed: a missing core node means an old ComfyUI.
NODE_PACKS: dict[str, str] = {
    "FaceDetailer": "ComfyUI-Impact-Pack",
    "FaceDetailerPipe": "ComfyUI-Impact-Pack",
    "SAMLoader": "ComfyUI-Impact-Pack",
    "BboxDetectorSEGS": "ComfyUI-Impact-Pack",
    "DetailerForEach": "ComfyUI-Impact-Pack",
    "UltralyticsDetectorProvider": "ComfyUI-Impact-Subpack",
    "UnetLoaderGGUF": "ComfyUI-GGUF",
    "CLIPLoaderGGUF": "ComfyUI-GGUF",
    "DualCLIPLoaderGGUF": "ComfyUI-GGUF",
}
NODE_PACK_PREFIXES: tuple[tuple[str, str], ...] = (
    ("IPAdapter", "ComfyUI_IPAdapter_plus"),
    ("PrepImageForClipVision", "ComfyUI_IPAdapter_plus"),
    ("Impact", "ComfyUI-Impact-Pack"),
)


def node_pack(class_type: str) -> str:
    """The custom-node pack that provides ``class_type``, or "" when it is not one we know."""
    if class_type in NODE_PACKS:
        return NODE_PACKS[class_type]
    for prefix, pack in NODE_PACK_PREFIXES:
        if class_type.startswith(prefix):
            return pack
    return ""


def _needs_node(class_type: str) -> str:
    pack = node_pack(class_type)
    return f"needs node {class_type} ({pack})" if pack else f"needs node {class_type} (a newer ComfyUI)"


@dataclass(frozen=True)
class _Folder:
    noun: str  # "LoRA"
    list_name: str  # "loras" (the server's list / ComfyUI folder name)
    where: str  # "models/loras"
    sources: tuple[tuple[str, str, str], ...]  # (class, input, required prefix) to read the list from


MODEL_FOLDERS: dict[str, _Folder] = {
    "checkpoints": _Folder("checkpoint", "checkpoints", "models/checkpoints",
                           (("CheckpointLoaderSimple", "ckpt_name", ""),)),
    "loras": _Folder("LoRA", "loras", "models/loras",
                     (("LoraLoader", "lora_name", ""), ("LoraLoaderModelOnly", "lora_name", ""))),
    "unet": _Folder("diffusion model", "diffusion_models", "models/diffusion_models (or models/unet)",
                    (("UNETLoader", "unet_name", ""),)),
    "clip": _Folder("text encoder", "text_encoders", "models/text_encoders (or models/clip)",
                    (("CLIPLoader", "clip_name", ""), ("DualCLIPLoader", "clip_name1", ""))),
    "vae": _Folder("VAE", "vae", "models/vae", (("VAELoader", "vae_name", ""),)),
    "upscale_models": _Folder("upscale model", "upscale_models", "models/upscale_models",
                              (("UpscaleModelLoader", "model_name", ""),)),
    "controlnet": _Folder("ControlNet model", "controlnet", "models/controlnet",
                          (("ControlNetLoader", "control_net_name", ""),)),
    "clip_vision": _Folder("CLIP vision model", "clip_vision", "models/clip_vision",
                           (("CLIPVisionLoader", "clip_name", ""),)),
    "ipadapter": _Folder("IP-Adapter model", "ipadapter", "models/ipadapter",
                         (("IPAdapterModelLoader", "ipadapter_file", ""),)),
    "ultralytics_bbox": _Folder("face detection model", "ultralytics bbox", "models/ultralytics/bbox",
                                (("UltralyticsDetectorProvider", "model_name", "bbox/"),)),
    "ultralytics": _Folder("detection model", "ultralytics", "models/ultralytics",
                           (("UltralyticsDetectorProvider", "model_name", ""),)),
    "sams": _Folder("SAM model", "sams", "models/sams", (("SAMLoader", "model_name", ""),)),
}
FOLDER_ALIASES = {"diffusion_models": "unet", "text_encoders": "clip", "controlnets": "controlnet"}
# Entries some loaders list that are not files in the folder.
PSEUDO_CHOICES = {"vae": {"pixel_space"}, "sams": {"ESAM"}}
# (class, input) -> folder, for naming model combos in messages.
MODEL_INPUTS: dict[tuple[str, str], str] = {
    (cls, inp): folder for folder, f in MODEL_FOLDERS.items() for cls, inp, _ in f.sources
}
MODEL_INPUTS[("DualCLIPLoader", "clip_name2")] = "clip"
MODEL_INPUTS[("UltralyticsDetectorProvider", "model_name")] = "ultralytics"


def folder_noun(folder: str) -> tuple[str, str]:
    """(noun, where) for a model folder: ("upscale model", "models/upscale_models")."""
    f = MODEL_FOLDERS.get(FOLDER_ALIASES.get(folder, folder))
    return (f.noun, f.where) if f else ("model", f"models/{folder}")


@dataclass(frozen=True)
class Gap:
    node_id: str
    class_type: str
    input_name: str
    message: str  # a complete sentence for the user
    value: object = None  # the offending value, when there is one
    # unknown_class | missing_input | not_in_list | out_of_range | bad_value | bad_link | no_output | bad_node
    kind: str = ""


@dataclass(frozen=True)
class InputSpec:
    kind: str  # "combo" | INT | FLOAT | STRING | BOOLEAN | a link type such as MODEL
    options: Mapping[str, Any]
    choices: tuple[Any, ...] = ()


def input_spec(raw: Any) -> InputSpec:
    """Normalise one ``/object_info`` input spec (legacy ``[[...], {}]`` and V3 ``["COMBO", {options}]``)."""
    if not isinstance(raw, (list, tuple)) or not raw:
        return InputSpec("*", {})
    head = raw[0]
    opts = raw[1] if len(raw) > 1 and isinstance(raw[1], Mapping) else {}
    if isinstance(head, (list, tuple)):
        return InputSpec("combo", opts, tuple(head))
    if head == "COMBO":
        return InputSpec("combo", opts, tuple(opts.get("options", ())))
    return InputSpec(str(head), opts)


def _node_inputs(info: Mapping) -> tuple[dict[str, Any], dict[str, Any]]:
    inp = info.get("input") or {}
    return dict(inp.get("required") or {}), dict(inp.get("optional") or {})


def _is_link(value: Any) -> bool:
    return (isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)
            and isinstance(value[1], int) and not isinstance(value[1], bool))


def _types_match(out_type: str, in_type: str) -> bool:
    if out_type == "*" or in_type == "*":
        return True
    return bool(set(out_type.split(",")) & set(in_type.split(",")))


def _short(choices: Sequence[Any], limit: int = 5) -> str:
    shown = ", ".join(repr(c) for c in choices[:limit])
    return shown + (f" and {len(choices) - limit} more" if len(choices) > limit else "")


def _fmt(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_graph(graph: Mapping, object_info: Mapping) -> list[Gap]:
    """Every reason ``graph`` would fail ComfyUI's validation on the server that sent ``object_info``.

    Reports unknown node classes (with the custom-node pack that provides them when known),
    combo values not in the server's list (model names included), INT/FLOAT values outside
    min/max or of the wrong type, missing required inputs, links to missing nodes or outputs or
    of the wrong type, and a graph without an output node. ``LoadImage``-style upload inputs are
    not checked against the list (the file is uploaded just before the prompt is posted, and
    ComfyUI itself validates them by file).
    """
    gaps: list[Gap] = []
    if not isinstance(graph, Mapping) or not graph:
        return [Gap("", "", "", "The workflow graph is empty.", kind="no_output")]
    has_output = False
    for node_id, node in graph.items():
        node_id = str(node_id)
        if not isinstance(node, Mapping) or not isinstance(node.get("class_type"), str):
            gaps.append(Gap(node_id, "", "", f"Node {node_id} has no class_type.", kind="bad_node"))
            continue
        cls = node["class_type"]
        inputs = node.get("inputs") or {}
        info = object_info.get(cls)
        if not isinstance(info, Mapping):
            pack = node_pack(cls)
            fix = (f"install the custom-node pack {pack}" if pack
                   else "update ComfyUI or install the node pack that provides it")
            gaps.append(Gap(node_id, cls, "", f"Node {node_id} uses {cls}, which this server does not have: {fix}.",
                            value=cls, kind="unknown_class"))
            continue
        if info.get("output_node"):
            has_output = True
        required, optional = _node_inputs(info)
        for name in required:
            if name not in inputs:
                gaps.append(Gap(node_id, cls, name, f"Node {node_id} ({cls}): the required input '{name}' is missing.",
                                kind="missing_input"))
        for name, value in inputs.items():
            raw = required.get(name, optional.get(name))
            if raw is None:
                continue  # inputs the node does not declare are ignored by ComfyUI
            spec = input_spec(raw)
            where = f"Node {node_id} ({cls}): input '{name}'"
            if _is_link(value):
                gaps.extend(_check_link(graph, object_info, node_id, cls, name, spec, value))
                continue
            gap = _check_value(node_id, cls, name, spec, value, where)
            if gap is not None:
                gaps.append(gap)
    if not has_output and not any(g.kind == "unknown_class" for g in gaps):
        gaps.append(Gap("", "", "", "The workflow has no output node (such as SaveImage), so ComfyUI would not run it.",
                        kind="no_output"))
    return gaps


def _check_link(graph: Mapping, object_info: Mapping, node_id: str, cls: str, name: str, spec: InputSpec,
                value: list) -> list[Gap]:
    src_id, out_index = value
    where = f"Node {node_id} ({cls}): input '{name}'"
    src = graph.get(src_id)
    if not isinstance(src, Mapping):
        return [Gap(node_id, cls, name, f"{where} is linked to node {src_id}, which is not in the workflow.",
                    value=value, kind="bad_link")]
    src_info = object_info.get(src.get("class_type"))
    if not isinstance(src_info, Mapping):
        return []  # reported as an unknown class on that node
    outputs = list(src_info.get("output") or [])
    if not 0 <= out_index < len(outputs):
        return [Gap(node_id, cls, name, f"{where} is linked to output {out_index} of node {src_id} "
                                         f"({src['class_type']}), which has {len(outputs)} output(s).",
                    value=value, kind="bad_link")]
    out_type = outputs[out_index]
    if isinstance(out_type, list):
        out_type = "COMBO"
    if spec.kind == "combo" or _types_match(str(out_type), spec.kind):
        return []
    return [Gap(node_id, cls, name, f"{where} expects {spec.kind} but node {src_id} ({src['class_type']}) "
                                     f"output {out_index} gives {out_type}.", value=value, kind="bad_link")]


def _check_value(node_id: str, cls: str, name: str, spec: InputSpec, value: Any, where: str) -> Gap | None:
    def gap(msg: str, kind: str) -> Gap:
        return Gap(node_id, cls, name, msg, value=value, kind=kind)

    if spec.kind == "combo":
        if spec.options.get("image_upload") or spec.options.get("upload"):
            return None
        if value in spec.choices:
            return None
        folder = MODEL_INPUTS.get((cls, name))
        if folder:
            f = MODEL_FOLDERS[folder]
            listed = f" (it lists {_short(list(spec.choices))})" if spec.choices else \
                f" (it lists none: put the file in {f.where} on the server)"
            return gap(f"Node {node_id} ({cls}): {f.noun} {_fmt(value)} is not in the server's "
                       f"{f.list_name} list{listed}.", "not_in_list")
        return gap(f"{where} = {_fmt(value)} is not one of the server's choices ({_short(list(spec.choices))}).",
                   "not_in_list")
    if spec.kind in ("INT", "FLOAT"):
        number_ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if spec.kind == "INT" and isinstance(value, float) and not value.is_integer():
            number_ok = False
        if not number_ok:
            what = "a whole number" if spec.kind == "INT" else "a number"
            return gap(f"{where} = {_fmt(value)} is not {what}.", "bad_value")
        lo, hi = spec.options.get("min"), spec.options.get("max")
        if lo is not None and value < lo:
            return gap(f"{where} = {value} is below the minimum {lo}.", "out_of_range")
        if hi is not None and value > hi:
            return gap(f"{where} = {value} is above the maximum {hi}.", "out_of_range")
        return None
    if spec.kind == "STRING":
        if not isinstance(value, str):
            return gap(f"{where} = {_fmt(value)} is not text.", "bad_value")
        return None
    if spec.kind == "BOOLEAN":
        if not isinstance(value, bool):
            return gap(f"{where} = {_fmt(value)} is not true or false.", "bad_value")
        return None
    # A link-only type (MODEL, CONDITIONING ...) given a plain value.
    return gap(f"{where} must be linked to a {spec.kind} output, not set to {_fmt(value)}.", "bad_link")


# --------------------------------------------------------------------------------------------
# Models and features on a server
# --------------------------------------------------------------------------------------------


def _choices_from(object_info: Mapping, cls: str, inp: str) -> list[str] | None:
    info = object_info.get(cls)
    if not isinstance(info, Mapping):
        return None
    required, optional = _node_inputs(info)
    raw = required.get(inp, optional.get(inp))
    if raw is None:
        return None
    spec = input_spec(raw)
    if spec.kind != "combo":
        return None
    return [c for c in spec.choices if isinstance(c, str)]


def _model_choices_or_none(object_info: Mapping, folder: str) -> list[str] | None:
    key = FOLDER_ALIASES.get(folder, folder)
    f = MODEL_FOLDERS.get(key)
    if f is None:
        return None
    for cls, inp, prefix in f.sources:
        choices = _choices_from(object_info, cls, inp)
        if choices is not None:
            pseudo = PSEUDO_CHOICES.get(key, set())
            return [c for c in choices if c.startswith(prefix) and c not in pseudo]
    return None


def model_choices(object_info: Mapping, folder: str) -> list[str]:
    """The model files a server lists for ``folder`` (e.g. ``loras`` -> LoraLoader's lora_name list).

    Folders: checkpoints, loras, unet (diffusion_models), clip (text_encoders), vae, upscale_models,
    controlnet, clip_vision, ipadapter, ultralytics_bbox, ultralytics, sams. Unknown folders and
    servers without the loader node give ``[]``.
    """
    return list(_model_choices_or_none(object_info, folder) or [])


def _hint_matches(name: str, hint: str) -> bool:
    # at the start of the name or of a word in it: "ae.safetensors" matches "flux/ae.safetensors"
    # but not "sdxl_vae.safetensors"
    return re.search(r"(?<![a-z0-9])" + re.escape(hint.lower()), name.lower()) is not None


def pick_model(choices: Sequence[str], hints: Iterable[str], default: str | None = None) -> str | None:
    """``default`` when the server has it, else the first choice matching the earliest hint that
    matches any (a hint matches at the start of the name or of a word in it)."""
    if default is not None and default in choices:
        return default
    for hint in hints:
        for c in choices:
            if _hint_matches(c, hint):
                return c
    return None


def _auto(params: Mapping[str, ParamSpec], current, object_info: Mapping) -> dict[str, str]:
    out = {}
    for name, p in params.items():
        if p.type != "model" or p.required or not p.hints:
            continue
        choices = model_choices(object_info, p.model_folder)
        pick = pick_model(choices, p.hints, current(p))
        if pick is not None and pick != current(p):
            out[name] = pick
    return out


def suggest_models(spec: WorkflowSpec, object_info: Mapping, *, features: Iterable[str] = ()
                   ) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """Server-available values for auxiliary model params (text encoders, VAE, upscale/face models).

    Returns ``(params, {feature: params})`` holding only the params whose value in the JSON is not
    on the server's list but a file matching the param's hints is.
    """
    base = _auto(spec.params, lambda p: spec.graph[p.node]["inputs"][p.input], object_info)
    feats = {}
    for fname in features:
        feat = spec.features.get(fname)
        if feat is None:
            continue
        feats[fname] = _auto(feat.params, lambda p, f=feat: f.fragment[p.node]["inputs"][p.input], object_info)
    return base, feats


@functools.lru_cache(maxsize=4)
def _default_library(folder: str) -> WorkflowLibrary:
    from .workflow_manifest import WorkflowLibrary

    return WorkflowLibrary.load(Path(folder))


def _library(library: WorkflowLibrary | None) -> WorkflowLibrary:
    if library is not None:
        return library
    from .workflow_manifest import default_workflows_dir

    return _default_library(str(default_workflows_dir()))


def _missing_nodes(nodes: Iterable[str], object_info: Mapping) -> list[str]:
    return [_needs_node(n) for n in dict.fromkeys(nodes) if n not in object_info]


def _missing_models(folders: Iterable[str], object_info: Mapping) -> list[str]:
    out = []
    for folder in folders:
        choices = _model_choices_or_none(object_info, folder)
        if choices is None:
            continue  # the loader node is missing (reported as a node) or the list cannot be read
        if not choices:
            noun, where = folder_noun(folder)
            out.append(f"no {noun} in {where}")
    return out


def _feature_reason(feat: FeatureSpec, family: str, object_info: Mapping) -> tuple[bool, str]:
    if family not in feat.families:
        return False, feat.unsupported or f"{feat.title} does not work with {family} workflows"
    missing = _missing_nodes(feat.nodes, object_info) + _missing_models(feat.models, object_info)
    return (not missing), "; ".join(missing)


def feature_support(family: str, feature: str, object_info: Mapping, *,
                    library: WorkflowLibrary | None = None) -> tuple[bool, str]:
    """Whether ``feature`` can run for ``family`` workflows on this server, and if not, exactly why.

    ``(False, "needs node FaceDetailer (ComfyUI-Impact-Pack)")``,
    ``(False, "no upscale model in models/upscale_models")``, ``(True, "")``.
    """
    lib = _library(library)
    feat = lib.features.get(feature)
    if feat is None:
        return False, f"unknown feature {feature!r} (known: {', '.join(lib.features)})"
    return _feature_reason(feat, family, object_info)


@dataclass(frozen=True)
class WorkflowStatus:
    name: str
    title: str
    family: str
    kind: str
    lora: bool
    ok: bool
    missing: tuple[str, ...]  # user-facing reasons, empty when ok
    features: Mapping[str, tuple[bool, str]] = field(default_factory=dict)


def _family_gap(spec: WorkflowSpec, object_info: Mapping,
                known: Mapping[str, str | None] | None) -> str | None:
    """The main model param lists files, but none of the workflow's family (nor of unknown
    family): say what the server has instead."""
    from .model_family import describe, family_choices, label

    param = spec.params.get("model")
    if param is None or param.type != "model" or spec.family not in FAMILIES_WITH_MODELS:
        return None
    choices = _model_choices_or_none(object_info, param.model_folder)
    if not choices or family_choices(choices, spec.family, known):
        return None
    _noun, where = folder_noun(param.model_folder)
    return (f"no {label(spec.family)} model in {where} (the server has "
            f"{describe(choices, known)})")


FAMILIES_WITH_MODELS = ("sd15", "sdxl", "flux-dev", "flux-schnell", "chroma")


def workflow_missing(spec: WorkflowSpec, object_info: Mapping,
                     known: Mapping[str, str | None] | None = None) -> list[str]:
    missing = _missing_nodes(spec.nodes, object_info) + _missing_models(spec.models, object_info)
    gap = _family_gap(spec, object_info, known)
    if gap is not None:
        missing.append(gap)
    empty = {m.split(" in ", 1)[0] for m in missing}
    for p in spec.params.values():
        if p.type != "model" or p.required or not p.hints:
            continue
        choices = _model_choices_or_none(object_info, p.model_folder)
        if not choices:
            continue  # node missing or folder empty: already said
        default = spec.graph[p.node]["inputs"][p.input]
        if pick_model(choices, p.hints, default) is None:
            noun, where = folder_noun(p.model_folder)
            msg = f"no {p.label or noun} in {where}"
            if msg.split(" in ", 1)[0] not in empty:
                missing.append(msg)
    return missing


def workflow_availability(library: WorkflowLibrary | None, object_info: Mapping) -> list[WorkflowStatus]:
    """Which workflows can run on the server that sent ``object_info``, and what each one lacks.

    Used by ``isengard comfy-check``. Features are reported per workflow with the same reasons as
    :func:`feature_support`.
    """
    lib = _library(library)
    out = []
    for spec in lib.specs():
        missing = workflow_missing(spec, object_info)
        feats = {name: _feature_reason(feat, spec.family, object_info) for name, feat in spec.features.items()}
        out.append(WorkflowStatus(spec.name, spec.title, spec.family, spec.kind, spec.lora, not missing,
                                  tuple(missing), feats))
    return out
