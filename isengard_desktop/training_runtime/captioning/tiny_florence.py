"""A tiny random Florence-2 (a few hundred KB, built in about a second) for tests and the
captioning benchmark. Nothing is downloaded.

The configuration has the real model's shape with tiny sizes: a DaViT vision tower and a BART
encoder-decoder (``Florence2Config``; the sizes follow transformers' own Florence-2 model
test). The tokenizer is a byte-level BPE like Florence-2's BART tokenizer — each byte a
token, a few merges, BART's special tokens ``<s> <pad> </s> <unk>`` at ids 0–3 and the
``<image>`` token — saved with ``save_pretrained`` so ``AutoProcessor.from_pretrained``
loads the folder the way it loads a downloaded model. Random weights give random text: it
tests the pipeline (batching, events, resume), not caption quality.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["build_tiny_florence"]

IMAGE_SIZE = 16          # pixels; the vision tower makes (16/4)^2 + 1 = 17 image tokens
_MERGES = [("Ġ", "a"), ("t", "h"), ("th", "e"), ("Ġ", "the"), ("i", "n")]


def _byte_chars() -> list[str]:
    """GPT-2's reversible byte → printable character map (byte-level BPE's alphabet)."""
    keep = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
            + list(range(ord("®"), ord("ÿ") + 1)))
    others = [b for b in range(256) if b not in keep]
    return [chr(b) for b in keep] + [chr(256 + n) for n in range(len(others))]


def build_tiny_florence(folder: Path, *, seed: int = 0) -> Path:
    """Write a tiny random Florence-2 model folder (model, processor, tokenizer); return it."""
    import torch
    from transformers import (BartTokenizer, CLIPImageProcessorPil, Florence2Config,
                              Florence2ForConditionalGeneration, Florence2Processor)

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokens = ["<s>", "<pad>", "</s>", "<unk>"] + _byte_chars() + ["".join(m) for m in _MERGES]
    tokens.append("<mask>")
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)},
                                                  ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text(
        "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in _MERGES), encoding="utf-8")
    tokenizer = BartTokenizer.from_pretrained(str(folder),
                                              extra_special_tokens={"image_token": "<image>"})
    image_processor = CLIPImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
                                            do_center_crop=False,
                                            image_seq_length=(IMAGE_SIZE // 4) ** 2 + 1)
    processor = Florence2Processor(image_processor=image_processor, tokenizer=tokenizer,
                                   num_additional_image_tokens=1)
    text_config = {
        "model_type": "bart", "vocab_size": len(tokenizer), "max_position_embeddings": 1100,
        "encoder_layers": 1, "encoder_ffn_dim": 16, "encoder_attention_heads": 1,
        "decoder_layers": 1, "decoder_ffn_dim": 16, "decoder_attention_heads": 1,
        "d_model": 16, "bos_token_id": 0, "pad_token_id": 1, "eos_token_id": 2,
        "decoder_start_token_id": 2, "forced_bos_token_id": 0, "forced_eos_token_id": 2}
    vision_config = {
        "depths": [1], "patch_size": [7], "patch_stride": [4], "patch_padding": [3],
        "patch_prenorm": [False], "embed_dim": [16], "num_heads": [1], "num_groups": [1],
        "window_size": 12, "projection_dim": 16}
    config = Florence2Config(text_config=text_config, vision_config=vision_config,
                             image_token_id=tokenizer.image_token_id)
    torch.manual_seed(seed)
    model = Florence2ForConditionalGeneration(config).eval()
    model.save_pretrained(str(folder))
    processor.save_pretrained(str(folder))
    return folder
