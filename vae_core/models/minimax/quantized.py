"""MiniMax H3's int8 decoder file (the host's "int8 + ConvRot" layout), computed as the host computes it.

The file holds the decoder blocks' four projections as int8 weights with one
float32 scale per output row, quantised after a rotation of each group of
input channels by a Hadamard matrix (ConvRot), and marks each such layer with
``<layer>.comfy_quant``: JSON bytes naming the format. The host does not turn
the weights back into floats: it rotates each token's inputs the same way,
quantises them to int8 with one scale per token, multiplies in integers and
scales the sums (comfy-kitchen's CPU path, which this reproduces operation by
operation). Block projections a quantised file leaves in floats are held in
float16 by the host, so they are rounded to it here too.
"""

from __future__ import annotations

import json
import re
from typing import Mapping

import torch
import torch.nn as nn

from ...errors import FrameStreamError

FORMAT = "int8_tensorwise"
# the only layers the host builds with its quantised operations
QUANTISABLE = re.compile(r"decoder\.transformer_blocks\.\d+\.(attn\.to_qkv|attn\.to_out|ff\.w1|ff\.w2)$")
_H4 = ((1, 1, 1, -1), (1, 1, -1, 1), (1, -1, 1, 1), (-1, 1, 1, 1))


def hadamard(size: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The orthonormal ``size x size`` Hadamard matrix ConvRot rotates by: Kronecker powers of a regular 4x4 one."""
    h4 = torch.tensor(_H4, dtype=dtype, device=device)
    h = h4
    while h.shape[0] < size:
        h = torch.kron(h, h4)
    return h / size**0.5


def per_row_int8(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` ``[M, K]`` -> int8 values and float32 scales ``[M, 1]`` (largest magnitude to 127, ties to even)."""
    scale = (x.abs().amax(-1, keepdim=True).float() / 127.0).clamp(min=1e-30)
    step = scale.to(x.dtype)
    step = torch.where(step == 0, torch.full_like(step, torch.finfo(x.dtype).tiny), step)
    return (x / step).round().clamp(-128.0, 127.0).to(torch.int8), scale


def rotate_groups(x: torch.Tensor, group: int) -> torch.Tensor:
    """``x`` ``[M, K]`` with each run of ``group`` channels rotated by the Hadamard matrix."""
    m, k = x.shape
    return (x.reshape(m, k // group, group) @ hadamard(group, x.dtype, x.device)).reshape(m, k)


class Int8Linear(nn.Module):
    """A linear layer of int8 weights ``[out, in]`` with per-row scales, in the ConvRot basis when ``group``."""

    def __init__(self, in_features: int, out_features: int, group: int | None) -> None:
        super().__init__()
        self.group = group
        self.register_buffer("weight", torch.zeros(out_features, in_features, dtype=torch.int8))
        self.register_buffer("weight_scale", torch.ones(out_features, 1))
        self.bias = nn.Parameter(torch.zeros(out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.reshape(-1, x.shape[-1])  # [M, in]
        if self.group:
            tokens = rotate_groups(tokens, self.group)
        values, scale = per_row_int8(tokens)
        sums = torch._int_mm(values, self.weight.t()) if _int_mm_serves(values) else \
            (values.long() @ self.weight.long().t()).int()  # exact int32 sums either way
        y = (sums.float() * (scale * self.weight_scale.float().reshape(1, -1))).to(x.dtype)
        return (y + self.bias.to(x.dtype)).reshape(*x.shape[:-1], -1)


def _int_mm_serves(values: torch.Tensor) -> bool:
    """torch's int8 matmul takes more than 16 rows and dims that are multiples of 8."""
    return values.shape[0] > 16 and values.shape[1] % 8 == 0


def quantised_layers(sd: Mapping[str, torch.Tensor], source: str) -> dict[str, int | None]:
    """The layers a file marks as quantised, with their ConvRot group (None: no rotation), or one clear error
    for a quantised layout this reader does not know."""
    layers = {}
    for key in sd:
        if not key.endswith(".comfy_quant"):
            continue
        layer = key[: -len(".comfy_quant")]
        try:
            config = json.loads(bytes(sd[key].to(torch.uint8).tolist()).decode())
        except (ValueError, UnicodeDecodeError):
            raise FrameStreamError(f"{source} marks {layer} as quantised but its format is not readable JSON") from None
        params = {**config, **config.get("params", {})}
        if config.get("format") != FORMAT:
            raise FrameStreamError(f"{source} holds {layer} quantised as {config.get('format')!r}; FrameStream reads "
                                   f"MiniMax H3's {FORMAT!r} decoder layers (the host's int8 + ConvRot file) only")
        if not QUANTISABLE.match(layer):
            raise FrameStreamError(f"{source} quantises {layer}; the MiniMax H3 int8 file quantises only the decoder "
                                   "blocks' projections (to_qkv, to_out, w1, w2), which is all the host reads so")
        group = int(params.get("convrot_groupsize", 256)) if params.get("convrot") else None
        if group is not None and sd[layer + ".weight"].shape[1] % group:
            raise FrameStreamError(f"{source} rotates {layer} in groups of {group}, which do not divide its "
                                   f"{sd[layer + '.weight'].shape[1]} inputs")
        layers[layer] = group
    return layers


def without_markers(sd: Mapping[str, torch.Tensor], layers: dict[str, int | None]) -> dict[str, torch.Tensor]:
    """The tensors the model holds: the markers dropped, and the block projections a quantised file left in
    floats rounded to float16 as the host holds them."""
    out = {}
    for key, value in sd.items():
        if key.endswith(".comfy_quant"):
            continue
        layer = key.rsplit(".", 1)[0]
        if layers and key.endswith(".weight") and QUANTISABLE.match(layer) and layer not in layers:
            value = value.to(torch.float16).to(value.dtype)
        out[key] = value
    return out


def install(model: nn.Module, layers: dict[str, int | None]) -> nn.Module:
    """``model`` with the named linear layers replaced by :class:`Int8Linear` (built where the model is)."""
    for name, group in layers.items():
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        linear = getattr(parent, child)
        setattr(parent, child, Int8Linear(linear.in_features, linear.out_features, group))
    return model
