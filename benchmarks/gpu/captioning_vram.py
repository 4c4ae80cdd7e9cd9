"""Captioning on a GPU: peak VRAM and images/s of full-size Florence-2 base and large by batch
size, with random weights built locally (nothing downloaded).

    python benchmarks/gpu/captioning_vram.py [--sizes base,large] [--batches 1,4,8,16,32]
        [--tokens 128] [--beams 3]

The models are ``Florence2ForConditionalGeneration`` built from ``Florence2Config`` at the
published sizes (vision: transformers' ``Florence2VisionConfig`` defaults for base, doubled
widths for large; text: BART-base / BART-large shapes) in bfloat16; the parameter count is
printed so it can be checked against the florence-community page (0.23B / 0.77B). Inputs are
what the processor makes for one 768×768 photo and the ``<DETAILED_CAPTION>`` prompt: 577
image tokens + 13 prompt tokens. Random weights never stop early, so every photo generates
``--tokens`` tokens (``min_new_tokens``): a worst case for time and memory.

Prints one JSON line (per model and batch: peak GB, images/s, or "oom"); checks the
catalogue's claim that base fits small cards and large wants 12 GB+ for batch 16. Exit 0 with
a note where there is no CUDA GPU, so it can run anywhere; it finishes within a few minutes
on one GPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

IMAGE_TOKENS = 577
PROMPT_TOKENS = 13
IMAGE_TOKEN_ID = 51289

SIZES = {
    "base": {"vision": {}, "projection": 768,
             "text": {"d_model": 768, "encoder_layers": 6, "decoder_layers": 6,
                      "encoder_attention_heads": 12, "decoder_attention_heads": 12,
                      "encoder_ffn_dim": 3072, "decoder_ffn_dim": 3072}},
    "large": {"vision": {"embed_dim": [256, 512, 1024, 2048], "num_heads": [8, 16, 32, 64],
                         "num_groups": [8, 16, 32, 64]}, "projection": 1024,
              "text": {"d_model": 1024, "encoder_layers": 12, "decoder_layers": 12,
                       "encoder_attention_heads": 16, "decoder_attention_heads": 16,
                       "encoder_ffn_dim": 4096, "decoder_ffn_dim": 4096}},
}


def build(size: str):  # noqa: ANN201 - a transformers model
    import torch
    from transformers import Florence2Config, Florence2ForConditionalGeneration

    spec = SIZES[size]
    text = {"model_type": "bart", "vocab_size": IMAGE_TOKEN_ID + 1,
            "max_position_embeddings": 1024, "bos_token_id": 0, "pad_token_id": 1,
            "eos_token_id": 2, "decoder_start_token_id": 2, **spec["text"]}
    vision = {"projection_dim": spec["projection"], **spec["vision"]}
    config = Florence2Config(text_config=text, vision_config=vision,
                             image_token_id=IMAGE_TOKEN_ID)
    with torch.device("cuda"):
        model = Florence2ForConditionalGeneration(config)
    return model.to(torch.bfloat16).eval()


def measure(model, batch: int, tokens: int, beams: int) -> dict:  # noqa: ANN001
    import torch

    ids = [IMAGE_TOKEN_ID] * IMAGE_TOKENS + [0] + list(range(100, 100 + PROMPT_TOKENS - 2)) + [2]
    input_ids = torch.tensor([ids] * batch, device="cuda")
    pixels = torch.randn(batch, 3, 768, 768, device="cuda", dtype=torch.bfloat16)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    try:
        torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.inference_mode():
            model.generate(input_ids=input_ids, pixel_values=pixels,
                           attention_mask=torch.ones_like(input_ids), max_new_tokens=tokens,
                           min_new_tokens=tokens, num_beams=beams, do_sample=False)
        torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
    except torch.cuda.OutOfMemoryError:
        return {"batch": batch, "oom": True}
    return {"batch": batch, "peak_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2),
            "images_per_s": round(batch / elapsed, 2)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="base,large")
    ap.add_argument("--batches", default="1,4,8,16,32")
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--beams", type=int, default=3)
    args = ap.parse_args()
    import torch

    if not torch.cuda.is_available():
        print(json.dumps({"benchmark": "captioning_vram", "ok": True,
                          "note": "no CUDA GPU here: nothing measured"}))
        return 0
    out: dict = {"benchmark": "captioning_vram", "gpu": torch.cuda.get_device_name(0),
                 "total_gb": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1),
                 "tokens": args.tokens, "beams": args.beams, "models": {}}
    for size in args.sizes.split(","):
        model = build(size)
        params = sum(p.numel() for p in model.parameters())
        weights_gb = torch.cuda.memory_allocated() / 2**30
        rows = [measure(model, int(b), args.tokens, args.beams)
                for b in args.batches.split(",")]
        out["models"][size] = {"params_b": round(params / 1e9, 3),
                               "weights_gb": round(weights_gb, 2), "runs": rows}
        del model
        torch.cuda.empty_cache()
    base16 = next((r for r in out["models"].get("large", {}).get("runs", [])
                   if r["batch"] == 16), None)
    out["large_batch16_fits_12gb"] = (None if base16 is None or base16.get("oom")
                                      else base16["peak_gb"] <= 12)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
