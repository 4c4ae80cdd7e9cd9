"""Substitution is done on the parsed graph: any text reaches its node input exactly and the graph
always serialises to JSON that parses back to the same graph."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from isengard_desktop.core.comfy.workflow_manifest import MAX_SEED, WorkflowLibrary
from isengard_desktop.core.comfy.workflows import build_graph

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"
LIBRARY = WorkflowLibrary.load(WORKFLOWS)
TEXT_WORKFLOWS = [s.name for s in LIBRARY.specs() if "prompt" in s.params]

NASTY = ['"', "'", "\\", "{", "}", "{{", "}}", "{{prompt}}", "%date:yyyy%", "\n", "\r\n", "\t", "\x00", "\u2028",
         "é", "漢字", "🧙‍♂️", "\U0001f600", "<lora:x:1>", "(masterpiece:1.2)", "[a|b]", "__wildcard__", "${x}",
         '", "inputs": {', "\ufeff", "\u202e"]

prompt_text = st.one_of(
    st.text(max_size=300),
    st.lists(st.sampled_from(NASTY) | st.text(max_size=5), max_size=80).map("".join),
    st.builds(lambda unit, n: (unit * n)[:10_000], st.sampled_from(NASTY + ["word "]), st.integers(2_000, 10_000)),
)

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _base_params(spec, prompt: str, negative: str, seed: int) -> dict:
    params = {"prompt": prompt, "negative": negative, "seed": seed}
    for name, p in spec.params.items():
        if p.required and name not in params:
            params[name] = spec.default(name)
    return params


@FUZZ
@given(name=st.sampled_from(TEXT_WORKFLOWS), prompt=prompt_text, negative=prompt_text,
       seed=st.integers(0, MAX_SEED), prefix=st.text(max_size=40),
       features=st.sets(st.sampled_from(["upscale", "controlnet", "ipadapter", "facedetailer"])))
def test_any_text_lands_exactly_and_round_trips(name, prompt, negative, seed, prefix, features):
    spec = LIBRARY.get(name)
    params = _base_params(spec, prompt, negative, seed) | {"filename_prefix": prefix}
    feats = {f: {"image": "x.png", "model": "m.safetensors"} if f == "controlnet" else
             {"image": "x.png"} if f == "ipadapter" else {} for f in features if f in spec.features}
    graph = build_graph(spec, params, features=feats)

    text = json.dumps(graph)
    assert json.loads(text) == graph
    assert json.loads(json.dumps(graph, ensure_ascii=False)) == graph
    p = spec.params["prompt"]
    assert graph[p.node]["inputs"][p.input] == prompt
    if "negative" in spec.params:
        n = spec.params["negative"]
        assert graph[n.node]["inputs"][n.input] == negative
    s = spec.params["seed"]
    assert graph[s.node]["inputs"][s.input] == seed and type(graph[s.node]["inputs"][s.input]) is int
    f = spec.params["filename_prefix"]
    assert graph[f.node]["inputs"][f.input] == prefix
    # nothing else changed: the same build with plain text differs only at those inputs
    plain = build_graph(spec, params | {"prompt": "a", "negative": "b", "filename_prefix": "c"}, features=feats)
    text_inputs = {(p.node, p.input), (f.node, f.input)}
    if "negative" in spec.params:
        text_inputs.add((spec.params["negative"].node, spec.params["negative"].input))
    assert plain.keys() == graph.keys()
    for node_id, node in graph.items():
        for inp, value in node["inputs"].items():
            if (node_id, inp) not in text_inputs:
                assert value == plain[node_id]["inputs"][inp], (node_id, inp)


@pytest.mark.parametrize("name", TEXT_WORKFLOWS)
def test_ten_thousand_characters_of_everything(name):
    spec = LIBRARY.get(name)
    prompt = ("".join(NASTY) * 400)[:10_000]
    assert len(prompt) == 10_000
    graph = build_graph(spec, _base_params(spec, prompt, prompt[::-1], MAX_SEED))
    again = json.loads(json.dumps(graph))
    p = spec.params["prompt"]
    assert again[p.node]["inputs"][p.input] == prompt
    assert again == graph
