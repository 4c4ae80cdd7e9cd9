"""PNG metadata that A1111/Forge, Civitai, ComfyUI and prompt readers understand.

Three text chunks go into every image we save:

* ``parameters`` — A1111 text: the prompt (with ``<lora:name:weight>``), ``Negative prompt: ...``,
  then ``Steps: N, Sampler: X, Schedule type: Y, CFG scale: C, Seed: S, Size: WxH, Model hash: H,
  Model: M, ..., Lora hashes: "name: hash"``. Written as tEXt, or iTXt when the text is not
  Latin-1 (exactly what ``PngInfo.add_text`` does, as A1111 does).
* ``prompt`` — the ComfyUI API graph we ran (JSON); ``workflow`` too when we have a UI graph.
* ``isengard`` — our own JSON: character, LoRA, seed, workflow name, parent image, app version.

Chunks are spliced into the PNG byte stream before the first IDAT: pixels and every other chunk
stay byte for byte as they were (no re-encoding). Chunks with the same keys are replaced.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
import zlib
from collections.abc import Mapping
from pathlib import Path, PurePath
from typing import Any

from PIL.PngImagePlugin import PngInfo

__all__ = [
    "ISENGARD_KEY",
    "SAMPLER_A1111",
    "SCHEDULER_A1111",
    "a1111_parameters",
    "autov2_hash",
    "embed_metadata",
    "lora_tag",
    "model_display_name",
    "parse_a1111_parameters",
    "read_metadata",
    "sha256_file",
]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ISENGARD_KEY = "isengard"
ISENGARD_SCHEMA = 1
OUR_KEYS = ("parameters", "prompt", "workflow", ISENGARD_KEY)

# ComfyUI sampler_name -> A1111 "Sampler" (names as A1111 / Forge write them).
SAMPLER_A1111 = {
    "euler": "Euler", "euler_ancestral": "Euler a", "heun": "Heun", "heunpp2": "Heun++ 2",
    "dpm_2": "DPM2", "dpm_2_ancestral": "DPM2 a", "lms": "LMS", "dpm_fast": "DPM fast",
    "dpm_adaptive": "DPM adaptive", "dpmpp_2s_ancestral": "DPM++ 2S a", "dpmpp_sde": "DPM++ SDE",
    "dpmpp_sde_gpu": "DPM++ SDE", "dpmpp_2m": "DPM++ 2M", "dpmpp_2m_sde": "DPM++ 2M SDE",
    "dpmpp_2m_sde_gpu": "DPM++ 2M SDE", "dpmpp_2m_sde_heun": "DPM++ 2M SDE Heun",
    "dpmpp_2m_sde_heun_gpu": "DPM++ 2M SDE Heun", "dpmpp_3m_sde": "DPM++ 3M SDE",
    "dpmpp_3m_sde_gpu": "DPM++ 3M SDE", "ddim": "DDIM", "ddpm": "DDPM", "lcm": "LCM", "uni_pc": "UniPC",
    "uni_pc_bh2": "UniPC", "ipndm": "iPNDM", "ipndm_v": "iPNDM_v", "deis": "DEIS",
    "restart": "Restart",
}
# ComfyUI scheduler -> A1111 "Schedule type".
SCHEDULER_A1111 = {
    "normal": "Normal", "karras": "Karras", "exponential": "Exponential", "sgm_uniform": "SGM Uniform",
    "simple": "Simple", "ddim_uniform": "DDIM", "beta": "Beta", "kl_optimal": "KL Optimal",
    "linear_quadratic": "Linear Quadratic",
}

_MODEL_EXTS = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf", ".sft")

# A1111's own infotext grammar (modules/infotext_utils.py).
_RE_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_RE_SIZE = re.compile(r"^(\d+)x(\d+)$")


# --------------------------------------------------------------------------------------------
# A1111 text
# --------------------------------------------------------------------------------------------


def model_display_name(filename: str) -> str:
    """A model file as A1111 names it: no folder, no extension ("sdxl/juggernaut.safetensors" -> "juggernaut")."""
    name = PurePath(filename.replace("\\", "/")).name
    for ext in _MODEL_EXTS:
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return name


def _num(value: float) -> str:
    value = float(value)
    if value.is_integer():
        return str(int(value))
    return f"{value:.4f}".rstrip("0").rstrip(".")


def lora_tag(lora: str, strength: float) -> str:
    """``<lora:name:0.8>`` as A1111 / Civitai write it."""
    return f"<lora:{model_display_name(lora)}:{_num(strength)}>"


def _quote(text: Any) -> Any:
    text = str(text)
    if "," not in text and "\n" not in text and ":" not in text:
        return text
    return json.dumps(text, ensure_ascii=False)


def a1111_parameters(prompt: str, negative: str, steps: int, sampler: str, cfg: float, seed: int,
                     width: int, height: int, model: str, lora: str | None = None, strength: float | None = None,
                     *, scheduler: str | None = None, model_hash: str | None = None, lora_hash: str | None = None,
                     denoise: float | None = None, guidance: float | None = None,
                     extra: Mapping[str, object] | None = None, version: str | None = None) -> str:
    """The A1111 ``parameters`` text for one image.

    ``sampler`` / ``scheduler`` may be ComfyUI names (``dpmpp_2m`` / ``karras``) or A1111 names.
    With a LoRA, ``<lora:name:strength>`` is added to the prompt (unless already there) and
    ``Lora hashes: "name: hash"`` when ``lora_hash`` (the file's short sha256, e.g. AutoV2) is known.
    ``guidance`` is Flux's distilled CFG (written as Forge does, ``Distilled CFG Scale``).
    """
    prompt_text = prompt
    if lora:
        name = model_display_name(lora)
        weight = 1.0 if strength is None else strength
        if f"<lora:{name}:" not in prompt_text:
            prompt_text = f"{prompt_text.rstrip()} {lora_tag(lora, weight)}".lstrip()
    fields: dict[str, object | None] = {
        "Steps": int(steps),
        "Sampler": SAMPLER_A1111.get(sampler, sampler),
        "Schedule type": SCHEDULER_A1111.get(scheduler, scheduler) if scheduler else None,
        "CFG scale": _num(cfg),
        "Distilled CFG Scale": _num(guidance) if guidance is not None else None,
        "Seed": int(seed),
        "Size": f"{int(width)}x{int(height)}",
        "Model hash": model_hash or None,
        "Model": model_display_name(model) if model else None,
        "Denoising strength": _num(denoise) if denoise is not None else None,
        "Lora hashes": f"{model_display_name(lora)}: {lora_hash}" if lora and lora_hash else None,
    }
    for key, value in (extra or {}).items():
        fields[str(key)] = value
    if version:
        fields["Version"] = version
    params_line = ", ".join(f"{k}: {_quote(v)}" for k, v in fields.items() if v is not None and v != "")
    negative_text = f"\nNegative prompt: {negative}" if negative else ""
    return f"{prompt_text}{negative_text}\n{params_line}".strip()


def _unquote(text: str) -> str:
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_a1111_parameters(text: str) -> dict[str, Any]:
    """Parse A1111 ``parameters`` text the way A1111's PNG Info does.

    Returns every ``Key: value`` field as text plus ``prompt``, ``negative``, and typed
    ``steps``, ``sampler``, ``cfg``, ``seed``, ``width``, ``height`` where present.
    """
    prompt_lines: list[str] = []
    negative_lines: list[str] = []
    done_with_prompt = False
    *lines, lastline = text.strip().split("\n")
    if len(_RE_PARAM.findall(lastline)) < 3:
        lines.append(lastline)
        lastline = ""
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            done_with_prompt = True
            line = line[16:].strip()
        (negative_lines if done_with_prompt else prompt_lines).append(line)
    fields: dict[str, Any] = {}
    for key, value in _RE_PARAM.findall(lastline):
        fields[key] = _unquote(value) if value[:1] == '"' else value
    out: dict[str, Any] = {"prompt": "\n".join(prompt_lines), "negative": "\n".join(negative_lines), "fields": fields}
    conv = {"steps": ("Steps", int), "cfg": ("CFG scale", float), "seed": ("Seed", int),
            "sampler": ("Sampler", str), "scheduler": ("Schedule type", str), "model": ("Model", str),
            "model_hash": ("Model hash", str), "denoise": ("Denoising strength", float),
            "guidance": ("Distilled CFG Scale", float)}
    for name, (key, typ) in conv.items():
        if key in fields:
            try:
                out[name] = typ(fields[key])
            except ValueError:
                pass
    size = _RE_SIZE.match(fields.get("Size", ""))
    if size:
        out["width"], out["height"] = int(size.group(1)), int(size.group(2))
    return out


# --------------------------------------------------------------------------------------------
# Hashes
# --------------------------------------------------------------------------------------------


def sha256_file(path: str | Path, *, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def autov2_hash(path: str | Path) -> str:
    """Civitai's AutoV2 hash (first 10 hex digits of the file's sha256), as A1111's ``Model hash``."""
    return sha256_file(path)[:10]


# --------------------------------------------------------------------------------------------
# PNG chunks
# --------------------------------------------------------------------------------------------


def _chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, payload) of every chunk; ValueError when ``data`` is not a well-formed PNG."""
    if not data.startswith(PNG_SIGNATURE):
        raise ValueError("This is not a PNG file (the PNG signature is missing).")
    out = []
    pos = len(PNG_SIGNATURE)
    while pos < len(data):
        if pos + 8 > len(data):
            raise ValueError("The PNG file is truncated (incomplete chunk header).")
        length, ctype = struct.unpack(">I4s", data[pos: pos + 8])
        end = pos + 12 + length
        if end > len(data):
            raise ValueError(f"The PNG file is truncated (chunk {ctype!r} runs past the end).")
        out.append((ctype, data[pos + 8: pos + 8 + length]))
        pos = end
        if ctype == b"IEND":
            break
    if not out or out[0][0] != b"IHDR":
        raise ValueError("The PNG file has no IHDR chunk.")
    return out


def _chunk_bytes(ctype: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(ctype + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + ctype + payload + struct.pack(">I", crc)


def _text_key(ctype: bytes, payload: bytes) -> str | None:
    if ctype not in (b"tEXt", b"zTXt", b"iTXt"):
        return None
    return payload.split(b"\0", 1)[0].decode("latin-1")


def _decode_text(ctype: bytes, payload: bytes) -> tuple[str, str] | None:
    try:
        if ctype == b"tEXt":
            key, value = payload.split(b"\0", 1)
            return key.decode("latin-1"), value.decode("latin-1")
        if ctype == b"zTXt":
            key, rest = payload.split(b"\0", 1)
            return key.decode("latin-1"), zlib.decompress(rest[1:]).decode("latin-1")
        if ctype == b"iTXt":
            key, rest = payload.split(b"\0", 1)
            compressed, _method = rest[0], rest[1]
            _lang, _tkey, value = rest[2:].split(b"\0", 2)
            if compressed:
                value = zlib.decompress(value)
            return key.decode("latin-1"), value.decode("utf-8")
    except (ValueError, IndexError, zlib.error, UnicodeDecodeError):
        return None
    return None


def _json(value: Any) -> str:
    # ensure_ascii keeps JSON chunks pure ASCII, so they are tEXt like ComfyUI's own.
    return json.dumps(value, ensure_ascii=True, separators=(",", ":"), allow_nan=False)


def embed_metadata(png_bytes: bytes, *, parameters: str, prompt_graph: Mapping | None, isengard: Mapping,
                   workflow: Mapping | None = None) -> bytes:
    """``png_bytes`` with our ``parameters``, ``prompt``, optional ``workflow`` and ``isengard`` chunks.

    Pixels and all other chunks are kept byte for byte; earlier chunks with these keys are
    replaced. ``isengard`` gets ``app_version`` and ``schema`` when it does not carry them.
    """
    chunks = _chunks(bytes(png_bytes))
    ours = dict(isengard)
    if "app_version" not in ours:
        from isengard_desktop import __version__

        ours["app_version"] = __version__
    ours.setdefault("schema", ISENGARD_SCHEMA)
    info = PngInfo()
    info.add_text("parameters", parameters)
    if prompt_graph is not None:
        info.add_text("prompt", _json(prompt_graph))
    if workflow is not None:
        info.add_text("workflow", _json(workflow))
    info.add_text(ISENGARD_KEY, _json(ours))
    replaced = set(OUR_KEYS)
    out = [PNG_SIGNATURE]
    inserted = False
    for ctype, payload in chunks:
        if _text_key(ctype, payload) in replaced:
            continue
        if not inserted and ctype in (b"IDAT", b"IEND"):
            out.extend(_chunk_bytes(cid, data) for cid, data, _after in info.chunks)
            inserted = True
        out.append(_chunk_bytes(ctype, payload))
    return b"".join(out)


def read_metadata(path_or_bytes: str | Path | bytes | bytearray) -> dict[str, Any]:
    """The metadata of a PNG: ``parameters`` (text), ``a1111`` (parsed), ``prompt``, ``workflow``,
    ``isengard`` (parsed JSON, None when absent or not JSON) and ``text`` (every text chunk)."""
    data = bytes(path_or_bytes) if isinstance(path_or_bytes, (bytes, bytearray)) else Path(path_or_bytes).read_bytes()
    text: dict[str, str] = {}
    for ctype, payload in _chunks(data):
        decoded = _decode_text(ctype, payload)
        if decoded is not None:
            text.setdefault(decoded[0], decoded[1])

    def as_json(key: str) -> Any:
        if key not in text:
            return None
        try:
            return json.loads(text[key])
        except ValueError:
            return None

    parameters = text.get("parameters")
    return {
        "parameters": parameters,
        "a1111": parse_a1111_parameters(parameters) if parameters else None,
        "prompt": as_json("prompt"),
        "workflow": as_json("workflow"),
        "isengard": as_json(ISENGARD_KEY),
        "text": text,
    }
