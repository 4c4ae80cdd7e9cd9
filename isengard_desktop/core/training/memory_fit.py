"""Will a training job fit this GPU? The memory model and the pre-flight verdict (Qt-free).

The coefficients live in ``resources/training/memory_model.toml`` (data, each number with its
source: a published parameter count, this project's code, a tool's documented VRAM tier, or an
honest "estimate"). :func:`predict` turns a job's settings into a peak VRAM/RAM estimate with
its parts; :func:`fit` compares it with a card and, when it does not fit, finds the smallest
settings change that does (gradient checkpointing on, batch 1, the base in 8-bit, more blocks
swapped for backends that can, then lower resolution buckets); :func:`tier_for` picks the
VRAM tier (8/12/16/24/48 GB) of a card.

Nothing here is measured on a GPU yet: the figures are checked only against the documented
tiers of the external trainers, so the verdict says "est.".
"""

from __future__ import annotations

import sys
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, is_dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from .oom import lower_resolution
from .presets import FLOW_FAMILIES
from .spec import FAMILIES

__all__ = ["Fix", "MEMORY_MODEL_FILE", "MemoryEstimate", "MemoryModel", "MemoryModelError",
           "TIERS", "fit", "load_memory_model", "memory_model_file", "predict", "tier_for"]

MEMORY_MODEL_FILE = (Path(__file__).resolve().parents[3] / "resources" / "training"
                     / "memory_model.toml")
TIERS = (8, 12, 16, 24, 48)
_TIER_SLACK_GB = 0.5          # a "12 GB" card may report 11.7 GiB
BLOCK_SWAP_STEP = 8
_QUANTIZE_PREFERENCE = ("int8", "float8")


class MemoryModelError(ValueError):
    """The memory model file is broken; the message names the file and the entry."""


def memory_model_file() -> Path:
    """The shipped model (source tree, or a PyInstaller bundle's ``resources/``)."""
    bundle = getattr(sys, "_MEIPASS", None)
    return (Path(bundle) / "resources" / "training" / "memory_model.toml" if bundle
            else MEMORY_MODEL_FILE)


@dataclass(frozen=True)
class MemoryModel:
    """The parsed TOML: ``common``, ``families`` (aliases resolved), ``backends``."""

    common: Mapping[str, Any]
    families: Mapping[str, Mapping[str, Any]]
    backends: Mapping[str, Mapping[str, Any]]
    path: str = ""

    def number(self, table: Mapping[str, Any], key: str, where: str) -> tuple[float, str]:
        """(value, source) of ``table[key]``; raises naming the file and the entry."""
        node: Any = table
        for part in key.split("."):
            if not isinstance(node, Mapping) or part not in node:
                raise MemoryModelError(f"{self.path}: {where}.{key} is missing")
            node = node[part]
        if not isinstance(node, Mapping) or "value" not in node:
            raise MemoryModelError(f"{self.path}: {where}.{key} must be "
                                   "{ value = ..., source = \"...\" }")
        value = node["value"]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise MemoryModelError(f"{self.path}: {where}.{key}.value must be a number "
                                   f"(got {value!r})")
        return float(value), str(node.get("source") or "estimate")

    def flag(self, table: Mapping[str, Any], key: str) -> bool:
        node = table.get(key)
        if isinstance(node, Mapping):
            node = node.get("value")
        return bool(node)

    def family(self, name: str) -> Mapping[str, Any]:
        if name not in self.families:
            raise ValueError(f"family: the memory model has no entry for {name!r} "
                             f"(known: {', '.join(sorted(self.families))})")
        return self.families[name]

    def backend(self, name: str) -> Mapping[str, Any]:
        """The backend's entry; an unknown backend is modelled like the built-in trainer."""
        return self.backends.get(name) or self.backends["builtin"]


def parse_memory_model(text: str, path: str = "memory_model.toml") -> MemoryModel:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise MemoryModelError(f"{path}: not valid TOML: {exc}") from exc
    if doc.get("schema") != 1:
        raise MemoryModelError(f"{path}: schema must be 1 (got {doc.get('schema')!r})")
    raw_families = doc.get("family")
    backends = doc.get("backend")
    if not isinstance(raw_families, dict) or not isinstance(backends, dict) \
            or "builtin" not in backends:
        raise MemoryModelError(f"{path}: needs [family.*] tables and a [backend.builtin] table")
    families: dict[str, Mapping[str, Any]] = {}
    for name, table in raw_families.items():
        alias = table.get("same_as")
        if alias is not None:
            if alias not in raw_families or "same_as" in raw_families[alias]:
                raise MemoryModelError(f"{path}: family.{name}.same_as names no family entry "
                                       f"(got {alias!r})")
            table = raw_families[alias]
        families[name] = table
    model = MemoryModel(common=doc.get("common") or {}, families=families, backends=backends,
                        path=path)
    for name in FAMILIES:        # every family the app trains must be modelled, fully
        table = model.family(name)
        for key in ("base_params_b", "text_encoder_params_b", "vae_params_b",
                    "lora_params_m_per_rank", "activations_gb_per_mp.checkpointing",
                    "activations_gb_per_mp.no_checkpointing"):
            model.number(table, key, f"family.{name}")
    return model


@lru_cache(maxsize=4)
def load_memory_model(path: str | None = None) -> MemoryModel:
    """The memory model (cached; a few KB of TOML read once)."""
    file = Path(path) if path else memory_model_file()
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise MemoryModelError(f"{file}: cannot be read: {exc}") from exc
    return parse_memory_model(text, str(file))


@dataclass(frozen=True)
class MemoryEstimate:
    """Predicted peak GPU memory and RAM (GiB), with the parts that make them up and where
    each number comes from (``sources``: part → source)."""

    vram_gb: float
    ram_gb: float
    parts: dict[str, float] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        """One line per part, largest first, with its source (for a tooltip)."""
        rows = sorted(self.parts.items(), key=lambda kv: -kv[1])
        return "\n".join(f"{name}: {gb:.1f} GB ({self.sources.get(name, 'estimate')})"
                         for name, gb in rows)


@dataclass(frozen=True)
class Fix:
    """The pre-flight verdict. ``fix``: the job-field changes that make it fit (None when it
    fits, or when nothing the backend offers is enough); ``fix_text`` says them in words."""

    fits: bool
    text: str
    fix: dict[str, Any] | None = None
    fix_text: str = ""
    estimate: MemoryEstimate | None = None
    fixed_estimate: MemoryEstimate | None = None


def _settings(job_settings: Any) -> dict[str, Any]:
    if is_dataclass(job_settings) and not isinstance(job_settings, type):
        return asdict(job_settings)
    return dict(job_settings)


def _backend_field(settings: Mapping[str, Any], key: str, default: Any) -> Any:
    """A backend option: top level, ``extra`` or ``extra["fields"]``."""
    if key in settings:
        return settings[key]
    extra = settings.get("extra") or {}
    if key in extra:
        return extra[key]
    fields = extra.get("fields") if isinstance(extra, Mapping) else None
    if isinstance(fields, Mapping) and fields.get(key) not in (None, ""):
        return fields[key]
    return default


def _vram_preset(settings: Mapping[str, Any], backend: str,
                 model: MemoryModel | None) -> Mapping[str, Any]:
    """What a backend's "GPU memory preset" field sets (kohya's ``vram``), or nothing."""
    table = model.backend(backend).get("vram_presets") if model is not None else None
    choice = _backend_field(settings, "vram", None)
    if not isinstance(table, Mapping) or choice in (None, ""):
        return {}
    entry = table.get(str(choice))
    return entry if isinstance(entry, Mapping) else {}


def _blocks_swapped(settings: Mapping[str, Any], backend: str,
                    model: MemoryModel | None) -> int:
    value = _backend_field(settings, "blocks_to_swap", None)
    if value in (None, ""):
        value = _vram_preset(settings, backend, model).get("blocks_to_swap", 0)
    return int(value or 0)


def _base_precision(settings: Mapping[str, Any], backend: str,
                    model: MemoryModel | None = None) -> str:
    if backend == "kohya":
        # kohya loads the base in fp8 for --fp8_base (its field, or its memory preset) and
        # whenever quantize_base asks for 8-bit (plugins/kohya/backend.py _swap_and_fp8)
        fp8 = _backend_field(settings, "fp8_base", None)
        if fp8 in (None, ""):
            fp8 = _vram_preset(settings, backend, model).get("fp8_base", False)
        quantized = str(settings.get("quantize_base") or "none") != "none"
        return "float8" if bool(fp8) or quantized else "none"
    return str(settings.get("quantize_base") or "none")


def predict(job_settings: Any, family: str, backend: str = "builtin", *,
            model: MemoryModel | None = None) -> MemoryEstimate:
    """Peak VRAM and RAM of training ``job_settings`` (a TrainingJob, or a dict of its
    fields) for ``family`` with ``backend``."""
    m = model or load_memory_model()
    s = _settings(job_settings)
    fam = m.family(family)
    be = m.backend(backend)
    where = f"family.{family}"
    parts: dict[str, float] = {}
    sources: dict[str, str] = {}

    def add(name: str, gb: float, source: str) -> None:
        parts[name] = round(gb, 3)
        sources[name] = source

    overhead, src = m.number(m.common, "overhead_gb", "common")
    add("CUDA context and slack", overhead, src)

    precision = _base_precision(s, backend, m)
    params, psrc = m.number(fam, "base_params_b", where)
    bpp, bsrc = m.number(m.common, f"bytes_per_param.{precision}", "common")
    base_gb = params * 1e9 * bpp / (1 << 30)
    label = {"none": "16-bit", "int8": "8-bit int8", "float8": "8-bit fp8",
             "nf4": "4-bit NF4"}.get(precision, precision)
    swapped = _blocks_swapped(s, backend, m)
    if swapped and m.flag(be, "block_swap") and "swap_blocks" in fam:
        units, _ = m.number(fam, "swap_blocks", where)
        kept = base_gb * max(0.0, 1.0 - swapped / units)
        add(f"base model ({label}, {swapped} blocks swapped to RAM)", kept,
            f"{psrc}; {bsrc}; block swap: estimate, an equal share a block")
    else:
        add(f"base model ({label})", base_gb, f"{psrc}; {bsrc}")

    te, tsrc = m.number(fam, "text_encoder_params_b", where)
    te_gb = te * 1e9 * 2 / (1 << 30)
    if m.flag(be, "text_encoders_resident"):
        add("text encoders (resident)", te_gb, tsrc)
    vae, vsrc = m.number(fam, "vae_params_b", where)
    vae_gb = vae * 1e9 * 2 / (1 << 30)
    if m.flag(be, "vae_resident") and int(s.get("sample_every") or 0) > 0:
        add("VAE (kept for samples)", vae_gb, vsrc)

    rank = max(1, int(s.get("rank") or 16))
    per_rank, lsrc = m.number(fam, "lora_params_m_per_rank", where)
    optimizer = str(s.get("optimizer") or "adamw")
    if optimizer not in ("adamw", "adamw8bit"):
        optimizer = "adamw"
    lbytes, obsrc = m.number(m.common, f"lora_bytes_per_param.{optimizer}", "common")
    add(f"LoRA + optimizer (rank {rank}, {optimizer})",
        per_rank * 1e6 * rank * lbytes / (1 << 30), f"{lsrc}; {obsrc}")

    resolution = max(64, int(s.get("resolution") or 512))
    batch = max(1, int(s.get("batch_size") or 1))
    checkpointing = bool(s.get("gradient_checkpointing", True))
    key = "checkpointing" if checkpointing else "no_checkpointing"
    per_mp, asrc = m.number(fam, f"activations_gb_per_mp.{key}", where)
    mp = resolution * resolution / 1e6
    add(f"activations ({resolution} px, batch {batch}, checkpointing "
        f"{'on' if checkpointing else 'off'})", per_mp * mp * batch, asrc)

    app_ram, _ = m.number(m.common, "ram_app_gb", "common")
    ram = app_ram + params * 1e9 * 2 / (1 << 30) + te_gb + vae_gb   # loaded as 16-bit first
    return MemoryEstimate(vram_gb=round(sum(parts.values()), 2), ram_gb=round(ram, 1),
                          parts=parts, sources=sources)


def tier_for(vram_gb: float) -> int:
    """The VRAM tier (8/12/16/24/48 GB) for a card with ``vram_gb`` GiB: the largest tier
    it holds (a card reporting a little under its label counts as it); below 8: 8."""
    fitting = [t for t in TIERS if t <= vram_gb + _TIER_SLACK_GB]
    return max(fitting) if fitting else TIERS[0]


def _usable(gpu_vram_gb: float, model: MemoryModel) -> float:
    headroom, _ = model.number(model.common, "headroom", "common")
    return gpu_vram_gb * headroom


def _steps(s: Mapping[str, Any], family: str, backend: str,
           model: MemoryModel) -> list[tuple[dict[str, Any], str]]:
    """The memory savers still off, cheapest first, as (field changes, words)."""
    be = model.backend(backend)
    out: list[tuple[dict[str, Any], str]] = []
    if not bool(s.get("gradient_checkpointing", True)):
        out.append(({"gradient_checkpointing": True}, "gradient checkpointing on"))
    batch = max(1, int(s.get("batch_size") or 1))
    if batch > 1:
        accum = max(1, int(s.get("grad_accum") or 1))
        out.append(({"batch_size": 1, "grad_accum": accum * batch}, "batch 1"))
    if family in FLOW_FAMILIES and _base_precision(s, backend, model) == "none":
        options = [str(q) for q in be.get("quantize") or ()]
        if backend == "kohya":
            out.append(({"fp8_base": True}, "8-bit base"))
        else:
            mode = next((q for q in _QUANTIZE_PREFERENCE if q in options), None)
            if mode is not None:
                out.append(({"quantize_base": mode}, "8-bit base"))
    if family in FLOW_FAMILIES and backend != "kohya" \
            and _base_precision(s, backend, model) in ("none", *_QUANTIZE_PREFERENCE) \
            and "nf4" in [str(q) for q in be.get("quantize") or ()]:
        out.append(({"quantize_base": "nf4"}, "4-bit base (NF4)"))
    if family in FLOW_FAMILIES and model.flag(be, "block_swap"):
        most = int(model.number(be, "max_blocks_to_swap", f"backend.{backend}")[0])
        now = _blocks_swapped(s, backend, model)
        while now < most:
            now = min(most, now + BLOCK_SWAP_STEP)
            out.append(({"blocks_to_swap": now}, f"{now} blocks swapped to RAM"))
    resolution = int(s.get("resolution") or 512)
    while True:
        lower = lower_resolution(resolution, family)
        if lower == resolution:
            break
        resolution = lower
        out.append(({"resolution": lower}, f"{lower} px"))
    return out


def _merge_words(words: list[str]) -> str:
    # several swap / resolution steps: only the last of each kind counts
    seen: dict[str, str] = {}
    for w in words:
        kind = "px" if w.endswith(" px") else "swap" if "swapped" in w else w
        seen[kind] = w
    items = list(seen.values())
    text = items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
    return text[:1].upper() + text[1:]


def fit(estimate: MemoryEstimate, gpu_vram_gb: float, *, job_settings: Any = None,
        family: str | None = None, backend: str = "builtin",
        model: MemoryModel | None = None) -> Fix:
    """Whether ``estimate`` fits a card of ``gpu_vram_gb`` GiB. When it does not and the job
    (``job_settings``, ``family``, ``backend``) is given, the smallest change that fits: each
    saver alone, cheapest first (block swap and more than one resolution bucket excluded);
    else the savers added up in that order."""
    m = model or load_memory_model()
    usable = _usable(gpu_vram_gb, m)
    card = f"{gpu_vram_gb:.0f} GB"
    if estimate.vram_gb <= usable:
        return Fix(True, f"fits (est. {estimate.vram_gb:.1f} of {card})", estimate=estimate)
    over = f"will not fit this {card} GPU (est. {estimate.vram_gb:.1f} GB)"
    if job_settings is None or family is None:
        return Fix(False, over, estimate=estimate)
    s = _settings(job_settings)
    steps = _steps(s, family, backend, m)

    def _try(changes: dict[str, Any]) -> MemoryEstimate:
        return predict({**s, **changes}, family, backend, model=m)

    # one cheap change alone (not block swap: it costs speed; one resolution bucket at most)
    first_px = next((i for i, (c, _) in enumerate(steps) if "resolution" in c), len(steps))
    singles = [(c, w) for i, (c, w) in enumerate(steps)
               if "blocks_to_swap" not in c and ("resolution" not in c or i == first_px)]
    for changes, words in singles:
        est = _try(changes)
        if est.vram_gb <= usable:
            return _fixed(over, changes, [words], est, estimate, card)
    total: dict[str, Any] = {}
    said: list[str] = []
    for changes, words in steps:                         # then added up
        total.update(changes)
        said.append(words)
        est = _try(total)
        if est.vram_gb <= usable:
            return _fixed(over, dict(total), said, est, estimate, card)
    smallest = _try(total) if total else estimate
    text = (f"{over} — even with every memory saver it needs about "
            f"{smallest.vram_gb:.1f} GB with this trainer")
    if family in FLOW_FAMILIES and not m.flag(m.backend(backend), "block_swap"):
        text += "; a trainer that swaps blocks to RAM (kohya) fits smaller cards"
    return Fix(False, text, estimate=estimate, fixed_estimate=smallest)


def _fixed(over: str, changes: dict[str, Any], words: list[str], est: MemoryEstimate,
           before: MemoryEstimate, card: str) -> Fix:
    text = _merge_words(words)
    return Fix(False, f"{over} — {text[:1].lower() + text[1:]} fits (est. "
                      f"{est.vram_gb:.1f} of {card})",
               fix=changes, fix_text=f"Use {text[:1].lower() + text[1:]}", estimate=before,
               fixed_estimate=est)
