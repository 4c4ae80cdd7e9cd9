"""Which ComfyUI server runs a job (Qt-free, pure functions).

A job may go to a server that is healthy and lists every model the job's graph loads
(checkpoint / diffusion model / text encoders / VAE / LoRA / upscaler / ControlNet, read from
the loader nodes' choice lists in that server's ``/object_info``). Among those, the one that
ran the same main model last comes first (no model load), then the least busy (our jobs in
flight there + its queue length), then the order the servers were configured in. Which of
them a job may use by tier, and how a batch is spread, is decided on top of this ranking
(:mod:`.tiers`, ``services/generation/batch.py``); a picture whose server died mid-run goes
to another server with that one excluded for the job. A LoRA job never goes to a
server that does not list the LoRA. When no server can take a job, :class:`NoServerError`
says, server by server, what is missing and how to fix it.

Names are matched as the server lists them: exactly, then with ``\\`` read as ``/`` (Windows
servers), then by file name alone when exactly one listed entry has it (a LoRA copied into
``models/loras/isengard/`` is still found; of several, the one in ``isengard/``).
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "FOLDER_ALIASES",
    "FOLDER_LABELS",
    "LOADER_INPUTS",
    "MAIN_MODEL_FOLDERS",
    "ModelNeed",
    "NoServerError",
    "Route",
    "ServerView",
    "canonical_folder",
    "choose_server",
    "combo_choices",
    "lora_visibility",
    "main_model",
    "models_from_object_info",
    "needs_from_graph",
    "rank_servers",
    "resolve_name",
]

# loader class -> ((input, model folder), ...)
LOADER_INPUTS: dict[str, tuple[tuple[str, str], ...]] = {
    "CheckpointLoaderSimple": (("ckpt_name", "checkpoints"),),
    "CheckpointLoader": (("ckpt_name", "checkpoints"),),
    "ImageOnlyCheckpointLoader": (("ckpt_name", "checkpoints"),),
    "UNETLoader": (("unet_name", "diffusion_models"),),
    "UnetLoaderGGUF": (("unet_name", "unet_gguf"),),
    "CLIPLoader": (("clip_name", "text_encoders"),),
    "DualCLIPLoader": (("clip_name1", "text_encoders"), ("clip_name2", "text_encoders")),
    "TripleCLIPLoader": (("clip_name1", "text_encoders"), ("clip_name2", "text_encoders"),
                         ("clip_name3", "text_encoders")),
    "VAELoader": (("vae_name", "vae"),),
    "LoraLoader": (("lora_name", "loras"),),
    "LoraLoaderModelOnly": (("lora_name", "loras"),),
    "UpscaleModelLoader": (("model_name", "upscale_models"),),
    "ControlNetLoader": (("control_net_name", "controlnet"),),
    "DiffControlNetLoader": (("control_net_name", "controlnet"),),
    "CLIPVisionLoader": (("clip_name", "clip_vision"),),
    "IPAdapterModelLoader": (("ipadapter_file", "ipadapter"),),
    "UltralyticsDetectorProvider": (("model_name", "ultralytics"),),
}
MAIN_MODEL_FOLDERS = ("checkpoints", "diffusion_models", "unet_gguf")
FOLDER_LABELS = {
    "checkpoints": "checkpoint",
    "diffusion_models": "diffusion model",
    "unet_gguf": "GGUF model",
    "text_encoders": "text encoder",
    "vae": "VAE",
    "loras": "LoRA",
    "upscale_models": "upscale model",
    "controlnet": "ControlNet model",
    "clip_vision": "CLIP vision model",
    "ipadapter": "IP-Adapter model",
    "ultralytics": "detection model",
}
# workflow manifest folder names -> the names used here
FOLDER_ALIASES = {"unet": "diffusion_models", "clip": "text_encoders",
                  "ultralytics_bbox": "ultralytics", "controlnets": "controlnet"}


def canonical_folder(folder: str) -> str:
    """The routing name of a model folder ("unet" -> "diffusion_models")."""
    return FOLDER_ALIASES.get(folder, folder)


# ComfyUI's folder names on disk (models/<folder>); "unet" and "clip" are older aliases
_DISK_FOLDER = {"diffusion_models": "diffusion_models (or unet)",
                "text_encoders": "text_encoders (or clip)", "unet_gguf": "unet"}


@dataclass(frozen=True)
class ModelNeed:
    """A model file the graph loads: ``folder`` as in :data:`LOADER_INPUTS`."""

    folder: str
    name: str
    node_id: str = ""
    class_type: str = ""
    input_name: str = ""

    @property
    def kind(self) -> str:
        return FOLDER_LABELS.get(self.folder, self.folder)


@dataclass(frozen=True)
class ServerView:
    """What the router knows about one server (a snapshot the service builds)."""

    key: str
    label: str
    kind: str = "remote"              # "managed" | "remote"
    healthy: bool = False
    state: str = "offline"
    message: str = ""                 # why it is not healthy
    models: Mapping[str, frozenset[str]] | None = None   # None: object_info not known yet
    loaded_model: str = ""            # the main model of the last job it ran
    in_flight: int = 0                # our jobs running or queued there
    queue_length: int = 0             # its own queue (all clients)

    @property
    def load(self) -> int:
        return self.in_flight + self.queue_length


@dataclass(frozen=True)
class Route:
    """A server that can run the job and the names to put in the graph there."""

    server: str                                   # ServerView.key
    names: Mapping[tuple[str, str], str] = field(default_factory=dict, hash=False)
    # (folder, wanted name) -> name as that server lists it

    def name_for(self, folder: str, wanted: str) -> str:
        return self.names.get((folder, wanted), wanted)


class NoServerError(Exception):
    """No server can take the job; ``str(e)`` says what is missing where and what to do."""

    def __init__(self, message: str, reasons: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.reasons = dict(reasons or {})   # server key -> why not

    def __str__(self) -> str:
        return self.message


# --------------------------------------------------------------------------- object_info

def combo_choices(object_info: Mapping[str, Any], class_type: str, input_name: str) -> list[str]:
    """The choices of a combo input (``[[...], {...}]`` or ``["COMBO", {"options": [...]}]``)."""
    node = object_info.get(class_type)
    if not isinstance(node, Mapping):
        return []
    inputs = node.get("input") or {}
    for section in ("required", "optional"):
        spec = (inputs.get(section) or {}).get(input_name)
        if not isinstance(spec, (list, tuple)) or not spec:
            continue
        first = spec[0]
        if isinstance(first, (list, tuple)):
            return [str(v) for v in first]
        if first == "COMBO" and len(spec) > 1 and isinstance(spec[1], Mapping):
            options = spec[1].get("options")
            if isinstance(options, (list, tuple)):
                return [str(v) for v in options]
    return []


def models_from_object_info(object_info: Mapping[str, Any]) -> dict[str, frozenset[str]]:
    """Model names per folder, from the loader nodes' choice lists."""
    out: dict[str, set[str]] = {}
    for class_type, pairs in LOADER_INPUTS.items():
        for input_name, folder in pairs:
            names = combo_choices(object_info, class_type, input_name)
            out.setdefault(folder, set()).update(names)
    return {folder: frozenset(names) for folder, names in out.items()}


def needs_from_graph(graph: Mapping[str, Any]) -> tuple[ModelNeed, ...]:
    """Every model file an API-format graph loads (literal values of loader inputs)."""
    needs: list[ModelNeed] = []
    seen: set[tuple[str, str]] = set()
    for node_id, node in graph.items():
        if not isinstance(node, Mapping):
            continue
        class_type = str(node.get("class_type", ""))
        inputs = node.get("inputs") or {}
        for input_name, folder in LOADER_INPUTS.get(class_type, ()):
            value = inputs.get(input_name)
            if isinstance(value, str) and value and (folder, value) not in seen:
                seen.add((folder, value))
                needs.append(ModelNeed(folder, value, str(node_id), class_type, input_name))
    return tuple(needs)


def main_model(needs: Iterable[ModelNeed]) -> str:
    """The job's main model (checkpoint or diffusion model), "" if none."""
    for need in needs:
        if need.folder in MAIN_MODEL_FOLDERS:
            return need.name
    return ""


def _norm(name: str) -> str:
    return name.replace("\\", "/")


def resolve_name(available: Iterable[str], wanted: str) -> str | None:
    """``wanted`` as the server lists it, or None (see the module docstring)."""
    listed = list(available)
    if wanted in listed:
        return wanted
    want = _norm(wanted)
    for name in listed:
        if _norm(name) == want:
            return name
    base = posixpath.basename(want)
    same = [n for n in listed if posixpath.basename(_norm(n)) == base]
    if len(same) == 1:
        return same[0]
    ours = [n for n in same if _norm(n) == f"isengard/{base}"]
    if len(ours) == 1:          # pushed by Isengard's upload node: models/loras/isengard/
        return ours[0]
    if not same:
        folded = [n for n in listed if posixpath.basename(_norm(n)).casefold() == base.casefold()]
        if len(folded) == 1:
            return folded[0]
    return None


# --------------------------------------------------------------------------- routing

def _fix_hint(server: ServerView, need: ModelNeed, lora_folder: str) -> str:
    base = posixpath.basename(_norm(need.name))
    if need.folder == "loras":
        if server.kind == "managed":
            where = f" ({lora_folder})" if lora_folder else ""
            return (f"the managed ComfyUI lists Isengard's LoRA folder{where}; check that "
                    f"{base} is there, then refresh the servers")
        share = f" (or share {lora_folder} with that machine)" if lora_folder else \
            " (or share Isengard's LoRA folder with that machine)"
        return (f"copy {base} into that server's models/loras folder{share}, "
                "then refresh the servers — or let Isengard upload it: install the upload "
                "node there and save its token (Settings → ComfyUI → Upload token)")
    folder = _DISK_FOLDER.get(need.folder, need.folder)
    return (f"put {base} into models/{folder} on that server, or choose a model it lists")


def _missing(server: ServerView, needs: Sequence[ModelNeed],
             lora_folder: str) -> tuple[dict[tuple[str, str], str], list[str]]:
    names: dict[tuple[str, str], str] = {}
    problems: list[str] = []
    models = server.models or {}
    for need in needs:
        found = resolve_name(models.get(need.folder, ()), need.name)
        if found is None:
            problems.append(f"{need.kind} '{need.name}' is missing — "
                            f"{_fix_hint(server, need, lora_folder)}")
        else:
            names[(need.folder, need.name)] = found
    return names, problems


def rank_servers(servers: Sequence[ServerView], needs: Sequence[ModelNeed], *,
                 model: str = "", exclude: Iterable[str] = (),
                 lora_folder: str = "", blocked: Mapping[str, str] | None = None
                 ) -> tuple[list[Route], dict[str, str]]:
    """Eligible servers, best first, and for every other server why it cannot take the job.
    ``blocked``: servers ruled out for a known reason (key -> why), e.g. a LoRA of the same
    name that is not ours."""
    excluded = set(exclude)
    blocked = blocked or {}
    model = model or main_model(needs)
    ranked: list[tuple[tuple[int, int, int], Route]] = []
    reasons: dict[str, str] = {}
    for index, server in enumerate(servers):
        if server.key in excluded:
            reasons[server.key] = "it already failed this job"
            continue
        if server.key in blocked:
            reasons[server.key] = blocked[server.key]
            continue
        if not server.healthy:
            why = server.message or server.state
            reasons[server.key] = f"it is {server.state}" + (
                f" ({why})" if why and why != server.state else "")
            continue
        if server.models is None:
            reasons[server.key] = "its model lists have not been read yet"
            continue
        names, problems = _missing(server, needs, lora_folder)
        if problems:
            reasons[server.key] = "; ".join(problems)
            continue
        listed = {names.get((n.folder, n.name), n.name) for n in needs if n.name == model}
        warm = 0 if model and server.loaded_model in listed | {model} else 1
        ranked.append(((warm, server.load, index), Route(server.key, names)))
    ranked.sort(key=lambda pair: pair[0])
    return [route for _, route in ranked], reasons


def choose_server(servers: Sequence[ServerView], needs: Sequence[ModelNeed], *,
                  model: str = "", exclude: Iterable[str] = (),
                  lora_folder: str = "", blocked: Mapping[str, str] | None = None) -> Route:
    """The best server for the job; :class:`NoServerError` naming every gap otherwise."""
    routes, reasons = rank_servers(servers, needs, model=model, exclude=exclude,
                                   lora_folder=lora_folder, blocked=blocked)
    if routes:
        return routes[0]
    raise NoServerError(_no_server_message(servers, reasons), reasons)


def _no_server_message(servers: Sequence[ServerView], reasons: Mapping[str, str]) -> str:
    if not servers:
        return ("No ComfyUI server is set up. In Settings → ComfyUI, choose your ComfyUI "
                "folder and its Python (Isengard starts it for you), or add the URL of a "
                "ComfyUI server on your network.")
    if len(servers) == 1:
        server = servers[0]
        return f"ComfyUI server {server.label} cannot run this job: {reasons[server.key]}."
    lines = [f"• {s.label}: {reasons[s.key]}." for s in servers if s.key in reasons]
    return "No ComfyUI server can run this job:\n" + "\n".join(lines)


def lora_visibility(servers: Sequence[ServerView], lora_path: str, *,
                    lora_folder: str = "") -> list[tuple[str, bool, str]]:
    """Per server: (label, visible?, the name it lists it under — or how to make it visible)."""
    need = ModelNeed("loras", posixpath.basename(_norm(str(lora_path))))
    out: list[tuple[str, bool, str]] = []
    for server in servers:
        if server.models is None:
            state = server.message or server.state
            out.append((server.label, False,
                        f"unknown: the server is {server.state}"
                        + (f" ({state})" if state != server.state else "")
                        + "; its LoRA list is read when it is reachable"))
            continue
        found = resolve_name(server.models.get("loras", ()), need.name)
        if found is not None:
            out.append((server.label, True, found))
        else:
            out.append((server.label, False, _fix_hint(server, need, lora_folder)))
    return out
