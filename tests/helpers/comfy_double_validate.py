"""Prompt validation for the ComfyUI test double: the answers of POST /prompt.

Reproduces the error shapes recorded in tests/fixtures/comfyui/errors/ (types, messages, details,
extra_info, dependent_outputs, the order of node_errors), written from those recordings.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from tests.helpers.comfy_double_nodes import (
    FIXTURES,
    declared_inputs,
    full_type_name,
    input_spec,
)

Error = dict[str, Any]


@cache
def recorded_traceback(kind: str) -> tuple[str, ...]:
    """Traceback lines as the real server printed them (taken from the recordings)."""
    files = {
        "validation": ("errors/validation_link_to_missing_node.json", "3"),
        "inner": ("errors/validation_link_bad_output_index.json", "2"),
    }
    try:
        if kind == "load_image":
            data = json.loads((FIXTURES / "run_05_runtime_execution_error.json").read_text())
            for m in data["ws_messages"]:
                if m.get("type") == "execution_error":
                    return tuple(m["msg"]["data"]["traceback"])
        path, node = files[kind]
        body = json.loads((FIXTURES / path).read_text())["body"]
        return tuple(body["node_errors"][node]["errors"][0]["extra_info"]["traceback"])
    except (OSError, KeyError, ValueError, IndexError):
        pass
    return ('  File "/srv/ComfyUI/execution.py", line 1, in validate\n',)


def _err(type_: str, message: str, details: str = "", extra_info: dict | None = None) -> Error:
    return {"type": type_, "message": message, "details": details, "extra_info": extra_info or {}}


def types_match(received: Any, expected: Any) -> bool:
    if isinstance(expected, list):
        return received in ("COMBO", "*")
    if received == expected or received == "*" or expected == "*":
        return True
    if isinstance(received, str) and isinstance(expected, str):
        return bool(set(received.split(",")) & set(expected.split(",")))
    return False


class PromptValidator:
    """One validation pass over one prompt (the prompt's constant inputs get converted in place)."""

    def __init__(self, prompt: dict[str, Any], info: dict[str, Any],
                 image_exists: Callable[[str], bool]):
        self.prompt = prompt
        self.info = info
        self.image_exists = image_exists
        self.validated: dict[str, tuple[bool, list[Error], str]] = {}

    # -- one node ---------------------------------------------------------------------------
    def validate_node(self, uid: str) -> tuple[bool, list[Error], str]:
        if uid in self.validated:
            return self.validated[uid]
        node = self.prompt[uid]
        inputs = node["inputs"]
        class_type = node["class_type"]
        entry = self.info[class_type]
        custom = ["image"] if class_type in ("LoadImage", "LoadImageMask") else []
        errors: list[Error] = []
        valid = True
        for x in declared_inputs(entry):
            spec = input_spec(entry, x)
            assert spec is not None
            type_, category, extra = spec
            config = [type_, extra]
            if x not in inputs:
                if category == "required":
                    errors.append(_err("required_input_missing", "Required input is missing", x,
                                       {"input_name": x}))
                continue
            val = inputs[x]
            if isinstance(val, list):
                if len(val) != 2:
                    errors.append(_err(
                        "bad_linked_input",
                        "Bad linked input, must be a length-2 list of [node_id, slot_index]", x,
                        {"input_name": x, "input_config": config, "received_value": val}))
                    continue
                o_id = val[0]
                o_class = self.prompt[o_id]["class_type"]
                received = tuple(self.info[o_class]["output"])[val[1]]
                if not types_match(received, type_):
                    errors.append(_err(
                        "return_type_mismatch", "Return type mismatch between linked nodes",
                        f"{x}, received_type({received}) mismatch input_type({type_})",
                        {"input_name": x, "input_config": config, "received_type": received,
                         "linked_node": val}))
                    continue
                try:
                    result = self.validate_node(o_id)
                    if result[0] is False:
                        valid = False
                        continue
                except Exception as ex:  # noqa: BLE001 - reported, like the real server
                    valid = False
                    reasons = [_err(
                        "exception_during_inner_validation", "Exception when validating inner node",
                        str(ex),
                        {"input_name": x, "input_config": config, "exception_message": str(ex),
                         "exception_type": full_type_name(ex),
                         "traceback": list(recorded_traceback("inner")), "linked_node": val})]
                    self.validated[o_id] = (False, reasons, o_id)
                    continue
            else:
                try:
                    if isinstance(val, dict) and "__value__" in val:
                        val = val["__value__"]
                        inputs[x] = val
                    if type_ == "INT":
                        val = int(val)
                        inputs[x] = val
                    elif type_ == "FLOAT":
                        val = float(val)
                        inputs[x] = val
                    elif type_ == "STRING":
                        val = str(val)
                        inputs[x] = val
                    elif type_ == "BOOLEAN":
                        val = bool(val)
                        inputs[x] = val
                except Exception as ex:  # noqa: BLE001
                    errors.append(_err(
                        "invalid_input_type", f"Failed to convert an input value to a {type_} value",
                        f"{x}, {val}, {ex}",
                        {"input_name": x, "input_config": config, "received_value": val,
                         "exception_message": str(ex)}))
                    continue
                if x in custom:
                    continue
                try:
                    if "min" in extra and val < extra["min"]:
                        errors.append(_err(
                            "value_smaller_than_min",
                            "Value {} smaller than min of {}".format(val, extra["min"]), x,
                            {"input_name": x, "input_config": config, "received_value": val}))
                        continue
                    if "max" in extra and val > extra["max"]:
                        errors.append(_err(
                            "value_bigger_than_max",
                            "Value {} bigger than max of {}".format(val, extra["max"]), x,
                            {"input_name": x, "input_config": config, "received_value": val}))
                        continue
                except TypeError:
                    pass
                options = None
                if isinstance(type_, list):
                    options = type_
                elif type_ == "COMBO":
                    options = extra.get("options", [])
                if options is not None and val not in options:
                    if len(options) > 20:
                        list_info, input_config = f"(list of length {len(options)})", None
                    else:
                        list_info, input_config = str(options), config
                    errors.append(_err(
                        "value_not_in_list", "Value not in list", f"{x}: '{val}' not in {list_info}",
                        {"input_name": x, "input_config": input_config, "received_value": val}))
                    continue
        if custom:
            image = inputs.get("image")
            if not (isinstance(image, str) and self.image_exists(image)):
                errors.append(_err("custom_validation_failed", "Custom validation failed for node",
                                   f"image - Invalid image file: {image}", {"input_name": "image"}))
        ret = (False, errors, uid) if (errors or valid is not True) else (True, [], uid)
        self.validated[uid] = ret
        return ret

    # -- whole prompt -------------------------------------------------------------------------
    def run(self, partial_targets: list[str] | None = None
            ) -> tuple[bool, Error | None, list[str], dict[str, Any]]:
        prompt = self.prompt
        if isinstance(prompt, list) and not prompt:
            keys: list[str] = []
        elif isinstance(prompt, dict):
            keys = list(prompt)
        else:
            raise TypeError("prompt must be an object")
        outputs: list[str] = []
        for x in keys:
            node = prompt[x]
            if not isinstance(node, dict) or "class_type" not in node:
                return (False, _err("invalid_prompt",
                                    "Cannot execute because a node is missing the class_type property.",
                                    f"Node ID '#{x}'"), [], {})
            class_type = node["class_type"]
            if not isinstance(class_type, str) or class_type not in self.info:
                return (False, _err("invalid_prompt",
                                    f"Cannot execute because node {class_type} does not exist.",
                                    f"Node ID '#{x}'"), [], {})
            if self.info[class_type].get("output_node") and (
                    partial_targets is None or x in partial_targets):
                outputs.append(x)
        if not outputs:
            return (False, _err("prompt_no_outputs", "Prompt has no outputs"), [], {})

        good: list[str] = []
        failed: list[tuple[str, list[Error]]] = []
        node_errors: dict[str, Any] = {}
        for o in outputs:
            try:
                valid, reasons, _ = self.validate_node(o)
            except Exception as ex:  # noqa: BLE001
                valid = False
                reasons = [_err("exception_during_validation", "Exception when validating node",
                                str(ex), {"exception_type": full_type_name(ex),
                                          "traceback": list(recorded_traceback("validation"))})]
                self.validated[o] = (False, reasons, o)
            if valid is True:
                good.append(o)
                continue
            failed.append((o, reasons))
            for node_id, result in self.validated.items():
                if result[0] is not True and result[1]:
                    if node_id not in node_errors:
                        node_errors[node_id] = {"errors": result[1], "dependent_outputs": [],
                                                "class_type": prompt[node_id]["class_type"]}
                    node_errors[node_id]["dependent_outputs"].append(o)
        if not good:
            details = "\n".join(f"{e['message']}: {e['details']}" for _, errs in failed for e in errs)
            return (False, _err("prompt_outputs_failed_validation", "Prompt outputs failed validation",
                                details), [], node_errors)
        return True, None, good, node_errors


def validate_prompt(prompt: Any, info: dict[str, Any], image_exists: Callable[[str], bool],
                    partial_targets: list[str] | None = None
                    ) -> tuple[bool, Error | None, list[str], dict[str, Any]]:
    return PromptValidator(prompt, info, image_exists).run(partial_targets)


def image_exists_in(input_dir: Path, output_dir: Path, temp_dir: Path) -> Callable[[str], bool]:
    def check(name: str) -> bool:
        base = input_dir
        for tag, folder in ((" [input]", input_dir), (" [output]", output_dir),
                            (" [temp]", temp_dir)):
            if name.endswith(tag):
                name, base = name[: -len(tag)], folder
        if not name or name.startswith("/") or ".." in Path(name).parts:
            return False
        return (base / name).is_file()
    return check
