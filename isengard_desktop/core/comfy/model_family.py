"""Which model family a file a ComfyUI server lists belongs to. Qt-free.

ComfyUI's ``/object_info`` gives file names only (``CheckpointLoaderSimple.ckpt_name``,
``UNETLoader.unet_name``); the family comes from what the app's model library knows about a
file of that name (it reads the headers, core/models.py) and otherwise from the name and its
sub-folder (``sd_xl_base_1.0``, ``juggernautXL``, ``sdxl/…``, ``flux1-schnell``, ``Chroma1-HD``,
``v1-5-pruned-emaonly`` …). A name that says nothing is :data:`UNKNOWN` — never taken for the
family being asked about.

Used by :func:`core.comfy.graph_check.workflow_missing` (``comfy-check`` and the routing),
the Generate tab's model list (:func:`family_choices`) and ``isengard generate``
(:func:`choose_model`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Final

UNKNOWN: Final = "unknown"
FAMILY_LABELS: Final = {"sd15": "SD 1.5", "sdxl": "SDXL", "flux-dev": "Flux dev",
                        "flux-schnell": "Flux schnell", "chroma": "Chroma", UNKNOWN: "unknown family"}
# (family, pattern on the lower-cased name with its sub-folders), first match wins.
_RULES: Final[tuple[tuple[str, re.Pattern[str]], ...]] = (
    ("chroma", re.compile(r"chroma")),
    ("flux-schnell", re.compile(r"flux.*schnell|schnell")),
    ("flux-dev", re.compile(r"flux")),
    ("sdxl", re.compile(r"sd_?xl|(?<![a-z0-9])xl|xl(?![a-z])|pony|illustrious|noobai|"
                        r"animagine|playground")),
    ("sd15", re.compile(r"sd[-_ ]?1[-_.]?5|v1[-_.]5|(?<![0-9.])1\.5(?![0-9])|dreamshaper_[5-8]|"
                        r"realisticvision|deliberate|anything-?v[345]|cyberrealistic_v")),
)


def _base(name: str) -> str:
    return name.replace("\\", "/").rsplit("/", 1)[-1]


def classify_model(name: str, known: Mapping[str, str | None] | None = None) -> str:
    """The family of ``name`` (``sd15``, ``sdxl``, ``flux-dev``, ``flux-schnell``, ``chroma``) or
    :data:`UNKNOWN`. ``known``: file name -> family from the model library (wins)."""
    if known:
        for key in (name, _base(name)):
            family = known.get(key)
            if family:
                return family
    lowered = name.lower()
    for family, pattern in _RULES:
        if pattern.search(lowered):
            return family
    return UNKNOWN


def label(family: str) -> str:
    return FAMILY_LABELS.get(family, family)


def family_choices(names: Iterable[str], family: str,
                   known: Mapping[str, str | None] | None = None) -> list[str]:
    """``names`` of ``family`` first, then those of unknown family (files of another family
    are left out), each group in the given order."""
    names = list(names)
    kinds = {n: classify_model(n, known) for n in names}
    return ([n for n in names if kinds[n] == family]
            + [n for n in names if kinds[n] == UNKNOWN])


def describe(names: Iterable[str], known: Mapping[str, str | None] | None = None,
             limit: int = 4) -> str:
    """``a.safetensors (SD 1.5), b.safetensors (unknown family)`` (at most ``limit``)."""
    names = list(names)
    text = ", ".join(f"{n} ({label(classify_model(n, known))})" for n in names[:limit])
    return text + (f" and {len(names) - limit} more" if len(names) > limit else "")


def choose_model(names: Iterable[str], family: str, wanted: str,
                 known: Mapping[str, str | None] | None = None) -> tuple[str, str]:
    """The model for a ``family`` workflow: ``(name, note)``. ``wanted`` (a name the server
    lists, or "") must not be of another known family; without it, the first file of the
    family, else the first of unknown family (the note says so). ValueError says why none."""
    names = list(names)
    if wanted:
        kind = classify_model(wanted, known)
        if kind not in (family, UNKNOWN):
            raise ValueError(f"{wanted} looks like an {label(kind)} model; the workflow needs "
                             f"{label(family)}. Pass a {label(family)} model with --model.")
        return wanted, ""
    exact = [n for n in names if classify_model(n, known) == family]
    if exact:
        return exact[0], ""
    unknown = [n for n in names if classify_model(n, known) == UNKNOWN]
    if unknown:
        return unknown[0], (f"{unknown[0]}: its family is unknown; it is used as "
                            f"{label(family)}")
    found = f" (the server lists {describe(names, known)})" if names else ""
    raise ValueError(f"no {label(family)} model on the server{found}")
