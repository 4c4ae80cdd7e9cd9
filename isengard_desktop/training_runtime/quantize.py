"""Frozen 8-bit or 4-bit base weights for the Flux/Chroma transformers (torchao).

What works with torch 2.13 / torchao 0.18 / peft 0.21.2 / diffusers 0.42.1, on CPU and in
the tests (``tests/unit/test_flux_family.py``):

* ``torchao.quantization.quantize_(model, Int8WeightOnlyConfig() | Float8WeightOnlyConfig())``
  on the transformer's ``nn.Linear`` layers **including the ones that get a LoRA**: peft
  recognises the torchao weight (``TorchAOBaseTensor``) and wraps the layer in
  ``peft.tuners.lora.torchao.TorchaoLoraLinear``. The LoRA A/B matrices are ordinary
  float parameters; the base weight stays an ``Int8Tensor`` / ``Float8Tensor`` without grad.
  Forward and backward run on CPU (fp32 or bf16 activations); the matmul dequantizes.
* peft looks for ``model.hf_quantizer.quantization_config.get_apply_tensor_subclass`` to be
  able to merge/unmerge; without it, every wrapped layer warns ("instantiated without
  ``get_apply_tensor_subclass``"). After quantizing we therefore attach diffusers' own
  ``TorchAoHfQuantizer`` (as ``from_pretrained(quantization_config=TorchAoConfig(...))``
  would), which also makes diffusers refuse a later ``.to(dtype)`` that would undo it.
* Loading with ``from_pretrained(..., quantization_config=TorchAoConfig(...))`` works too, but
  its ``modules_to_not_convert`` matches by substring, so excluding the final ``proj_out`` also
  skips every single-block ``proj_out`` (a quarter of the single-block weights); quantizing
  after loading with a precise filter avoids that and works for single-file loads alike.
* ``nf4`` (4-bit NormalFloat, as QLoRA): torchao's ``NF4Tensor`` (``to_nf4``, block 64,
  scaler block 256) as each chosen ``nn.Linear``'s weight. ``NF4Tensor`` implements
  ``F.linear`` with its own autograd function (the input's gradient flows; the weight has
  none), so peft wraps the layer in its plain ``lora.Linear`` and the base stays 4-bit. The
  scaler block is 256 blocks, fewer (the largest power of two dividing the layer's block count)
  for a small layer; a weight whose size is not a multiple of 64 stays in full precision
  (counted as kept).
  No diffusers quantizer is attached (peft never merges here; the weight's own ``.to()``
  keeps it 4-bit on a device move). About 0.52 bytes a weight: Flux's 12B in ~6.2 GB.
* Not used: bitsandbytes (not installed; CUDA only for training) and optimum-quanto (its
  qfloat8 failed on CPU in the feasibility study).

Kept in full precision: the small input/output projections and embedders (``x_embedder``,
``context_embedder``, final ``proj_out``, ``norm_out``, ``time_text_embed``, Chroma's
``distilled_guidance_layer``). They are <1 % of the weights and sensitive to rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

MODES = ("int8", "float8", "nf4")
NF4_BLOCK = 64
NF4_SCALER_BLOCK = 256

# Top-level submodules left in full precision (matched as exact names or name prefixes).
KEEP_FULL_PRECISION = ("x_embedder", "context_embedder", "proj_out", "norm_out",
                       "time_text_embed", "distilled_guidance_layer")


@dataclass
class QuantizeSummary:
    mode: str
    layers: int            # Linear layers converted
    kept: int              # Linear layers left in full precision
    bytes_before: int      # weight bytes of the converted layers before
    bytes_after: int       # ... and after


def _ao_config(mode: str):
    from torchao.quantization import Float8WeightOnlyConfig, Int8WeightOnlyConfig

    if mode == "int8":
        return Int8WeightOnlyConfig(set_inductor_config=False)
    if mode == "float8":
        return Float8WeightOnlyConfig(set_inductor_config=False)
    raise ValueError(f"quantize_base must be one of {MODES} (got {mode!r})")


def _kept(fqn: str, keep: tuple[str, ...]) -> bool:
    return any(fqn == name or fqn.startswith(name + ".") for name in keep)


def _nf4_class() -> type:
    from torchao.quantization.quantize_.workflows.nf4.nf4_tensor import NF4Tensor

    return NF4Tensor


def is_quantized_weight(weight: torch.Tensor) -> bool:
    """True for a torchao quantized tensor (int8 or float8 weight-only, or NF4)."""
    from torchao.utils import TorchAOBaseTensor

    return isinstance(weight, (TorchAOBaseTensor, _nf4_class()))


def _weight_bytes(weight: torch.Tensor) -> int:
    """Storage bytes of a plain or torchao tensor (quantized data + scales)."""
    if is_quantized_weight(weight):
        names, _ = weight.__tensor_flatten__()  # type: ignore[attr-defined]  # torchao subclass
        return sum(_weight_bytes(getattr(weight, n)) for n in names)
    return weight.numel() * weight.element_size()


def quantize_frozen_base(model: torch.nn.Module, mode: str,
                         keep: tuple[str, ...] = KEEP_FULL_PRECISION) -> QuantizeSummary:
    """Freeze ``model`` and store its ``nn.Linear`` weights in 8-bit (``mode`` "int8" or
    "float8"), in place, on the device they are on. Call before peft attaches the LoRA."""
    from diffusers import TorchAoConfig
    from diffusers.quantizers import DiffusersAutoQuantizer
    from torchao.quantization import quantize_

    if mode == "nf4":
        return _quantize_nf4(model, keep)
    config = _ao_config(mode)
    model.requires_grad_(False)
    linears = {name: m for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    chosen = {name for name in linears if not _kept(name, keep)}
    before = sum(_weight_bytes(linears[n].weight) for n in chosen)
    quantize_(model, config, filter_fn=lambda m, fqn: fqn in chosen
              and isinstance(m, torch.nn.Linear))
    after = sum(_weight_bytes(linears[n].weight) for n in chosen)
    for name in chosen:
        linears[name].weight.requires_grad_(False)
    # What from_pretrained(quantization_config=TorchAoConfig(...)) leaves on the model: peft
    # reads the config from here, diffusers' ModelMixin.to() refuses dtype casts.
    quantizer = DiffusersAutoQuantizer.from_config(
        TorchAoConfig(config, modules_to_not_convert=list(keep)))  # type: ignore[arg-type]
    model.hf_quantizer = quantizer
    model.is_quantized = True  # type: ignore[assignment]  # a diffusers model attribute
    model.quantization_method = quantizer.quantization_config.quant_method
    return QuantizeSummary(mode, len(chosen), len(linears) - len(chosen), before, after)


def nf4_fits(weight: torch.Tensor) -> bool:
    """Whether ``to_nf4`` can store ``weight`` (its size a multiple of the block)."""
    return weight.numel() % NF4_BLOCK == 0


def nf4_scaler_block(weight: torch.Tensor) -> int:
    """The scaler block for ``weight``: :data:`NF4_SCALER_BLOCK` blocks, or the largest power
    of two dividing its block count (``to_nf4`` needs the count to be a multiple)."""
    blocks = weight.numel() // NF4_BLOCK
    size = NF4_SCALER_BLOCK
    while size > 1 and blocks % size:
        size //= 2
    return size


def _quantize_nf4(model: torch.nn.Module, keep: tuple[str, ...]) -> QuantizeSummary:
    """``model``'s chosen ``nn.Linear`` weights as frozen NF4 tensors, in place."""
    from torchao.quantization.quantize_.workflows.nf4.nf4_tensor import to_nf4

    model.requires_grad_(False)
    linears = {name: m for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    chosen = [n for n in linears if not _kept(n, keep) and nf4_fits(linears[n].weight)]
    before = sum(_weight_bytes(linears[n].weight) for n in chosen)
    for name in chosen:
        layer = linears[name]
        layer.weight = torch.nn.Parameter(
            to_nf4(layer.weight.data, NF4_BLOCK, nf4_scaler_block(layer.weight)),
            requires_grad=False)
    after = sum(_weight_bytes(linears[n].weight) for n in chosen)
    return QuantizeSummary("nf4", len(chosen), len(linears) - len(chosen), before, after)
