"""Workflow library: API-format ComfyUI graphs on disk plus ``workflows/manifest.yaml``.

A workflow is a JSON file in exactly the form ComfyUI's ``POST /prompt`` takes
(``{"<id>": {"class_type", "inputs", "_meta"}}``, links are ``[node_id, output_index]``).
The manifest names each workflow's family, kind, parameters (the node input each sets),
the node classes and model folders it needs, and the *roles* (named links) where feature
fragments (ControlNet, IP-Adapter, FaceDetailer, Upscale) attach. See the header of
``workflows/manifest.yaml`` for the format.

Substitution always edits the parsed graph (``copy.deepcopy`` of the loaded JSON), never text,
so any prompt — quotes, braces, ``{{``, newlines, unicode, 10k characters — goes through as is.

Checking a graph against a server's ``/object_info`` lives in :mod:`.graph_check` and is
re-exported here (``check_graph``, ``feature_support``, ``model_choices`` ...).
"""

from __future__ import annotations

import copy
import math
import secrets
from collections.abc import Mapping
from typing import Any

from .graph_check import (
    suggest_models,
)
from .workflow_manifest import (
    MAX_SEED,
    FeatureSpec,
    ParamSpec,
    WorkflowError,
    WorkflowSpec,
    _is_link,
)

__all__ = ["build_graph", "random_seed"]


RANDOM_SEED_BITS = 50  # the ComfyUI frontend's own range; stays exact in JavaScript numbers


def random_seed() -> int:
    return secrets.randbits(RANDOM_SEED_BITS)


def _coerce(owner: str, p: ParamSpec, value: Any) -> Any:
    def bad(why: str) -> WorkflowError:
        return WorkflowError(f"{owner}: parameter '{p.name}' {why} (got {type(value).__name__} {value!r:.80})")

    if p.type in ("text",):
        if not isinstance(value, str):
            raise bad("must be text")
        return value
    if p.type in ("model", "image", "choice"):
        if not isinstance(value, str) or not value:
            raise bad("must be a non-empty name")
        return value
    if p.type in ("int", "seed"):
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer() and p.type == "int":
                value = int(value)
            else:
                raise bad("must be a whole number")
        if p.type == "seed" and not 0 <= value <= MAX_SEED:
            raise bad(f"must be between 0 and {MAX_SEED}")
        return int(value)
    if p.type == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("must be a number")
        value = float(value)
        if not math.isfinite(value):
            raise bad("must be a finite number")
        return value
    raise bad(f"has the unknown type {p.type!r}")  # pragma: no cover - rejected on load


def _set(graph: dict, p: ParamSpec, value: Any, id_map: Mapping[str, str] | None = None) -> None:
    for node, inp in ((p.node, p.input), *p.also):
        node = id_map[node] if id_map is not None else node
        graph[node]["inputs"][inp] = copy.deepcopy(value)


def _apply_params(owner: str, graph: dict, params_def: Mapping[str, ParamSpec], values: Mapping[str, Any],
                  ignores: frozenset[str], id_map: Mapping[str, str] | None = None) -> None:
    if not isinstance(values, Mapping):
        raise WorkflowError(f"{owner}: parameters must be a mapping, not {type(values).__name__}")
    for name in values:
        if name not in params_def and name not in ignores:
            known = ", ".join(params_def) or "none"
            raise WorkflowError(f"{owner} has no parameter {name!r} (it takes: {known}).")
    for name, p in params_def.items():
        if p.required and (name not in values or values[name] is None):
            what = f" ({p.label})" if p.label else ""
            raise WorkflowError(f"{owner}: the parameter '{name}'{what} is required.")
    for name, value in values.items():
        if name in ignores or value is None:
            continue
        p = params_def[name]
        _set(graph, p, _coerce(owner, p, value), id_map)


def _next_ids(graph: Mapping[str, Any], count: int) -> list[str]:
    nums = [int(k) for k in graph if k.isdigit()]
    start = max(nums, default=0) + 1
    return [str(start + i) for i in range(count)]


def _resolve(value: Any, id_map: Mapping[str, str], roles: Mapping[str, list], param_value) -> Any:
    if _is_link(value):
        return [id_map.get(value[0], value[0]), value[1]]
    if isinstance(value, dict):
        if "$role" in value:
            return list(roles[value["$role"]])
        if "$param" in value:
            return param_value(value["$param"])
    if isinstance(value, list):
        return [_resolve(v, id_map, roles, param_value) for v in value]
    return copy.deepcopy(value)


def _apply_feature(spec: WorkflowSpec, graph: dict, roles: dict[str, list], feat: FeatureSpec,
                   values: Mapping[str, Any]) -> None:
    owner = f"feature '{feat.name}' of workflow '{spec.name}'"
    new_ids = _next_ids(graph, len(feat.fragment))
    id_map = dict(zip(feat.fragment, new_ids, strict=True))

    def param_value(name: str) -> Any:
        p = spec.params[name]
        return copy.deepcopy(graph[p.node]["inputs"][p.input])

    for local_id, node in feat.fragment.items():
        graph[id_map[local_id]] = {
            "class_type": node["class_type"],
            "inputs": {k: _resolve(v, id_map, roles, param_value) for k, v in node["inputs"].items()},
            "_meta": copy.deepcopy(node.get("_meta", {"title": node["class_type"]})),
        }
    _apply_params(owner, graph, feat.params, values or {}, frozenset(), id_map)
    for role, (local_id, out) in feat.provides.items():
        link = [id_map[local_id], out]
        for node, inp in spec.roles[role].targets:
            graph[node]["inputs"][inp] = list(link)
        roles[role] = link


def build_graph(spec: WorkflowSpec, params: Mapping[str, object], *,
                features: Mapping[str, Mapping[str, object] | None] | None = None,
                object_info: Mapping | None = None) -> dict:
    """A fresh API graph for ``spec`` with ``params`` set at their node inputs.

    ``params`` not given keep the value in the JSON file; required ones must be given; unknown ones
    raise :class:`WorkflowError` (except those the workflow lists under ``ignores``, e.g. Flux's
    negative prompt). ``features`` maps a feature name (``upscale``, ``controlnet``, ``ipadapter``,
    ``facedetailer``) to its own params; each is spliced in as a graph fragment. With
    ``object_info``, auxiliary model params the caller did not give (text encoders, VAE, upscale
    or face-detection model) are picked from the server's lists (see :func:`suggest_models`).
    """
    features = dict(features or {})
    values = dict(params)
    feature_values: dict[str, dict] = {f: dict(v or {}) for f, v in features.items()}
    if object_info is not None:
        auto, auto_features = suggest_models(spec, object_info, features=tuple(features))
        for k, v in auto.items():
            values.setdefault(k, v)
        for f, fv in auto_features.items():
            for k, v in fv.items():
                feature_values[f].setdefault(k, v)
    graph = spec.fresh_graph()
    _apply_params(f"workflow '{spec.name}'", graph, spec.params, values, spec.ignores)
    if features:
        roles = {name: [r.source[0], r.source[1]] for name, r in spec.roles.items()}
        order = list(spec.feature_order)
        for fname in sorted(features, key=lambda f: order.index(f) if f in order else len(order)):
            feat = spec.features.get(fname)
            if feat is None:
                known = ", ".join(spec.features) or "none"
                raise WorkflowError(f"workflow '{spec.name}' cannot take the feature {fname!r} "
                                    f"(it takes: {known}).")
            _apply_feature(spec, graph, roles, feat, feature_values[fname])
    return graph
