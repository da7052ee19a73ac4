"""Wan 2.1 / 2.2 VAE checkpoints: the original layout (also the host's) and diffusers' ``AutoencoderKLWan``.

Widths and depths are read from the tensors, so a reduced test model loads
exactly as a real one does.
"""

from __future__ import annotations

import re
from typing import Mapping

import torch

from ...errors import FrameStreamError
from ..assembly import assemble, count_indices
from .model import WanConfig, WanVAE


def is_original_layout(sd: Mapping[str, torch.Tensor]) -> bool:
    """RMS-norm gains (``gamma``) in a ``middle`` list and a flat ``head``: no other family names them so."""
    return "decoder.middle.0.residual.0.gamma" in sd and "decoder.head.0.gamma" in sd


def is_diffusers_layout(sd: Mapping[str, torch.Tensor]) -> bool:
    """RMS-norm gains, one fused qkv projection and plain (unnested) causal convs. HunyuanVideo 1.5 has the
    gains too, but separate q/k/v and nested ``conv_in.conv``."""
    return "decoder.mid_block.resnets.0.norm1.gamma" in sd and "decoder.mid_block.attentions.0.to_qkv.weight" in sd \
        and "decoder.conv_in.weight" in sd


def recognises(sd: Mapping[str, torch.Tensor]) -> bool:
    return is_original_layout(sd) or is_diffusers_layout(sd)


# --- diffusers AutoencoderKLWan layout -> original layout -------------------------------------------------

_RESNET_PARTS = {"norm1": "residual.0", "conv1": "residual.2", "norm2": "residual.3", "conv2": "residual.6",
                 "conv_shortcut": "shortcut"}
_MIDDLE = {"resnets.0": "middle.0", "attentions.0": "middle.1", "resnets.1": "middle.2"}


def _resnet_suffix(rest: str) -> str:
    part, _, tail = rest.partition(".")
    return f"{_RESNET_PARTS[part]}.{tail}" if part in _RESNET_PARTS else rest



def diffusers_to_original(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Renames diffusers' ``AutoencoderKLWan`` keys to the original Wan layout (2.1 and 2.2)."""
    residual = any(k.startswith("decoder.up_blocks.0.upsampler.") for k in sd)
    blocks = count_indices(sd, r"decoder\.up_blocks\.0\.resnets\.(\d+)\.") - 1  # decoder stages have one extra
    out = {}
    for key, value in sd.items():
        out[_rename(key, residual, blocks)] = value
    return out


def _rename(key: str, residual: bool, blocks: int) -> str:
    simple = {"quant_conv.": "conv1.", "post_quant_conv.": "conv2."}
    for old, new in simple.items():
        if key.startswith(old):
            return new + key[len(old) :]
    side, _, rest = key.partition(".")
    for old, new in {"conv_in.": "conv1.", "norm_out.": "head.0.", "conv_out.": "head.2."}.items():
        if rest.startswith(old):
            return f"{side}.{new}{rest[len(old):]}"
    if rest.startswith("mid_block."):
        group, index, tail = rest[len("mid_block.") :].split(".", 2)
        return f"{side}.{_MIDDLE[f'{group}.{index}']}.{_resnet_suffix(tail)}"
    m = re.match(r"(down_blocks|up_blocks)\.(\d+)\.(.*)", rest)
    if not m:
        return key
    stage, tail = int(m.group(2)), m.group(3)
    if side == "encoder" and not residual:  # 2.1 encoder is already flat
        return f"encoder.downsamples.{stage}.{_resnet_suffix(tail)}"
    r = re.match(r"resnets\.(\d+)\.(.*)", tail)
    if r:
        index, inner = int(r.group(1)), _resnet_suffix(r.group(2))
    else:  # the stage's resampler, which follows its residual blocks
        inner = re.sub(r"^(upsamplers\.0|upsampler|downsampler)\.", "", tail)
        index = blocks + (1 if side == "decoder" else 0)
    if side == "encoder":
        return f"encoder.downsamples.{stage}.downsamples.{index}.{inner}"
    if residual:
        return f"decoder.upsamples.{stage}.upsamples.{index}.{inner}"
    return f"decoder.upsamples.{stage * (blocks + 2) + index}.{inner}"


# --- widths and depths from the tensors ---------------------------------------------------------------------


def infer_wan_config(sd: Mapping[str, torch.Tensor]) -> WanConfig:
    """Reads a Wan VAE's configuration from its original-layout state dict."""
    try:
        z_dim = sd["conv2.weight"].shape[0]
        dim = sd["encoder.conv1.weight"].shape[0]
        decoder_dim = sd["decoder.head.2.weight"].shape[1]
    except KeyError as err:
        raise FrameStreamError(f"the Wan VAE checkpoint is incomplete: missing {err}") from None
    residual = "decoder.upsamples.0.upsamples.0.residual.2.weight" in sd
    stages = _encoder_stages(sd, residual)
    blocks = sum(1 for kind in stages[0] if kind[0] == "res")
    mult = tuple([width for kind, width in stage if kind == "res"][-1] // dim for stage in stages)
    temporal = tuple(any(kind == ("down", True) for kind in stage) for stage in stages[:-1])
    return WanConfig("2.2" if residual else "2.1", z_dim, dim, decoder_dim, mult, blocks, temporal)


def _encoder_stages(sd: Mapping[str, torch.Tensor], residual: bool) -> list[list[tuple]]:
    """Per encoder stage, its layers as ("res", out_width) or ("down", is_temporal)."""

    def layer(prefix: str):
        if f"{prefix}.residual.2.weight" in sd:
            return ("res", sd[f"{prefix}.residual.2.weight"].shape[0])
        if f"{prefix}.resample.1.weight" in sd:
            return ("down", f"{prefix}.time_conv.weight" in sd)
        return None

    if residual:
        return [
            [layer(f"encoder.downsamples.{i}.downsamples.{j}") for j in range(count_indices(sd, rf"encoder\.downsamples\.{i}\.downsamples\.(\d+)\."))]
            for i in range(count_indices(sd, r"encoder\.downsamples\.(\d+)\."))
        ]
    stages, current = [], []
    for i in range(count_indices(sd, r"encoder\.downsamples\.(\d+)\.")):
        current.append(layer(f"encoder.downsamples.{i}"))
        if current[-1][0] == "down":
            stages.append(current)
            current = []
    return stages + [current]


def build_wan(sd: Mapping[str, torch.Tensor], source: str = "checkpoint", metadata=None) -> WanVAE:
    """A :class:`WanVAE` holding exactly the given tensors (no copy), in either layout."""
    sd = diffusers_to_original(sd) if is_diffusers_layout(sd) else dict(sd)
    cfg = infer_wan_config(sd)
    return assemble(lambda: WanVAE(cfg), sd, source)
