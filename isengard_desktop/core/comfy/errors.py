"""Errors of the ComfyUI client. ``str(error)`` is always a complete sentence for the user.

Every error carries ``server`` (the base URL). Validation errors are built from the HTTP 400
body of ``POST /prompt`` by :func:`validation_error_from_body`; each problem names the node id,
its class, the input and the bad value (see shared/fixtures/comfyui/errors/).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class ComfyError(Exception):
    """Base class. ``server`` is the server's base URL; ``str(e)`` is a user-facing sentence."""

    def __init__(self, message: str, *, server: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.server = server

    def __str__(self) -> str:
        return self.message


class ComfyConnectionError(ComfyError):
    """Unreachable, refused, timed out, or the socket/server died mid-run.

    ``reason`` is the short cause ("connection refused", "timed out"), "" when unknown."""

    def __init__(self, message: str, *, server: str = "", reason: str = "") -> None:
        super().__init__(message, server=server)
        self.reason = reason


class ComfyHTTPError(ComfyError):
    """An unexpected HTTP status (500 etc.)."""

    def __init__(self, message: str, *, server: str = "", status: int = 0, body: str = "") -> None:
        super().__init__(message, server=server)
        self.status = status
        self.body = body[:2000]


@dataclass(frozen=True)
class NodeProblem:
    node_id: str
    class_type: str
    input_name: str
    received_value: object
    kind: str       # ComfyUI's error type: value_bigger_than_max, value_not_in_list, ...
    message: str    # one user-facing sentence: "Node 5 (EmptyLatentImage): input 'width' = ..."


class ComfyValidationError(ComfyError):
    """ComfyUI refused the workflow (HTTP 400, or 200 with ``node_errors``)."""

    def __init__(self, message: str, *, server: str = "", problems: tuple[NodeProblem, ...] = (),
                 error_type: str = "") -> None:
        super().__init__(message, server=server)
        self.problems = tuple(problems)
        self.error_type = error_type


class ComfyExecutionError(ComfyError):
    """A node raised while the prompt ran (``execution_error`` on the socket or in history)."""

    def __init__(self, message: str, *, server: str = "", node_id: str = "", node_type: str = "",
                 exception_type: str = "", exception_message: str = "") -> None:
        super().__init__(message, server=server)
        self.node_id = node_id
        self.node_type = node_type
        self.exception_type = exception_type
        self.exception_message = exception_message


class ComfyInterrupted(ComfyError):
    """The prompt was interrupted while running, or deleted while queued."""

    def __init__(self, message: str, *, server: str = "", node_id: str | None = None) -> None:
        super().__init__(message, server=server)
        self.node_id = node_id


# --------------------------------------------------------------------------- message building

_NO_VALUE = object()


def _value(value: object) -> str:
    if isinstance(value, str):
        text = value if len(value) <= 80 else value[:77] + "..."
        return repr(text)
    if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
        return f"a link to node {value[0]} output {value[1]}"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _sentence(text: str) -> str:
    text = " ".join(str(text).split())
    if not text:
        return text
    return text if text[-1] in ".!?" else text + "."


def _choices(options: list) -> str:
    if not options:
        return "the server lists no choices for it (no such files on the server?)"
    shown = ", ".join(repr(str(o)) for o in options[:8])
    more = f" and {len(options) - 8} more" if len(options) > 8 else ""
    return f"the server offers {shown}{more}"


def node_label(node_id: str, class_type: str) -> str:
    return f"Node {node_id} ({class_type})" if class_type else f"Node {node_id}"


def problem_sentence(node_id: str, class_type: str, error: Mapping[str, Any]) -> NodeProblem:
    """Turn one entry of ``node_errors[id]["errors"]`` into a :class:`NodeProblem`."""
    kind = str(error.get("type", "") or "")
    server_message = str(error.get("message", "") or "")
    details = str(error.get("details", "") or "")
    extra = error.get("extra_info") or {}
    if not isinstance(extra, Mapping):
        extra = {}
    input_name = str(extra.get("input_name", "") or "")
    if not input_name and kind in ("required_input_missing", "value_bigger_than_max",
                                   "value_smaller_than_min") and details:
        input_name = details.split(",")[0].strip()
    if not input_name and kind == "value_not_in_list" and ":" in details:
        input_name = details.split(":", 1)[0].strip()
    received = extra.get("received_value", _NO_VALUE)
    config = extra.get("input_config")
    opts: Mapping[str, Any] = {}
    type_name = ""
    if isinstance(config, list) and config:
        if isinstance(config[0], str):
            type_name = config[0]
        if len(config) > 1 and isinstance(config[1], Mapping):
            opts = config[1]
    head = node_label(node_id, class_type)
    what = f"input '{input_name}'" if input_name else "an input"
    shown = f"{what} = {_value(received)}" if received is not _NO_VALUE else what

    if kind == "value_bigger_than_max":
        limit = opts.get("max")
        tail = f"is above the maximum {limit}" if limit is not None else f"is too large ({server_message})"
        text = f"{head}: {shown} {tail}."
    elif kind == "value_smaller_than_min":
        limit = opts.get("min")
        tail = f"is below the minimum {limit}" if limit is not None else f"is too small ({server_message})"
        text = f"{head}: {shown} {tail}."
    elif kind == "invalid_input_type":
        kind_name = type_name or "the expected"
        text = f"{head}: {shown} is not a valid {kind_name} value."
    elif kind == "required_input_missing":
        text = f"{head}: required {what} is missing."
    elif kind == "value_not_in_list":
        options = config[0] if isinstance(config, list) and config and isinstance(config[0], list) else []
        if not options and isinstance(opts.get("options"), list):   # COMBO with {"options": [...]}
            options = opts["options"]
        text = f"{head}: {shown} is not available on this server; {_choices(options)}."
    elif kind == "return_type_mismatch":
        linked = extra.get("linked_node")
        got = extra.get("received_type", "?")
        want = type_name or "another type"
        src = (f"node {linked[0]} output {linked[1]}" if isinstance(linked, list) and len(linked) == 2
               else "the linked node")
        text = f"{head}: {what} is linked to {src}, which gives {got} but {want} is needed."
    elif kind == "custom_validation_failed":
        reason = details.split(" - ", 1)[1] if " - " in details else (details or server_message)
        text = f"{head}: {what} is not valid: {_sentence(reason)}"
    elif kind == "exception_during_validation" and extra.get("exception_type") == "KeyError":
        missing = details.strip("'\"")
        text = (f"{head}: an input links to node {missing}, which is not in the workflow."
                if missing else f"{head}: an input links to a node that is not in the workflow.")
    elif kind == "exception_during_inner_validation" and extra.get("exception_type") == "IndexError":
        text = f"{head}: {what} links to an output index that the source node does not have."
    else:
        reason = server_message
        if details and details not in reason:
            reason = f"{reason}: {details}" if reason else details
        text = f"{head}: {_sentence(reason or kind or 'failed validation')}"
        if input_name and f"'{input_name}'" not in text and input_name not in text:
            text = f"{head}: {what}: {_sentence(reason or kind)}"
    return NodeProblem(node_id=str(node_id), class_type=class_type, input_name=input_name,
                       received_value=None if received is _NO_VALUE else received,
                       kind=kind, message=_sentence(text))


def problems_from_node_errors(node_errors: Mapping[str, Any],
                              graph: Mapping[str, Any] | None = None) -> tuple[NodeProblem, ...]:
    problems: list[NodeProblem] = []
    for node_id, entry in (node_errors or {}).items():
        if not isinstance(entry, Mapping):
            continue
        class_type = str(entry.get("class_type", "") or "")
        if not class_type and graph and isinstance(graph.get(str(node_id)), Mapping):
            class_type = str(graph[str(node_id)].get("class_type", "") or "")
        errors = entry.get("errors") or []
        if not errors:
            problems.append(NodeProblem(str(node_id), class_type, "", None, "unknown",
                                        f"{node_label(str(node_id), class_type)} failed validation."))
        for error in errors:
            if isinstance(error, Mapping):
                problems.append(problem_sentence(str(node_id), class_type, error))
    return tuple(problems)


def validation_error_from_body(server: str, body: Any,
                               graph: Mapping[str, Any] | None = None) -> ComfyValidationError:
    """Build the error for a ``POST /prompt`` answer that refused (part of) the workflow."""
    body = body if isinstance(body, Mapping) else {}
    error = body.get("error") if isinstance(body.get("error"), Mapping) else {}
    error_type = str(error.get("type", "") or "") if error else ""
    node_errors = body.get("node_errors") if isinstance(body.get("node_errors"), Mapping) else {}
    problems = problems_from_node_errors(node_errors, graph)
    where = f"ComfyUI at {server}" if server else "ComfyUI"
    if problems:
        lead = f"{where} refused the workflow"
        if error_type in ("", "prompt_outputs_failed_validation"):
            lead += ":" if len(problems) == 1 else f" ({len(problems)} problems):"
        else:
            lead += f" ({error_type}):"
        text = lead + " " + " ".join(p.message for p in problems)
    else:
        message = str(error.get("message", "") or "") if error else ""
        details = str(error.get("details", "") or "") if error else ""
        if error_type == "prompt_no_outputs":
            text = (f"{where} refused the workflow: it has no output node "
                    "(add a SaveImage or PreviewImage node).")
        elif error_type == "no_prompt":
            text = f"{where} refused the request: {_sentence(message or 'no prompt was sent')}"
        else:
            reason = _sentence(message or error_type or "the workflow is invalid")
            if details and details != message:
                reason = f"{reason} ({details})"
            text = f"{where} refused the workflow: {_sentence(reason)}"
        if isinstance(body, Mapping) and not error and not node_errors:
            text = f"{where} refused the workflow without saying why."
    return ComfyValidationError(_sentence(text), server=server, problems=problems,
                                error_type=error_type)


__all__ = [
    "ComfyConnectionError",
    "ComfyError",
    "ComfyExecutionError",
    "ComfyHTTPError",
    "ComfyInterrupted",
    "ComfyValidationError",
    "NodeProblem",
    "node_label",
    "problem_sentence",
    "problems_from_node_errors",
    "validation_error_from_body",
]
