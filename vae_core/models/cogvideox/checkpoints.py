"""CogVideoX VAE checkpoints: diffusers' layout (the releases' ``vae/`` folder) and the original SAT one.

The original layout (``3d-vae.pt``) names blocks as the LDM VAEs do
(``encoder.down.0.block.1``, ``decoder.mid.block_1``, ``nin_shortcut``) and
numbers the decoder's up blocks coarsest last; diffusers' conversion script
(``scripts/convert_cogvideox_to_diffusers.py``) renames them, and so does
:func:`original_to_diffusers`. Widths and depths are read from shapes, so
reduced test models load as real ones do; the GroupNorm group count (32 in
every release) cannot be read and is assumed.
"""

from __future__ import annotations

import re
from typing import Mapping

import torch

from .model import CogVideoXConfig, CogVideoXVAE
from ..assembly import assemble, count_indices
from ...errors import FrameStreamError

# diffusers' VAE_KEYS_RENAME_DICT, applied in this order
_RENAMES = [("block.", "resnets."), ("down.", "down_blocks."), ("downsample", "downsamplers.0"),
            ("upsample", "upsamplers.0"), ("nin_shortcut", "conv_shortcut")] + [
    (f"{side}.mid.block_{i + 1}", f"{side}.mid_block.resnets.{i}") for side in ("encoder", "decoder") for i in range(2)]


def is_diffusers_layout(sd: Mapping[str, torch.Tensor]) -> bool:
    """Spatial norms (``norm_layer``) tell CogVideoX from HunyuanVideo, whose diffusers keys are otherwise alike."""
    return "decoder.up_blocks.0.resnets.0.conv1.conv.weight" in sd and \
        "decoder.mid_block.resnets.0.norm1.norm_layer.weight" in sd


def is_original_layout(sd: Mapping[str, torch.Tensor]) -> bool:
    """The LDM-style names of the image VAEs, but with spatial norms and causal convs."""
    return "decoder.mid.block_1.norm1.norm_layer.weight" in sd and "decoder.conv_in.conv.weight" in sd


def is_cogvideox(sd: Mapping[str, torch.Tensor]) -> bool:
    return is_diffusers_layout(sd) or is_original_layout(sd)


def original_to_diffusers(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Renames the original keys as diffusers' script does (training-loss weights dropped), tensors untouched."""
    ups = count_indices(sd, r"decoder\.up\.(\d+)\.")
    out = {}
    for key, value in sd.items():
        if key.startswith("loss."):
            continue
        m = re.match(r"decoder\.up\.(\d+)\.(.*)", key)
        if m:  # the original counts up blocks from the coarsest last
            key = f"decoder.up_blocks.{ups - 1 - int(m.group(1))}.{m.group(2)}"
        for old, new in _RENAMES:
            key = key.replace(old, new)
        out[key] = value
    return out



def infer_cogvideox_config(sd: Mapping[str, torch.Tensor]) -> CogVideoXConfig:
    """The configuration of a diffusers-layout state dict, from its shapes."""
    blocks = count_indices(sd, r"encoder\.down_blocks\.(\d+)\.")
    widths = tuple(sd[f"encoder.down_blocks.{i}.resnets.0.conv1.conv.weight"].shape[0] for i in range(blocks))
    return CogVideoXConfig(
        in_channels=sd["encoder.conv_in.conv.weight"].shape[1],
        out_channels=sd["decoder.conv_out.conv.weight"].shape[0],
        latent_channels=sd["decoder.conv_in.conv.weight"].shape[1],
        widths=widths,
        layers_per_block=count_indices(sd, r"encoder\.down_blocks\.0\.resnets\.(\d+)\."),
        quant_conv="quant_conv.weight" in sd,
        post_quant_conv="post_quant_conv.weight" in sd,
    )


def build_cogvideox(sd: Mapping[str, torch.Tensor], source: str = "checkpoint", metadata=None) -> CogVideoXVAE:
    """A :class:`CogVideoXVAE` holding exactly the given tensors (no copy), in either layout."""
    sd = original_to_diffusers(sd) if is_original_layout(sd) else dict(sd)
    try:
        cfg = infer_cogvideox_config(sd)
    except KeyError as err:
        raise FrameStreamError(f"{source} looks like a CogVideoX VAE but is incomplete: missing {err}") from None
    if not cfg.widths:
        raise FrameStreamError(f"{source} looks like a CogVideoX VAE but has no encoder blocks")
    return assemble(lambda: CogVideoXVAE(cfg), sd, source)
