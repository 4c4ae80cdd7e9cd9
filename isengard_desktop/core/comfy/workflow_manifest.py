"""Loading and validating ``workflows/manifest.yaml`` and the workflow / fragment JSON files.

The public names are re-exported by :mod:`isengard_desktop.core.comfy.workflows`; import them
from there. See the header of ``workflows/manifest.yaml`` for the format.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

MANIFEST_VERSION = 1
MAX_SEED = 2**64 - 1  # KSampler.seed max in ComfyUI 0.3.64's /object_info

FAMILIES = ("sd15", "sdxl", "flux-schnell", "flux-dev", "chroma", "any", "wan21", "ltxv")
# img2vid: one start image; flf2vid: first + last keyframe; txt2vid: no image (video models)
KINDS = ("txt2img", "img2img", "upscale", "img2vid", "flf2vid", "txt2vid")
VIDEO_KINDS = ("img2vid", "flf2vid", "txt2vid")
PARAM_TYPES = ("text", "int", "float", "seed", "model", "image", "choice")
FEATURES = ("ipadapter", "controlnet", "facedetailer", "upscale")
ENV_FOLDER = "ISENGARD_WORKFLOWS"
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # LibYAML when present: ~7x faster


class WorkflowError(ValueError):
    """A workflow file, the manifest or the parameters given to it are wrong.

    ``str(e)`` names the workflow (or feature) and the field or parameter.
    """


@dataclass(frozen=True)
class ParamSpec:
    name: str
    node: str
    input: str
    type: str  # text | int | float | seed | model | image | choice
    model_folder: str = ""  # checkpoints | loras | unet | clip | vae | upscale_models | controlnet | ...
    required: bool = False
    label: str = ""
    hints: tuple[str, ...] = ()  # lowercase substrings to pick an auxiliary model from a server list
    also: tuple[tuple[str, str], ...] = ()  # more (node, input) pairs that get the same value


@dataclass(frozen=True)
class Role:
    source: tuple[str, int]
    targets: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, eq=False)
class FeatureSpec:
    name: str
    title: str
    families: tuple[str, ...]
    kinds: tuple[str, ...]
    unsupported: str
    nodes: tuple[str, ...]
    models: tuple[str, ...]
    consumes: tuple[str, ...]
    provides: Mapping[str, tuple[str, int]]
    uses_params: tuple[str, ...]
    params: Mapping[str, ParamSpec]
    path: Path
    fragment: Mapping[str, Any] = field(repr=False, default_factory=dict)

    def applies_to(self, family: str, kind: str) -> bool:
        return family in self.families and kind in self.kinds


@dataclass(frozen=True, eq=False)
class WorkflowSpec:
    name: str
    title: str
    family: str  # sd15 | sdxl | flux-dev | flux-schnell | chroma | any | wan21 | ltxv
    kind: str  # txt2img | img2img | upscale | img2vid | flf2vid | txt2vid
    lora: bool
    params: Mapping[str, ParamSpec]
    nodes: tuple[str, ...]  # node classes it needs
    path: Path  # the JSON file
    models: tuple[str, ...] = ()  # model folders it needs a file in
    ignores: frozenset[str] = frozenset()  # params accepted and dropped (unused by this family)
    roles: Mapping[str, Role] = field(default_factory=dict)
    features: Mapping[str, FeatureSpec] = field(default_factory=dict)  # the features that apply to it
    feature_order: tuple[str, ...] = FEATURES  # order fragments are applied in
    graph: Mapping[str, Any] = field(repr=False, default_factory=dict)  # parsed JSON; never mutated

    def accepts(self, param: str) -> bool:
        return param in self.params or param in self.ignores

    def default(self, param: str) -> Any:
        """The value the JSON file holds for ``param``."""
        p = self.params[param]
        return copy.deepcopy(self.graph[p.node]["inputs"][p.input])

    def fresh_graph(self) -> dict:
        return copy.deepcopy(dict(self.graph))


# --------------------------------------------------------------------------------------------
# Loading and validating the manifest
# --------------------------------------------------------------------------------------------


def default_workflows_dir() -> Path:
    env = os.environ.get(ENV_FOLDER, "").strip()
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[3] / "workflows"


class _Ctx:
    """Error context: ``manifest.yaml: workflow 'flux-dev', field 'params.prompt': ...``."""

    def __init__(self, manifest: Path, what: str) -> None:
        self.manifest = manifest
        self.what = what

    def err(self, fld: str, msg: str) -> WorkflowError:
        where = f"{self.manifest.name}: {self.what}"
        if fld:
            where += f", field '{fld}'"
        return WorkflowError(f"{where}: {msg}")


def _want(ctx: _Ctx, d: Mapping, key: str, typ: type | tuple[type, ...], *, optional: bool = False, default=None):
    if key not in d:
        if optional:
            return default
        raise ctx.err(key, "is missing")
    value = d[key]
    if typ is bool:
        ok = isinstance(value, bool)
    else:
        ok = isinstance(value, typ) and not isinstance(value, bool)
    if not ok:
        names = typ.__name__ if isinstance(typ, type) else " or ".join(t.__name__ for t in typ)
        raise ctx.err(key, f"must be a {names}, not {type(value).__name__} {value!r}")
    return value


def _str_list(ctx: _Ctx, d: Mapping, key: str, *, optional: bool = True) -> tuple[str, ...]:
    value = _want(ctx, d, key, list, optional=optional, default=[])
    for i, v in enumerate(value):
        if not isinstance(v, str) or not v:
            raise ctx.err(f"{key}[{i}]", f"must be a non-empty string, not {v!r}")
    return tuple(value)


def _is_link(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], int)
        and not isinstance(value[1], bool)
    )


def _read_graph(ctx: _Ctx, path: Path, fld: str) -> dict:
    if not path.is_file():
        raise ctx.err(fld, f"file {path.name} does not exist in {path.parent}")
    try:
        graph = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ctx.err(fld, f"{path.name} is not valid JSON: {exc}") from exc
    if not isinstance(graph, dict) or not graph:
        raise ctx.err(fld, f"{path.name} must be a JSON object of nodes in ComfyUI API format")
    for node_id, node in graph.items():
        if not isinstance(node, dict) or not isinstance(node.get("class_type"), str) or not node["class_type"]:
            raise ctx.err(fld, f"{path.name}: node '{node_id}' has no class_type (is this the UI format? "
                               "export with 'Save (API format)')")
        if not isinstance(node.get("inputs"), dict):
            raise ctx.err(fld, f"{path.name}: node '{node_id}' ({node['class_type']}) has no inputs object")
    return graph


def _parse_param(ctx: _Ctx, name: str, raw: Any, graph: Mapping, graph_name: str) -> ParamSpec:
    fld = f"params.{name}"
    if not isinstance(raw, dict):
        raise ctx.err(fld, f"must be a mapping like {{node: \"6\", input: text, type: text}}, not {raw!r}")
    sub = _Ctx(ctx.manifest, f"{ctx.what}, parameter '{name}'")
    node = raw.get("node")
    if isinstance(node, int) and not isinstance(node, bool):
        node = str(node)
    if not isinstance(node, str) or not node:
        raise ctx.err(f"{fld}.node", f"must be a node id string, not {node!r}")
    inp = _want(sub, raw, "input", str)
    typ = _want(sub, raw, "type", str)
    if typ not in PARAM_TYPES:
        raise ctx.err(f"{fld}.type", f"{typ!r} is not one of {', '.join(PARAM_TYPES)}")
    folder = _want(sub, raw, "folder", str, optional=True, default="")
    if typ == "model" and not folder:
        raise ctx.err(f"{fld}.folder", "a model parameter needs its model folder (checkpoints, loras, unet ...)")
    unknown = set(raw) - {"node", "input", "type", "folder", "required", "label", "hints", "also"}
    if unknown:
        raise ctx.err(fld, f"unknown keys {sorted(unknown)}")
    targets = [(node, inp)]
    also = []
    for i, extra in enumerate(_want(sub, raw, "also", list, optional=True, default=[])):
        if not isinstance(extra, dict) or not isinstance(extra.get("input"), str):
            raise ctx.err(f"{fld}.also[{i}]", f"must be {{node, input}}, not {extra!r}")
        pair = (str(extra.get("node")), extra["input"])
        also.append(pair)
        targets.append(pair)
    for n, i in targets:
        if n not in graph:
            raise ctx.err(f"{fld}.node", f"node '{n}' does not exist in {graph_name}")
        if i not in graph[n]["inputs"]:
            raise ctx.err(f"{fld}.input", f"node '{n}' ({graph[n]['class_type']}) in {graph_name} has no input "
                                          f"'{i}' (it has: {', '.join(sorted(graph[n]['inputs']))})")
        if _is_link(graph[n]["inputs"][i]):
            raise ctx.err(f"{fld}.input", f"node '{n}' input '{i}' in {graph_name} is a link, not a value")
    hints = tuple(h.lower() for h in _str_list(sub, raw, "hints"))
    return ParamSpec(
        name=name, node=node, input=inp, type=typ, model_folder=folder,
        required=bool(_want(sub, raw, "required", bool, optional=True, default=False)),
        label=_want(sub, raw, "label", str, optional=True, default=""),
        hints=hints, also=tuple(also),
    )


def _parse_link(ctx: _Ctx, fld: str, raw: Any) -> tuple[str, int]:
    if isinstance(raw, list) and len(raw) == 2 and isinstance(raw[0], (str, int)) and isinstance(raw[1], int):
        return (str(raw[0]), int(raw[1]))
    raise ctx.err(fld, f"must be a link [node_id, output_index], not {raw!r}")


def _walk_markers(value: Any):
    if isinstance(value, dict):
        yield value
    elif isinstance(value, list) and not _is_link(value):
        for v in value:
            yield from _walk_markers(v)


def _parse_feature(manifest: Path, folder: Path, name: str, raw: Any) -> FeatureSpec:
    ctx = _Ctx(manifest, f"feature '{name}'")
    if not isinstance(raw, dict):
        raise ctx.err("", "must be a mapping")
    frag_rel = _want(ctx, raw, "fragment", str)
    path = folder / frag_rel
    nodes = _read_graph(ctx, path, "fragment")
    for local_id, node in nodes.items():
        for inp, value in node["inputs"].items():
            if _is_link(value) and value[0] not in nodes:
                raise ctx.err("fragment", f"{path.name}: node '{local_id}' input '{inp}' links to '{value[0]}', "
                                          "which is not a node of the fragment")
            for marker in _walk_markers(value):
                if set(marker) not in ({"$role"}, {"$param"}):
                    raise ctx.err("fragment", f"{path.name}: node '{local_id}' input '{inp}': "
                                              f"only {{\"$role\": r}} or {{\"$param\": p}} may be "
                                              f"objects, not {marker!r}")
    families = _str_list(ctx, raw, "families", optional=False)
    for fam in families:
        if fam not in FAMILIES:
            raise ctx.err("families", f"unknown family {fam!r} (known: {', '.join(FAMILIES)})")
    kinds = _str_list(ctx, raw, "kinds", optional=False)
    for kind in kinds:
        if kind not in KINDS:
            raise ctx.err("kinds", f"unknown kind {kind!r}")
    provides_raw = _want(ctx, raw, "provides", dict, optional=True, default={})
    provides = {}
    for role, link in provides_raw.items():
        src = _parse_link(ctx, f"provides.{role}", link)
        if src[0] not in nodes:
            raise ctx.err(f"provides.{role}", f"'{src[0]}' is not a node of {path.name}")
        provides[str(role)] = src
    params = {}
    for pname, praw in _want(ctx, raw, "params", dict, optional=True, default={}).items():
        params[str(pname)] = _parse_param(ctx, str(pname), praw, nodes, path.name)
    uses = set(_str_list(ctx, raw, "uses_params"))
    consumes = set(_str_list(ctx, raw, "consumes"))
    for node in nodes.values():
        for value in node["inputs"].values():
            for marker in _walk_markers(value):
                if "$role" in marker and marker["$role"] not in consumes:
                    raise ctx.err("consumes", f"the fragment reads role {marker['$role']!r}; list it in consumes")
                if "$param" in marker and marker["$param"] not in uses:
                    raise ctx.err("uses_params",
                                  f"the fragment reads param {marker['$param']!r}; list it in uses_params")
    return FeatureSpec(
        name=name,
        title=_want(ctx, raw, "title", str),
        families=families,
        kinds=kinds,
        unsupported=_want(ctx, raw, "unsupported", str, optional=True, default=""),
        nodes=_str_list(ctx, raw, "nodes", optional=False),
        models=_str_list(ctx, raw, "models"),
        consumes=tuple(sorted(consumes)),
        provides=MappingProxyType(provides),
        uses_params=tuple(sorted(uses)),
        params=MappingProxyType(params),
        path=path,
        fragment=MappingProxyType(nodes),
    )


def _parse_workflow(manifest: Path, folder: Path, name: str, raw: Any, features: Mapping[str, FeatureSpec],
                    order: tuple[str, ...]) -> WorkflowSpec:
    ctx = _Ctx(manifest, f"workflow '{name}'")
    if not isinstance(raw, dict):
        raise ctx.err("", "must be a mapping")
    file_rel = _want(ctx, raw, "file", str)
    path = folder / file_rel
    graph = _read_graph(ctx, path, "file")
    family = _want(ctx, raw, "family", str)
    if family not in FAMILIES:
        raise ctx.err("family", f"{family!r} is not one of {', '.join(FAMILIES)}")
    kind = _want(ctx, raw, "kind", str)
    if kind not in KINDS:
        raise ctx.err("kind", f"{kind!r} is not one of {', '.join(KINDS)}")
    lora = _want(ctx, raw, "lora", bool)
    nodes = _str_list(ctx, raw, "nodes", optional=False)
    used = {n["class_type"] for n in graph.values()}
    if set(nodes) != used:
        missing, extra = sorted(used - set(nodes)), sorted(set(nodes) - used)
        parts = []
        if missing:
            parts.append(f"{path.name} also uses {', '.join(missing)}")
        if extra:
            parts.append(f"{path.name} does not use {', '.join(extra)}")
        raise ctx.err("nodes", "; ".join(parts))
    params_raw = _want(ctx, raw, "params", dict)
    params = {str(k): _parse_param(ctx, str(k), v, graph, path.name) for k, v in params_raw.items()}
    if lora and not {"lora", "lora_strength"} <= set(params):
        raise ctx.err("params", "a LoRA workflow needs the params 'lora' and 'lora_strength'")
    ignores = frozenset(_str_list(ctx, raw, "ignores"))
    clash = ignores & set(params)
    if clash:
        raise ctx.err("ignores", f"{sorted(clash)} are real params of this workflow")
    roles = {}
    for rname, rraw in _want(ctx, raw, "roles", dict, optional=True, default={}).items():
        fld = f"roles.{rname}"
        if not isinstance(rraw, dict):
            raise ctx.err(fld, "must be {source: [node, output], targets: [[node, input] ...]}")
        src = _parse_link(ctx, f"{fld}.source", rraw.get("source"))
        if src[0] not in graph:
            raise ctx.err(f"{fld}.source", f"node '{src[0]}' does not exist in {path.name}")
        targets = []
        for i, t in enumerate(rraw.get("targets") or []):
            if not (isinstance(t, list) and len(t) == 2 and isinstance(t[1], str)):
                raise ctx.err(f"{fld}.targets[{i}]", f"must be [node, input], not {t!r}")
            tn, ti = str(t[0]), t[1]
            if tn not in graph or ti not in graph[tn]["inputs"]:
                raise ctx.err(f"{fld}.targets[{i}]", f"{path.name} has no input '{ti}' on node '{tn}'")
            if graph[tn]["inputs"][ti] != [src[0], src[1]]:
                raise ctx.err(f"{fld}.targets[{i}]", f"node '{tn}' input '{ti}' is not linked to {list(src)}")
            targets.append((tn, ti))
        roles[str(rname)] = Role(source=src, targets=tuple(targets))
    applicable = {}
    for fname in order:
        feat = features[fname]
        if not feat.applies_to(family, kind):
            continue
        for role in feat.consumes:
            if role not in roles:
                raise ctx.err("roles", f"feature '{fname}' needs the role '{role}'")
        for role in feat.provides:
            if role not in roles or not roles[role].targets:
                raise ctx.err("roles", f"feature '{fname}' replaces the role '{role}', which needs targets")
        for p in feat.uses_params:
            if p not in params:
                raise ctx.err("params", f"feature '{fname}' reads the param '{p}'")
        applicable[fname] = feat
    return WorkflowSpec(
        name=name,
        title=_want(ctx, raw, "title", str),
        family=family,
        kind=kind,
        lora=lora,
        params=MappingProxyType(params),
        nodes=nodes,
        path=path,
        models=_str_list(ctx, raw, "models"),
        ignores=ignores,
        roles=MappingProxyType(roles),
        features=MappingProxyType(applicable),
        feature_order=order,
        graph=MappingProxyType(graph),
    )


class WorkflowLibrary:
    """All workflows and feature fragments of one ``workflows/`` folder."""

    def __init__(self, folder: Path, workflows: Mapping[str, WorkflowSpec], features: Mapping[str, FeatureSpec],
                 feature_order: tuple[str, ...]) -> None:
        self.folder = folder
        self._workflows = dict(workflows)
        self.features: Mapping[str, FeatureSpec] = MappingProxyType(dict(features))
        self.feature_order = feature_order

    @classmethod
    def load(cls, folder: Path | None = None) -> WorkflowLibrary:
        folder = Path(folder) if folder is not None else default_workflows_dir()
        manifest = folder / "manifest.yaml"
        top = _Ctx(manifest, "manifest")
        if not manifest.is_file():
            raise WorkflowError(f"The workflow manifest {manifest} does not exist "
                                f"(set {ENV_FOLDER} to a folder holding manifest.yaml).")
        try:
            doc = yaml.load(manifest.read_text(encoding="utf-8"), Loader=_YAML_LOADER)
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise WorkflowError(f"{manifest.name}: cannot be read as YAML: {exc}") from exc
        if not isinstance(doc, dict):
            raise top.err("", "must be a mapping with version, workflows and features")
        version = doc.get("version")
        if version != MANIFEST_VERSION:
            raise top.err("version", f"is {version!r}; this app reads version {MANIFEST_VERSION}")
        features_raw = _want(top, doc, "features", dict, optional=True, default={})
        features = {str(k): _parse_feature(manifest, folder, str(k), v) for k, v in features_raw.items()}
        order = _str_list(top, doc, "feature_order")
        for f in order:
            if f not in features:
                raise top.err("feature_order", f"names the unknown feature {f!r}")
        order = order + tuple(sorted(set(features) - set(order)))
        workflows_raw = _want(top, doc, "workflows", dict)
        if not workflows_raw:
            raise top.err("workflows", "is empty")
        workflows = {str(k): _parse_workflow(manifest, folder, str(k), v, features, order)
                     for k, v in workflows_raw.items()}
        return cls(folder, workflows, features, order)

    def names(self) -> list[str]:
        return list(self._workflows)

    def specs(self) -> list[WorkflowSpec]:
        return list(self._workflows.values())

    def get(self, name: str) -> WorkflowSpec:
        try:
            return self._workflows[name]
        except KeyError:
            raise KeyError(f"There is no workflow named {name!r} in {self.folder} "
                           f"(known: {', '.join(self._workflows)}).") from None

    def __contains__(self, name: object) -> bool:
        return name in self._workflows

    def find(self, family: str, *, kind: str = "txt2img", lora: bool = False) -> WorkflowSpec | None:
        for spec in self._workflows.values():
            if spec.family == family and spec.kind == kind and spec.lora == lora:
                return spec
        return None

    def families(self) -> list[str]:
        return list(dict.fromkeys(s.family for s in self._workflows.values() if s.family != "any"))
