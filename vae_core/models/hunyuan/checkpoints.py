"""HunyuanVideo VAE checkpoints: diffusers' layout (also Tencent's) and the host's, config from shapes.

The host (ComfyUI) keeps this VAE in the Stable Diffusion layout: ``down.i.block.j``,
``up`` blocks numbered from the finest, ``mid.block_1`` / ``mid.attn_1`` with the
attention's linear layers stored as 1x1x1 convs. Its own loader converts diffusers
files to that layout on the way in; we convert the other way, so one model
class serves both.
"""

from __future__ import annotations

from typing import Mapping

import torch

from ..assembly import assemble, count_indices
from ..sd_layout import sd_layout_to_diffusers
from ...errors import FrameStreamError
from .model import HunyuanConfig, HunyuanVideoVAE



def is_diffusers_layout(sd: Mapping[str, torch.Tensor]) -> bool:
    """Causal 3D convs (``conv_in.conv``) and GroupNorm resnets with plain weights: image VAEs have neither
    the 3D convs; LTX's resnets have no norm weights; CogVideoX's norms are spatial (``norm_layer``)."""
    return "decoder.conv_in.conv.weight" in sd and "decoder.mid_block.resnets.0.norm1.weight" in sd


def is_host_layout(sd: Mapping[str, torch.Tensor]) -> bool:
    """The SD layout with 3D convs: only HunyuanVideo's VAE has it (image VAEs' convs are 2D)."""
    weight = sd.get("decoder.conv_in.conv.weight")
    return weight is not None and weight.ndim == 5 and "decoder.mid.block_1.norm1.weight" in sd


def recognises(sd: Mapping[str, torch.Tensor]) -> bool:
    return is_host_layout(sd) or is_diffusers_layout(sd)


def infer_hunyuan_config(sd: Mapping[str, torch.Tensor]) -> HunyuanConfig:
    blocks = count_indices(sd, r"decoder\.up_blocks\.(\d+)\.")
    widths = [sd[f"decoder.up_blocks.{i}.resnets.0.conv1.conv.weight"].shape[0] for i in range(blocks)][::-1]
    layers = count_indices(sd, r"decoder\.up_blocks\.0\.resnets\.(\d+)\.")
    return HunyuanConfig(latent_channels=sd["decoder.conv_in.conv.weight"].shape[1], widths=tuple(widths),
                         layers_per_block=layers - 1,
                         mid_attention="decoder.mid_block.attentions.0.to_q.weight" in sd)


def build_hunyuan(sd: Mapping[str, torch.Tensor], source: str = "checkpoint", metadata=None) -> HunyuanVideoVAE:
    """A :class:`HunyuanVideoVAE` holding exactly the given tensors (no copy), in either layout."""
    sd = sd_layout_to_diffusers(sd) if is_host_layout(sd) else dict(sd)
    try:
        cfg = infer_hunyuan_config(sd)
    except (KeyError, ValueError) as err:
        raise FrameStreamError(f"{source} looks like a HunyuanVideo VAE but is incomplete: missing {err}") from None
    if len(cfg.widths) != 4:
        raise FrameStreamError(f"{source} is a HunyuanVideo-style VAE with {len(cfg.widths)} levels; FrameStream "
                               "supports the 4-level 4x8x8 VAE of HunyuanVideo")
    return assemble(lambda: HunyuanVideoVAE(cfg), sd, source)
