"""diffusion-pipe's model types: the ``[model]`` keys each one needs (Qt-free, torch-free).

Read from diffusion-pipe's ``docs/supported_models.md`` and ``train.py``: every ``[model]
type`` it knows, the path keys the user must fill (as user fields, shown only for that
type), which combinations are enough, and the fixed keys we always write. The backend
(``plugins/diffusion_pipe/backend.py``) turns a job into TOML with :func:`model_table` and checks the
paths before launch with :func:`check_paths`.

Newer model types take ComfyUI-style keys (``diffusion_model``, ``vae`` and a
``text_encoders`` list of ``{path(s), type}`` tables); the user fills one field per text
encoder file and :func:`model_table` builds the list.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...core.training.spec import SpecError

__all__ = ["FLUX_SHIFT_TYPES", "MODEL_TYPES", "OPTIMIZERS", "VIDEO_TYPES", "ModelType",
           "PathKey", "check_paths", "default_model_type", "model_table", "model_type",
           "option_fields", "path_fields", "resolve_paths"]

_MODEL_SUFFIXES = (".safetensors", ".sft", ".ckpt", ".pt", ".pth", ".bin", ".gguf")


@dataclass(frozen=True)
class PathKey:
    """One path the user fills for a model type."""

    key: str
    label: str
    kind: str      # "file", "folder", or "path" (either)
    tooltip: str


@dataclass(frozen=True)
class ModelType:
    """One diffusion-pipe ``[model] type``.

    Attributes:
        required: alternatives; each is a set of keys that is enough on its own.
        base_model_keys: keys that ``job.base_model`` fills when the user left them empty
            (the first whose kind matches: a folder or a file).
        text_encoders: field keys that go into the ``text_encoders`` list (one table whose
            ``path``, or ``paths`` when there are several), with ``te_type`` as its type.
        float8_key: the key that takes ``'float8'`` for a float8 base ("" = not supported).
        fixed: keys always written (besides type and dtype).
        families: the app's families this type trains (empty: none of ours; the job keeps
            the closest image family it was given).
    """

    key: str
    label: str
    video: bool
    paths: tuple[PathKey, ...]
    required: tuple[tuple[str, ...], ...]
    base_model_keys: tuple[str, ...] = ()
    text_encoders: tuple[str, ...] = ()
    te_type: str = ""
    float8_key: str = "transformer_dtype"
    fixed: tuple[tuple[str, Any], ...] = ()
    families: tuple[str, ...] = ()

    def path(self, key: str) -> PathKey:
        return next(p for p in self.paths if p.key == key)


def _p(key: str, label: str, kind: str, tooltip: str) -> PathKey:
    return PathKey(key, label, kind, tooltip)


_DIFFUSERS_FLUX = _p("diffusers_path", "Flux Diffusers folder", "folder",
                     "The FLUX.1-dev (or schnell) Diffusers folder (model_index.json, vae/, "
                     "text_encoder/ …); diffusion-pipe loads the VAE and text encoders from it.")
_LOGIT = (("timestep_sample_method", "logit_normal"),)
AURAFLOW_MAX_SEQUENCE_LENGTH = 768
_SHIFT3 = (("timestep_sample_method", "logit_normal"), ("shift", 3))


def _comfy(key: str, what: str) -> PathKey:
    return _p(key, what, "file", f"The ComfyUI {what} file (.safetensors).")


MODEL_TYPES: tuple[ModelType, ...] = (
    ModelType(
        "chroma", "Chroma", False,
        (_DIFFUSERS_FLUX,
         _p("transformer_path", "Chroma transformer file", "file",
            "The Chroma single-file model, e.g. chroma-unlocked-v47.safetensors.")),
        (("diffusers_path", "transformer_path"),), ("transformer_path",),
        fixed=(("flux_shift", True),), families=("chroma",)),
    ModelType(
        "sdxl", "SDXL", False,
        (_p("checkpoint_path", "SDXL checkpoint file", "file",
            "An SDXL single-file checkpoint (.safetensors), e.g. sd_xl_base_1.0.safetensors."),),
        (("checkpoint_path",),), ("checkpoint_path",), float8_key="", families=("sdxl",)),
    ModelType(
        "flux", "Flux (dev / schnell / Kontext)", False,
        (_DIFFUSERS_FLUX,
         _p("transformer_path", "Flux transformer file (optional)", "file",
            "Optional: a BFL-format transformer .safetensors that replaces the one in the "
            "Diffusers folder (e.g. a de-distilled Flux or Flux Kontext).")),
        (("diffusers_path",),), ("diffusers_path", "transformer_path"),
        fixed=(("flux_shift", True),), families=("flux-dev", "flux-schnell")),
    ModelType(
        "ltx-video", "LTX-Video", True,
        (_p("diffusers_path", "LTX-Video Diffusers folder", "folder",
            "The LTX-Video Diffusers folder (the text encoder is loaded from it)."),
         _p("single_file_path", "LTX-Video checkpoint file", "file",
            "The single-file LTX-Video checkpoint (.safetensors); diffusion-pipe loads the "
            "transformer from it (models/ltx_video.py:37, 59).")),
        (("diffusers_path", "single_file_path"),), ("diffusers_path", "single_file_path"),
        fixed=_LOGIT),
    ModelType(
        "hunyuan-video", "HunyuanVideo", True,
        (_p("ckpt_path", "HunyuanVideo ckpts folder", "folder",
            "The 'ckpts' folder of the official HunyuanVideo inference setup. Leave empty "
            "and fill the four ComfyUI files instead, if you use those."),
         _comfy("transformer_path", "HunyuanVideo transformer"),
         _comfy("vae_path", "HunyuanVideo VAE"),
         _p("llm_path", "LLaVA-Llama-3 text encoder folder", "folder",
            "The llava-llama-3-8b-text-encoder-tokenizer folder."),
         _p("clip_path", "CLIP-L folder", "folder", "The clip-vit-large-patch14 folder.")),
        (("ckpt_path",), ("transformer_path", "vae_path", "llm_path", "clip_path")),
        ("ckpt_path", "transformer_path"), fixed=_LOGIT),
    ModelType(
        "cosmos", "Cosmos", True,
        (_comfy("transformer_path", "Cosmos transformer"), _comfy("vae_path", "Cosmos VAE"),
         _comfy("text_encoder_path", "old T5-XXL text encoder")),
        (("transformer_path", "vae_path", "text_encoder_path"),), ("transformer_path",),
        float8_key=""),
    ModelType(
        "lumina_2", "Lumina Image 2.0", False,
        (_comfy("transformer_path", "Lumina 2 transformer"),
         _comfy("llm_path", "Gemma 2 2B text encoder"), _comfy("vae_path", "Flux VAE")),
        (("transformer_path", "llm_path", "vae_path"),), ("transformer_path",),
        float8_key="", fixed=(("lumina_shift", True),)),
    ModelType(
        "wan", "Wan 2.1 / 2.2", True,
        (_p("ckpt_path", "Wan checkpoint folder", "folder",
            "The original Wan checkpoint folder (e.g. Wan2.1-T2V-1.3B); it may lack the "
            "transformer and UMT5 when you give their ComfyUI files below."),
         _p("transformer_path", "Wan transformer (optional)", "path",
            "Optional: the ComfyUI transformer file, or for Wan 2.2 A14B the low/high noise "
            "subfolder of the checkpoint."),
         _comfy("llm_path", "UMT5 text encoder (optional)")),
        (("ckpt_path",),), ("ckpt_path", "transformer_path"), fixed=_LOGIT),
    ModelType(
        "hidream", "HiDream-I1", False,
        (_p("diffusers_path", "HiDream Diffusers folder", "folder",
            "The HiDream-I1-Full Diffusers folder."),
         _p("llama3_path", "Llama 3.1 8B Instruct folder", "folder",
            "The Meta-Llama-3.1-8B-Instruct folder (loaded in 4-bit).")),
        (("diffusers_path", "llama3_path"),), ("diffusers_path",),
        fixed=(("llama3_4bit", True), ("max_llama3_sequence_length", 128))),
    ModelType(
        "sd3", "Stable Diffusion 3 / 3.5", False,
        (_p("diffusers_path", "SD3 Diffusers folder", "folder",
            "The full Diffusers folder of SD 3.5 Medium or Large."),),
        (("diffusers_path",),), ("diffusers_path",)),
    ModelType(
        "cosmos_predict2", "Cosmos-Predict2", False,
        (_p("transformer_path", "Cosmos-Predict2 model file", "file",
            "The original checkpoint (model.pt) of a Cosmos-Predict2 text-to-image model."),
         _comfy("vae_path", "Wan 2.1 VAE"),
         _comfy("t5_path", "old T5-XXL text encoder")),
        (("transformer_path", "vae_path", "t5_path"),), ("transformer_path",)),
    ModelType(
        "omnigen2", "OmniGen2", False,
        (_p("diffusers_path", "OmniGen2 folder", "folder", "The OmniGen2 model folder."),),
        (("diffusers_path",),), ("diffusers_path",), float8_key=""),
    ModelType(
        "qwen_image", "Qwen-Image / Qwen-Image-Edit", False,
        (_p("diffusers_path", "Qwen-Image Diffusers folder", "folder",
            "The Qwen-Image (or -Edit) Diffusers folder. Or leave it empty and give the three "
            "files below."),
         _comfy("transformer_path", "Qwen-Image transformer"),
         _comfy("text_encoder_path", "Qwen 2.5 VL 7B text encoder"),
         _p("vae_path", "Qwen-Image VAE (Diffusers)", "file",
            "The Diffusers VAE file (vae/diffusion_pytorch_model.safetensors); the ComfyUI "
            "VAE is not supported.")),
        (("diffusers_path",), ("transformer_path", "text_encoder_path", "vae_path")),
        ("diffusers_path", "transformer_path"), fixed=_LOGIT),
    ModelType(
        "hunyuan_image", "HunyuanImage 2.1", False,
        (_comfy("transformer_path", "HunyuanImage transformer"),
         _comfy("vae_path", "HunyuanImage VAE"),
         _comfy("text_encoder_path", "Qwen 2.5 VL 7B text encoder"),
         _comfy("byt5_path", "ByT5 glyph text encoder")),
        (("transformer_path", "vae_path", "text_encoder_path", "byt5_path"),),
        ("transformer_path",)),
    ModelType(
        "auraflow", "AuraFlow", False,
        (_comfy("transformer_path", "AuraFlow transformer"),
         _comfy("text_encoder_path", "UMT5 text encoder"), _comfy("vae_path", "SDXL VAE")),
        (("transformer_path", "text_encoder_path", "vae_path"),), ("transformer_path",),
        # models/auraflow.py:28 reads max_sequence_length unconditionally (768: what
        # AuraFlow-based models such as Pony V7 were trained with)
        fixed=_LOGIT + (("max_sequence_length", AURAFLOW_MAX_SEQUENCE_LENGTH),)),
    ModelType(
        "anima", "Anima", False,
        (_comfy("transformer_path", "Anima model"), _comfy("vae_path", "Qwen-Image VAE"),
         _comfy("llm_path", "Qwen 3 0.6B text encoder")),
        (("transformer_path", "vae_path", "llm_path"),), ("transformer_path",),
        float8_key=""),
    ModelType(
        "z_image", "Z-Image", False,
        (_comfy("diffusion_model", "Z-Image model"), _comfy("vae", "Flux VAE"),
         _comfy("text_encoder", "Qwen 3 4B text encoder")),
        (("diffusion_model", "vae", "text_encoder"),), ("diffusion_model",),
        ("text_encoder",), "lumina2", "diffusion_model_dtype"),
    ModelType(
        "flux2", "Flux 2 (dev / Klein)", False,
        (_comfy("diffusion_model", "Flux 2 model"), _comfy("vae", "Flux 2 VAE"),
         _comfy("text_encoder", "Flux 2 text encoder")),
        (("diffusion_model", "vae", "text_encoder"),), ("diffusion_model",),
        ("text_encoder",), "flux2", "diffusion_model_dtype", _SHIFT3),
    ModelType(
        "hunyuan_video_15", "HunyuanVideo 1.5", True,
        (_comfy("diffusion_model", "HunyuanVideo 1.5 model"),
         _comfy("vae", "HunyuanVideo 1.5 VAE"),
         _comfy("text_encoder", "Qwen 2.5 VL 7B text encoder"),
         _comfy("text_encoder_2", "ByT5 glyph text encoder")),
        (("diffusion_model", "vae", "text_encoder", "text_encoder_2"),), ("diffusion_model",),
        ("text_encoder", "text_encoder_2"), "hunyuan_video_15", "diffusion_model_dtype",
        _LOGIT),
    ModelType(
        "ernie_image", "Ernie-Image", False,
        (_comfy("diffusion_model", "Ernie-Image model"), _comfy("vae", "Flux 2 VAE"),
         _comfy("text_encoder", "Ministral 3B text encoder")),
        (("diffusion_model", "vae", "text_encoder"),), ("diffusion_model",),
        ("text_encoder",), "flux2", "diffusion_model_dtype", _SHIFT3),
    ModelType(
        "ltx2", "LTX 2.3", True,
        (_comfy("diffusion_model", "LTX 2.3 model"),
         _comfy("text_encoder", "Gemma 3 12B text encoder")),
        (("diffusion_model", "text_encoder"),), ("diffusion_model",),
        float8_key="diffusion_model_dtype", fixed=_LOGIT),
    ModelType(
        "ideogram4", "Ideogram 4", False,
        (_comfy("diffusion_model", "Ideogram 4 model"), _comfy("vae", "Flux 2 VAE"),
         _comfy("text_encoder", "Qwen 3 VL 8B text encoder")),
        (("diffusion_model", "vae", "text_encoder"),), ("diffusion_model",),
        ("text_encoder",), "ideogram4", "diffusion_model_dtype", _SHIFT3),
    ModelType(
        "krea2", "Krea 2", False,
        (_comfy("diffusion_model", "Krea 2 model"), _comfy("vae", "Qwen-Image VAE"),
         _comfy("text_encoder", "Qwen 3 VL 4B text encoder")),
        (("diffusion_model", "vae", "text_encoder"),), ("diffusion_model",),
        ("text_encoder",), "krea2", "diffusion_model_dtype", _LOGIT),
    ModelType(
        "minimax_h3", "MiniMax H3", True,
        (_comfy("diffusion_model", "MiniMax H3 model"), _comfy("vae", "MiniMax H3 video VAE"),
         _comfy("audio_vae", "MiniMax H3 audio VAE"),
         _comfy("text_encoder", "MiniMax H3 text encoder")),
        (("diffusion_model", "vae", "audio_vae", "text_encoder"),), ("diffusion_model",),
        ("text_encoder",), "minimax", "", (("timestep_sample_method", "uniform"),)),
)

_BY_KEY = {m.key: m for m in MODEL_TYPES}
VIDEO_TYPES = [m.key for m in MODEL_TYPES if m.video]
FLUX_SHIFT_TYPES = ["chroma", "flux", "hidream", "sd3", "omnigen2"]
OPTIMIZERS = ("adamw_optimi", "AdamW8bitKahan", "adamw8bit", "adamw", "automagic", "Prodigy")
_FAMILY_DEFAULT = {"chroma": "chroma", "sdxl": "sdxl", "flux-dev": "flux",
                   "flux-schnell": "flux"}


def model_type(key: str) -> ModelType:
    """The :class:`ModelType` named ``key``; SpecError lists the known ones."""
    try:
        return _BY_KEY[key]
    except KeyError:
        raise SpecError(f"model_type: diffusion-pipe has no model type {key!r} (known: "
                        f"{', '.join(_BY_KEY)})") from None


def default_model_type(family: str) -> str:
    """The model type for an app family (chroma, sdxl, flux-*); SpecError for others."""
    try:
        return _FAMILY_DEFAULT[family]
    except KeyError:
        raise SpecError(f"family: diffusion-pipe cannot train {family!r} LoRAs; choose Chroma, "
                        "SDXL or Flux, or set a diffusion-pipe model type") from None


def path_fields() -> list[dict[str, Any]]:
    """User fields for every path key (``capabilities()["fields"]`` entries), each shown
    only for the model types that use it. Types that share a key with the same meaning
    share one entry."""
    grouped: dict[tuple[Any, ...], list[str]] = {}
    for mt in MODEL_TYPES:
        required_everywhere = set.intersection(*(set(alt) for alt in mt.required))
        for pk in mt.paths:
            kind = "file" if pk.kind == "path" else pk.kind
            from_base = pk.key in mt.base_model_keys
            tooltip = pk.tooltip + (" Empty: the job's base model, when it is this kind of "
                                    "path." if from_base else "")
            required = pk.key in required_everywhere and not from_base
            ident = (pk.key, pk.label, kind, tooltip, required, from_base)
            grouped.setdefault(ident, []).append(mt.key)
    out = []
    for (key, label, kind, tooltip, required, from_base), types in grouped.items():
        out.append({"key": key, "label": label, "kind": kind, "tooltip": tooltip,
                    "required": required, "base_model": from_base, "model_types": types})
    return out


def _looks_like_file(path: str) -> bool:
    p = Path(path)
    if p.exists():
        return p.is_file()
    return p.suffix.lower() in _MODEL_SUFFIXES


def resolve_paths(mt: ModelType, given: dict[str, Any], base_model: str) -> dict[str, str]:
    """The path values for ``mt``: the user's fields (non-empty text), then ``base_model``
    in the first :attr:`ModelType.base_model_keys` entry that is empty and whose kind fits."""
    values = {pk.key: str(given.get(pk.key) or "").strip() for pk in mt.paths}
    values = {k: v for k, v in values.items() if v}
    base = (base_model or "").strip()
    if base and base not in values.values():
        is_file = _looks_like_file(base)
        for key in mt.base_model_keys:
            kind = mt.path(key).kind
            fits = kind == "path" or (kind == "file") == is_file
            if fits and key not in values:
                values[key] = base
                break
    return values


def check_paths(mt: ModelType, values: dict[str, str]) -> None:
    """SpecError naming the first path key that is missing, does not exist, or is the wrong
    kind (file vs folder) for model type ``mt``."""
    satisfied = [alt for alt in mt.required if all(values.get(k) for k in alt)]
    if not satisfied:
        if len(mt.required) == 1:
            missing = [k for k in mt.required[0] if not values.get(k)]
            pk = mt.path(missing[0])
            raise SpecError(f"fields.{pk.key}: diffusion-pipe model type '{mt.key}' needs "
                            f"{pk.key} ({pk.label}); it is not set"
                            + (f" (also missing: {', '.join(missing[1:])})"
                               if len(missing) > 1 else ""))
        options = " or ".join("all of " + ", ".join(alt) if len(alt) > 1 else alt[0]
                              for alt in mt.required)
        # the alternative the user started filling (most keys set), then the shortest
        closest = min(mt.required, key=lambda alt: (-sum(bool(values.get(k)) for k in alt),
                                                    sum(not values.get(k) for k in alt)))
        missing = [k for k in closest if not values.get(k)]
        raise SpecError(f"fields.{missing[0]}: diffusion-pipe model type '{mt.key}' needs "
                        f"{options}; missing: {', '.join(missing)}")
    for pk in mt.paths:
        value = values.get(pk.key)
        if not value:
            continue
        path = Path(value).expanduser()
        if not path.exists():
            raise SpecError(f"fields.{pk.key}: {path} does not exist ({pk.label} for "
                            f"diffusion-pipe model type '{mt.key}')")
        if pk.kind == "file" and not path.is_file():
            raise SpecError(f"fields.{pk.key}: {path} is a folder, but {pk.label} must be a "
                            "file")
        if pk.kind == "folder" and not path.is_dir():
            raise SpecError(f"fields.{pk.key}: {path} is a file, but {pk.label} must be a "
                            "folder")


def model_table(mt: ModelType, values: dict[str, str], *, float8: bool,
                options: dict[str, Any]) -> dict[str, Any]:
    """The ``[model]`` table: type, the path keys (text encoders folded into their list),
    dtype, the float8 key when asked, the fixed keys, then ``options`` (user overrides of
    fixed keys such as ``flux_shift``)."""
    table: dict[str, Any] = {"type": mt.key}
    for pk in mt.paths:
        if pk.key in values and pk.key not in mt.text_encoders:
            table[pk.key] = str(Path(values[pk.key]).expanduser())
    if mt.text_encoders:
        files = [str(Path(values[k]).expanduser()) for k in mt.text_encoders if values.get(k)]
        encoder: dict[str, Any] = ({"path": files[0]} if len(files) == 1
                                   else {"paths": files})
        encoder["type"] = mt.te_type
        table["text_encoders"] = [encoder]
    table["dtype"] = "bfloat16"
    if float8:
        if not mt.float8_key:
            raise SpecError(f"quantize_base: diffusion-pipe cannot load {mt.label} in float8; "
                            "set it to none")
        table[mt.float8_key] = "float8_e5m2" if mt.key == "cosmos_predict2" else "float8"
    for key, value in mt.fixed:
        table[key] = options.get(key, value)
    for key, value in options.items():
        if key not in table and value is not None:
            table[key] = value
    return table


def option_fields() -> list[dict[str, Any]]:
    """The non-path user fields (``job.extra["fields"]``) the backend reads."""
    return [
        {"key": "epochs", "label": "Epochs (instead of steps)", "kind": "int",
         "required": False, "tooltip": "Train this many passes over the dataset instead of "
         "the step count. 0 (or empty) uses the job's steps as diffusion-pipe's max_steps."},
        {"key": "save_every_n_epochs", "label": "Save the LoRA every N epochs", "kind": "int",
         "required": False, "tooltip": "Only with Epochs: how often a LoRA snapshot is "
         "saved (default: only at the end)."},
        {"key": "checkpoint_every_n_minutes", "label": "Resumable checkpoint every (minutes)",
         "kind": "int", "required": False, "tooltip": "How often diffusion-pipe saves a "
         "DeepSpeed checkpoint that Resume continues from (default 30). Stop & save always "
         "saves one."},
        {"key": "blocks_to_swap", "label": "Blocks to swap to RAM", "kind": "int",
         "required": False, "tooltip": "Lowers VRAM use by keeping this many transformer "
         "blocks in system RAM (slower). Try 10–20 on 24 GB for big models; 0 = off."},
        {"key": "pipeline_stages", "label": "Pipeline stages", "kind": "int",
         "required": False, "tooltip": "With several GPUs: split each copy of the model over "
         "this many GPUs (for models too big for one card). The GPUs used must be a multiple "
         "of it; 1 (default) = every GPU holds the whole model (data parallel). Needs "
         "blocks to swap = 0 when above 1."},
        {"key": "activation_checkpointing", "label": "Activation checkpointing",
         "kind": "choice", "choices": ["true", "false", "unsloth"], "required": False,
         "tooltip": "true saves VRAM (recommended); unsloth saves even more, a bit slower."},
        {"key": "optimizer_type", "label": "Optimizer", "kind": "choice",
         "choices": list(OPTIMIZERS), "required": False, "tooltip": "adamw_optimi is "
         "diffusion-pipe's recommended default; AdamW8bitKahan uses less memory."},
        {"key": "beta1", "label": "Beta 1", "kind": "float", "required": False,
         "tooltip": "Optimizer beta1 (default 0.9)."},
        {"key": "beta2", "label": "Beta 2", "kind": "float", "required": False,
         "tooltip": "Optimizer beta2 (default 0.99)."},
        {"key": "weight_decay", "label": "Weight decay", "kind": "float", "required": False,
         "tooltip": "Optimizer weight decay (default 0.01)."},
        {"key": "eps", "label": "Epsilon", "kind": "float", "required": False,
         "tooltip": "Optimizer epsilon (default 1e-8)."},
        {"key": "gradient_clipping", "label": "Gradient clipping", "kind": "float",
         "required": False, "tooltip": "Clip the gradient norm to this value (default 1.0)."},
        {"key": "enable_ar_bucket", "label": "Aspect-ratio buckets", "kind": "bool",
         "required": False, "tooltip": "Train images at their own aspect ratio (no crop)."},
        {"key": "min_ar", "label": "Smallest aspect ratio", "kind": "float", "required": False,
         "tooltip": "Width / height of the narrowest bucket (default 0.5)."},
        {"key": "max_ar", "label": "Largest aspect ratio", "kind": "float", "required": False,
         "tooltip": "Width / height of the widest bucket (default 2.0)."},
        {"key": "num_ar_buckets", "label": "Number of aspect-ratio buckets", "kind": "int",
         "required": False, "tooltip": "Buckets between the smallest and largest aspect "
         "ratio (default 7)."},
        {"key": "frame_buckets", "label": "Frame buckets", "kind": "text", "required": False,
         "model_types": VIDEO_TYPES, "tooltip": "Video clip lengths in frames, e.g. "
         "'1, 33' (1 is for images)."},
        {"key": "caption_prefix", "label": "Caption prefix", "kind": "text",
         "required": False, "tooltip": "Text put in front of every caption (after tag "
         "shuffling, so it stays first); [trigger] becomes the trigger word, e.g. "
         "'[trigger], '. Empty: the trigger word goes in front of each caption."},
        {"key": "cache_shuffle_num", "label": "Tag shuffles", "kind": "int", "required": False,
         "tooltip": "Cache this many shuffled versions of comma-separated tag captions "
         "(0 = keep captions as written)."},
        {"key": "shuffle_tags", "label": "Shuffle tags", "kind": "bool", "required": False,
         "tooltip": "Shuffle the comma-separated tags of each caption once (Tag shuffles "
         "above caches more shuffled versions)."},
        {"key": "flux_shift", "label": "Flux timestep shift", "kind": "bool",
         "required": False, "model_types": FLUX_SHIFT_TYPES,
         "tooltip": "Resolution-dependent timestep shift (on by default for Flux and "
         "Chroma)."},
        {"key": "wandb", "label": "Report to Weights & Biases", "kind": "bool",
         "required": False, "tooltip": "Send the loss to W&B. Needs your W&B key in "
         "Settings → Accounts; it reaches diffusion-pipe only through its environment."},
        {"key": "wandb_project", "label": "W&B project", "kind": "text", "required": False,
         "tooltip": "The W&B project the run goes to (default 'isengard')."},
    ]
