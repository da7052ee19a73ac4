"""Image VAE checkpoints: diffusers' ``AutoencoderKL`` / ``AutoencoderKLFlux2`` layout, the original (LDM/SGM)
layout the host loads, and BFL's Flux 2 layout; the structure is read off tensor shapes.

The original layout (``encoder.down.0.block.0``, ``decoder.up`` numbered from the
finest, ``mid.attn_1.q`` as 1x1 convs, ``nin_shortcut``) is the one HunyuanVideo's
host layout borrowed, so its renaming is shared; only the attention's 2D conv
weights need flattening here. BFL's Flux 2 release keeps the 1x1 quant convs
inside the encoder and decoder (``encoder.quant_conv``), which the host also
moves out.
"""

from __future__ import annotations

from typing import Mapping

import torch

from ..assembly import assemble, count_indices
from ..sd_layout import sd_layout_to_diffusers
from ...errors import FrameStreamError
from .blocks import AutoencoderConfig
from .model import ImageVAE

StateDict = Mapping[str, torch.Tensor]

# the temporal parts of Stable Video Diffusion's decoder, whose spatial parts have these very names
_TEMPORAL = ("time_stack", "time_mixer", "mix_factor", "time_conv_out")
_BFL_QUANT = {"encoder.quant_conv.": "quant_conv.", "decoder.post_quant_conv.": "post_quant_conv."}


def _is_2d(sd: StateDict) -> bool:
    """2D convs and nothing temporal: HunyuanVideo (1.0 and 1.5) and CogVideoX have 3D convs, SVD time layers."""
    weight = sd.get("decoder.conv_in.weight")
    return weight is not None and weight.ndim == 4 and not any(part in key for key in sd for part in _TEMPORAL)


def is_diffusers_layout(sd: StateDict) -> bool:
    return "decoder.mid_block.resnets.0.norm1.weight" in sd and _is_2d(sd)


def is_original_layout(sd: StateDict) -> bool:
    return "decoder.mid.block_1.norm1.weight" in sd and _is_2d(sd)


def recognises(sd: StateDict) -> bool:
    return is_diffusers_layout(sd) or is_original_layout(sd)


def original_to_diffusers(sd: StateDict) -> dict[str, torch.Tensor]:
    """The original (and BFL Flux 2) layout under diffusers' names, attention weights as linear layers."""
    moved = {}
    for key, value in sd.items():
        prefix = next((p for p in _BFL_QUANT if key.startswith(p)), None)
        moved[_BFL_QUANT[prefix] + key[len(prefix):] if prefix else key] = value
    out = sd_layout_to_diffusers(moved)
    for key, value in out.items():
        if ".attentions.0.to_" in key and value.ndim == 4:
            out[key] = value.flatten(1)
    return out


def infer_config(sd: StateDict) -> AutoencoderConfig:
    """Widths, depth and channels from diffusers-layout shapes (reduced test models load like the releases)."""
    levels = count_indices(sd, r"encoder\.down_blocks\.(\d+)\.")
    widths = tuple(sd[f"encoder.down_blocks.{i}.resnets.0.conv1.weight"].shape[0] for i in range(levels))
    up = count_indices(sd, r"decoder\.up_blocks\.(\d+)\.")
    decoder_widths = tuple(sd[f"decoder.up_blocks.{i}.resnets.0.conv1.weight"].shape[0] for i in range(up))[::-1]
    latent_channels = sd["decoder.conv_in.weight"].shape[1]
    return AutoencoderConfig(
        latent_channels=latent_channels, widths=widths,
        decoder_widths=decoder_widths if decoder_widths != widths else None,
        layers_per_block=count_indices(sd, r"encoder\.down_blocks\.0\.resnets\.(\d+)\."),
        in_channels=sd["encoder.conv_in.weight"].shape[1], out_channels=sd["decoder.conv_out.weight"].shape[0],
        double_z=sd["encoder.conv_out.weight"].shape[0] == 2 * latent_channels,
        mid_attention="decoder.mid_block.attentions.0.to_q.weight" in sd)


def build_image_vae(sd: StateDict, source: str = "checkpoint", metadata=None) -> ImageVAE:
    """An :class:`ImageVAE` holding exactly the given tensors (no copy), in any of the layouts."""
    sd = dict(sd) if is_diffusers_layout(sd) else original_to_diffusers(sd)
    try:
        cfg = infer_config(sd)
    except (KeyError, ValueError) as err:
        raise FrameStreamError(f"{source} looks like an image VAE but is incomplete: missing {err}") from None
    if not cfg.widths or len(cfg.decoder_block_widths) != len(cfg.widths):
        raise FrameStreamError(f"{source} looks like an image VAE but its encoder or decoder blocks are missing or "
                               "do not pair up")
    if any(width % cfg.groups for width in cfg.widths + cfg.decoder_block_widths):
        raise FrameStreamError(f"{source} is an image VAE with block widths {cfg.widths}; these VAEs (and the host) "
                               f"normalise in {cfg.groups} groups, which needs widths that are multiples of {cfg.groups}")
    if cfg.in_channels != 3 or cfg.out_channels != 3:
        raise FrameStreamError(f"{source} is an image VAE for {cfg.in_channels}-channel images; FrameStream decodes "
                               "RGB frames (3 channels)")
    return assemble(lambda: ImageVAE(cfg, quant_convs="quant_conv.weight" in sd,
                                     latent_norm="bn.running_mean" in sd), sd, source)
