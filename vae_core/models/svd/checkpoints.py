"""Stable Video Diffusion VAE checkpoints: diffusers' ``AutoencoderKLTemporalDecoder`` layout and the original
(Stability's, which the host loads: ``first_stage_model.`` of an SVD checkpoint, stripped by the registry);
the structure is read off tensor shapes.

The original layout is the SD layout (``decoder.up`` numbered from the finest,
``mid.block_1``, ``mid.attn_1.q`` as 1x1 convs, ``nin_shortcut``), renamed as
for the image VAEs, plus the temporal parts of each ``VideoResBlock``: its 2D
resnet's tensors sit on the block itself, the temporal resnet is
``time_stack`` (``in_layers.0`` / ``.2`` and ``out_layers.0`` / ``.3``: norm and
conv, twice), the mix factor is the block's ``mix_factor``, and the last
temporal conv is ``conv_out.time_mix_conv``. It has no ``quant_conv``.

Image VAEs share every other key, so the temporal parts are what tell them
apart: ``mix_factor`` is on every SVD resnet and nowhere else.
"""

from __future__ import annotations

import re
from typing import Mapping

import torch

from ..assembly import assemble, count_indices
from ..image.blocks import AutoencoderConfig
from ..image.checkpoints import original_to_diffusers as sd_layout_to_diffusers
from ...errors import FrameStreamError
from .model import SVDVAE

StateDict = Mapping[str, torch.Tensor]

_VIDEO_RESNET = re.compile(r"(decoder\.(?:mid_block|up_blocks\.\d+)\.resnets\.\d+)\.(.+)")
_TIME_STACK = {"in_layers.0": "norm1", "in_layers.2": "conv1", "out_layers.0": "norm2", "out_layers.3": "conv2"}


def is_diffusers_layout(sd: StateDict) -> bool:
    return "decoder.mid_block.resnets.0.time_mixer.mix_factor" in sd


def is_original_layout(sd: StateDict) -> bool:
    return "decoder.mid.block_1.mix_factor" in sd  # the very key the host tells this VAE by


def recognises(sd: StateDict) -> bool:
    return is_diffusers_layout(sd) or is_original_layout(sd)


def _video_resnet_part(part: str) -> str:
    """A ``VideoResBlock``'s own name for one of its tensors -> the name under diffusers' block."""
    if part == "mix_factor":
        return "time_mixer.mix_factor"
    if part.startswith("time_stack."):
        layer, _, tensor = part[len("time_stack."):].rpartition(".")
        # an unknown layer keeps its name, so the assembly names it as unexpected
        return f"temporal_res_block.{_TIME_STACK[layer]}.{tensor}" if layer in _TIME_STACK else part
    return f"spatial_res_block.{part}"


def original_to_diffusers(sd: StateDict) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in sd_layout_to_diffusers(sd).items():
        resnet = _VIDEO_RESNET.match(key)
        if resnet:
            key = f"{resnet.group(1)}.{_video_resnet_part(resnet.group(2))}"
        elif key.startswith("decoder.conv_out.time_mix_conv."):
            key = "decoder.time_conv_out." + key[len("decoder.conv_out.time_mix_conv."):]
        out[key] = value
    return out


def infer_config(sd: StateDict) -> tuple[AutoencoderConfig, int]:
    """The encoder's shape and the decoder mid block's resnet count, from diffusers-layout shapes."""
    levels = count_indices(sd, r"encoder\.down_blocks\.(\d+)\.")
    widths = tuple(sd[f"encoder.down_blocks.{i}.resnets.0.conv1.weight"].shape[0] for i in range(levels))
    up = count_indices(sd, r"decoder\.up_blocks\.(\d+)\.")
    decoder_widths = tuple(sd[f"decoder.up_blocks.{i}.resnets.0.spatial_res_block.conv1.weight"].shape[0]
                           for i in range(up))[::-1]
    if decoder_widths != widths:
        raise ValueError(f"decoder widths {decoder_widths} differ from the encoder's {widths}")
    latent_channels = sd["decoder.conv_in.weight"].shape[1]
    cfg = AutoencoderConfig(
        latent_channels=latent_channels, widths=widths,
        layers_per_block=count_indices(sd, r"encoder\.down_blocks\.0\.resnets\.(\d+)\."),
        in_channels=sd["encoder.conv_in.weight"].shape[1], out_channels=sd["decoder.conv_out.weight"].shape[0],
        mid_attention="encoder.mid_block.attentions.0.to_q.weight" in sd)
    return cfg, count_indices(sd, r"decoder\.mid_block\.resnets\.(\d+)\.")


def build_svd(sd: StateDict, source: str = "checkpoint", metadata=None) -> SVDVAE:
    """An :class:`SVDVAE` holding exactly the given tensors (no copy), in either layout."""
    sd = dict(sd) if is_diffusers_layout(sd) else original_to_diffusers(sd)
    try:
        cfg, mid_layers = infer_config(sd)
    except (KeyError, ValueError) as err:
        raise FrameStreamError(f"{source} looks like a Stable Video Diffusion VAE but is incomplete or "
                               f"inconsistent: {err}") from None
    if not cfg.widths or mid_layers == 0:
        raise FrameStreamError(f"{source} looks like a Stable Video Diffusion VAE but its encoder or decoder blocks "
                               "are missing")
    if cfg.in_channels != 3 or cfg.out_channels != 3:
        raise FrameStreamError(f"{source} is a Stable Video Diffusion-style VAE for {cfg.in_channels}-channel "
                               "images; FrameStream decodes RGB frames (3 channels)")
    return assemble(lambda: SVDVAE(cfg, mid_layers, quant_conv="quant_conv.weight" in sd), sd, source)
