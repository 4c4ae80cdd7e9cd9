"""PNG metadata: A1111 parameters, ComfyUI prompt/workflow and our own isengard chunk."""

from __future__ import annotations

import io
import json
import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from isengard_desktop import __version__
from isengard_desktop.core.comfy.metadata import (
    a1111_parameters,
    autov2_hash,
    embed_metadata,
    lora_tag,
    model_display_name,
    parse_a1111_parameters,
    read_metadata,
)

GRAPH = {"3": {"class_type": "KSampler", "inputs": {"seed": 2**64 - 1, "model": ["4", 0]},
               "_meta": {"title": "KSampler"}},
         "6": {"class_type": "CLIPTextEncode", "inputs": {"text": 'a "quoted" {{x}}\nmot clé 漢字'}}}


def make_png(*, text: dict[str, str] | None = None, size=(32, 24), mode="RGB", dpi=None) -> bytes:
    img = Image.new(mode, size)
    img.putdata([((x * 7) % 256, (x * 13) % 256, (x * 29) % 256) if mode == "RGB" else x % 256
                 for x in range(size[0] * size[1])])
    info = PngInfo()
    for k, v in (text or {}).items():
        info.add_text(k, v)
    buf = io.BytesIO()
    img.save(buf, format="PNG", pnginfo=info, **({"dpi": dpi} if dpi else {}))
    return buf.getvalue()


def chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    out, pos = [], 8
    while pos < len(data):
        length, ctype = struct.unpack(">I4s", data[pos:pos + 8])
        payload = data[pos + 8: pos + 8 + length]
        crc = struct.unpack(">I", data[pos + 8 + length: pos + 12 + length])[0]
        assert crc == zlib.crc32(ctype + payload) & 0xFFFFFFFF
        out.append((ctype, payload))
        pos += 12 + length
    return out


def params_text(**kw) -> str:
    args = {"prompt": "portrait of alice, 35mm", "negative": "blurry, lowres", "steps": 30, "sampler": "dpmpp_2m",
            "cfg": 6.5, "seed": 123456789, "width": 832, "height": 1216, "model": "sdxl/juggernautXL_v9.safetensors"}
    args.update(kw)
    return a1111_parameters(**args)


# --------------------------------------------------------------------------------------------
# A1111 text
# --------------------------------------------------------------------------------------------


def test_a1111_text_exact_format():
    text = params_text(scheduler="karras", model_hash="0123abcdef")
    assert text == (
        "portrait of alice, 35mm\n"
        "Negative prompt: blurry, lowres\n"
        "Steps: 30, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 123456789, Size: 832x1216, "
        "Model hash: 0123abcdef, Model: juggernautXL_v9"
    )


def test_a1111_text_with_lora_and_flux_fields():
    text = a1111_parameters("alice, ohwx woman", "", 20, "euler", 1.0, 7, 1024, 1024, "flux1-dev.safetensors",
                            "loras/alice_v2.safetensors", 0.8, scheduler="simple", lora_hash="abcdef0123",
                            guidance=3.5, denoise=0.6, version=f"Isengard Desktop {__version__}")
    lines = text.split("\n")
    assert lines[0] == "alice, ohwx woman <lora:alice_v2:0.8>"
    assert len(lines) == 2  # no negative prompt line when it is empty
    assert lines[1] == ('Steps: 20, Sampler: Euler, Schedule type: Simple, CFG scale: 1, Distilled CFG Scale: 3.5, '
                        'Seed: 7, Size: 1024x1024, Model: flux1-dev, Denoising strength: 0.6, '
                        f'Lora hashes: "alice_v2: abcdef0123", Version: Isengard Desktop {__version__}')
    parsed = parse_a1111_parameters(text)
    assert parsed["fields"]["Lora hashes"] == "alice_v2: abcdef0123"
    assert parsed["guidance"] == 3.5 and parsed["denoise"] == 0.6


def test_lora_tag_is_not_added_twice():
    text = a1111_parameters("x <lora:alice:1>", "", 20, "euler", 7, 1, 512, 512, "m.ckpt", "alice.safetensors", 1.0)
    assert text.split("\n")[0] == "x <lora:alice:1>"
    assert lora_tag("a/b/c.safetensors", 1.25) == "<lora:c:1.25>"
    assert model_display_name("C:\\models\\x.v2.safetensors") == "x.v2"
    assert model_display_name("noext") == "noext"


def test_values_with_commas_are_quoted_like_a1111():
    text = params_text(model="odd, name: v1.safetensors", extra={"Note": "a, b\nc", "Empty": None})
    parsed = parse_a1111_parameters(text)
    assert parsed["model"] == "odd, name: v1"
    assert parsed["fields"]["Note"] == "a, b\nc"
    assert "Empty" not in parsed["fields"]


def test_parse_gives_back_every_field():
    parsed = parse_a1111_parameters(params_text(scheduler="karras"))
    assert parsed["prompt"] == "portrait of alice, 35mm"
    assert parsed["negative"] == "blurry, lowres"
    assert (parsed["steps"], parsed["sampler"], parsed["cfg"], parsed["seed"]) == (30, "DPM++ 2M", 6.5, 123456789)
    assert (parsed["width"], parsed["height"]) == (832, 1216)
    assert parsed["scheduler"] == "Karras" and parsed["model"] == "juggernautXL_v9"


def test_parse_real_a1111_text():
    text = ("masterpiece, 1girl, <lora:alice:0.7>\nsecond line\nNegative prompt: bad hands,\nworst quality\n"
            "Steps: 25, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 3890321845, Size: 512x768, "
            'Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Lora hashes: "alice: 1a2b3c4d5e6f", Version: v1.10.1')
    parsed = parse_a1111_parameters(text)
    assert parsed["prompt"] == "masterpiece, 1girl, <lora:alice:0.7>\nsecond line"
    assert parsed["negative"] == "bad hands,\nworst quality"
    assert (parsed["steps"], parsed["cfg"], parsed["seed"], parsed["width"],
            parsed["height"]) == (25, 7.0, 3890321845, 512, 768)
    assert parsed["model_hash"] == "6ce0161689"


# Prompts as people type them: A1111's parser strips each line, so we generate stripped lines.
line = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), min_size=1,
               max_size=60).map(str.strip).filter(
    lambda s: bool(s) and not s.startswith("Negative prompt:"))
prompt_st = st.lists(line, min_size=1, max_size=4).map("\n".join)


@settings(max_examples=150, deadline=None)
@given(prompt=prompt_st, negative=st.one_of(st.just(""), prompt_st), steps=st.integers(1, 10000),
       sampler=st.sampled_from(["euler", "dpmpp_2m", "dpmpp_2m_sde", "uni_pc", "res_multistep"]),
       cfg=st.sampled_from([1.0, 3.5, 6.5, 7.0, 12.25]), seed=st.integers(0, 2**64 - 1),
       width=st.integers(16, 16384), height=st.integers(16, 16384))
def test_a1111_round_trip(prompt, negative, steps, sampler, cfg, seed, width, height):
    text = a1111_parameters(prompt, negative, steps, sampler, cfg, seed, width, height, "model.safetensors")
    parsed = parse_a1111_parameters(text)
    assert parsed["prompt"] == prompt
    assert parsed["negative"] == negative
    assert (parsed["steps"], parsed["cfg"], parsed["seed"], parsed["width"],
            parsed["height"]) == (steps, cfg, seed, width, height)
    assert parsed["sampler"]


# --------------------------------------------------------------------------------------------
# PNG chunks
# --------------------------------------------------------------------------------------------


def test_embed_and_read_back():
    png = make_png()
    params = params_text(scheduler="karras")
    workflow = {"nodes": [], "links": [], "version": 0.4}
    isengard = {"character": {"id": 3, "name": "Alice"}, "lora": {"path": "alice_v2.safetensors", "strength": 0.8},
                "seed": 2**64 - 1, "workflow": "sdxl-lora", "parent_image": "gen/2025/a.png"}
    out = embed_metadata(png, parameters=params, prompt_graph=GRAPH, isengard=isengard, workflow=workflow)
    meta = read_metadata(out)
    assert meta["parameters"] == params
    assert meta["prompt"] == GRAPH
    assert meta["workflow"] == workflow
    assert meta["isengard"] == isengard | {"app_version": __version__, "schema": 1}
    assert meta["a1111"]["seed"] == 123456789
    assert set(meta["text"]) == {"parameters", "prompt", "workflow", "isengard"}


def test_pixels_and_other_chunks_are_kept_byte_for_byte(tmp_path):
    png = make_png(text={"Software": "ComfyUI", "Comment": "keep me"}, dpi=(300, 300))
    out = embed_metadata(png, parameters="x\nSteps: 1, Sampler: Euler, CFG scale: 1, Seed: 1, Size: 32x24",
                         prompt_graph=GRAPH, isengard={})
    before, after = chunks(png), chunks(out)
    ours = {b"parameters", b"prompt", b"workflow", b"isengard"}
    kept = [c for c in after if not (c[0] in (b"tEXt", b"iTXt", b"zTXt") and c[1].split(b"\0")[0] in ours)]
    assert kept == before  # same chunks, same order, same bytes (IDAT included)
    types = [c[0] for c in after]
    assert types.index(b"tEXt") < types.index(b"IDAT")  # readers that stop at IDAT see it
    with Image.open(io.BytesIO(png)) as a, Image.open(io.BytesIO(out)) as b:
        assert a.tobytes() == b.tobytes() and a.mode == b.mode and a.size == b.size
        assert b.text["Software"] == "ComfyUI" and b.text["Comment"] == "keep me"
        assert json.loads(b.text["prompt"]) == GRAPH
    path = tmp_path / "a.png"
    path.write_bytes(out)
    assert read_metadata(path)["prompt"] == GRAPH
    assert read_metadata(str(path))["text"]["Software"] == "ComfyUI"


def test_existing_chunks_with_our_keys_are_replaced():
    png = make_png(text={"parameters": "old", "prompt": "{}", "workflow": '{"old": 1}'})
    out = embed_metadata(png, parameters="new", prompt_graph=GRAPH, isengard={"seed": 1})
    meta = read_metadata(out)
    assert meta["parameters"] == "new" and meta["prompt"] == GRAPH
    assert meta["workflow"] is None  # a stale ComfyUI UI graph would not match the new prompt
    keys = [c[1].split(b"\0")[0] for c in chunks(out) if c[0] in (b"tEXt", b"iTXt")]
    assert keys.count(b"parameters") == 1 and keys.count(b"prompt") == 1
    # embedding twice is stable
    assert embed_metadata(out, parameters="new", prompt_graph=GRAPH, isengard={"seed": 1}) == out


def test_latin1_text_is_text_and_other_text_is_itxt():
    latin = embed_metadata(make_png(), parameters="café crème", prompt_graph=GRAPH, isengard={})
    types = {c[1].split(b"\0")[0]: c[0] for c in chunks(latin) if c[0] in (b"tEXt", b"iTXt")}
    assert types[b"parameters"] == b"tEXt"
    assert types[b"prompt"] == b"tEXt" and types[b"isengard"] == b"tEXt"  # JSON is ASCII, as ComfyUI writes it
    unicode = embed_metadata(make_png(), parameters="漢字 🧙 prompt", prompt_graph=GRAPH, isengard={"name": "Zoë 漢"})
    types = {c[1].split(b"\0")[0]: c[0] for c in chunks(unicode) if c[0] in (b"tEXt", b"iTXt")}
    assert types[b"parameters"] == b"iTXt"
    meta = read_metadata(unicode)
    assert meta["parameters"] == "漢字 🧙 prompt" and meta["isengard"]["name"] == "Zoë 漢"
    with Image.open(io.BytesIO(unicode)) as img:  # Pillow (and so A1111's PNG Info) reads it too
        img.load()
        assert img.text["parameters"] == "漢字 🧙 prompt"


def test_no_prompt_graph_and_compressed_chunks_from_elsewhere():
    info = PngInfo()
    info.add_text("parameters", "from elsewhere", zip=True)
    info.add_itxt("Title", "ünïcode", zip=True)
    buf = io.BytesIO()
    Image.new("L", (4, 4)).save(buf, format="PNG", pnginfo=info)
    meta = read_metadata(buf.getvalue())
    assert meta["parameters"] == "from elsewhere" and meta["text"]["Title"] == "ünïcode"
    assert meta["prompt"] is None and meta["isengard"] is None
    out = embed_metadata(buf.getvalue(), parameters="p", prompt_graph=None, isengard={"app_version": "9"})
    meta = read_metadata(out)
    assert meta["prompt"] is None and meta["isengard"] == {"app_version": "9", "schema": 1}
    assert meta["text"]["Title"] == "ünïcode"


def test_not_a_png():
    with pytest.raises(ValueError, match="not a PNG"):
        read_metadata(b"GIF89a....")
    with pytest.raises(ValueError, match="truncated"):
        embed_metadata(make_png()[:40], parameters="", prompt_graph=None, isengard={})


def test_autov2_hash(tmp_path):
    f = tmp_path / "lora.safetensors"
    f.write_bytes(b"hello")
    assert autov2_hash(f) == "2cf24dba5f"  # sha256("hello")[:10]


@settings(max_examples=40, deadline=None)
@given(prompt=st.text(max_size=2000), seed=st.integers(0, 2**64 - 1))
def test_metadata_round_trip_any_text(prompt, seed):
    graph = {"6": {"class_type": "CLIPTextEncode", "inputs": {"text": prompt}}}
    params = a1111_parameters(prompt, "", 20, "euler", 7.0, seed, 512, 512, "m.safetensors")
    out = embed_metadata(PNG_SMALL, parameters=params, prompt_graph=graph, isengard={"seed": seed, "prompt": prompt})
    meta = read_metadata(out)
    assert meta["parameters"] == params
    assert meta["prompt"] == graph
    assert meta["isengard"]["prompt"] == prompt and meta["isengard"]["seed"] == seed


PNG_SMALL = make_png(size=(8, 8))
