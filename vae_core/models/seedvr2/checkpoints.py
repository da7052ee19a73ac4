"""SeedVR2 VAE checkpoints: the release's layout (``seedvr2_ema_vae*.safetensors``), which the host reads as is.

The host builds the release's widths whatever the file holds; here widths, depths and which resamplers work in
time are read from shapes, so reduced test models load as real ones do. Files written before diffusers renamed
its attention layers (``query`` / ``key`` / ``value`` / ``proj_attn``, which the release's own loader still
converts) are renamed on the way in. The norms' group count (32) and the latent scaling (0.9152) cannot be
read and are the release's.
"""

from __future__ import annotations

import re
from typing import Mapping

import torch

from ...errors import FrameStreamError
from ..assembly import assemble, count_indices
from .layers import GROUPS
from .model import SeedVR2Config, SeedVR2VAE

_OLD_ATTENTION = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}


def is_seedvr2(sd: Mapping[str, torch.Tensor]) -> bool:
    """Pixel-unfolding upsamplers (``upscale_conv``) in an SD-style decoder with unnested 3D convs: the host's
    own test (``decoder.up_blocks.2.upsamplers.0.upscale_conv``), for any number of blocks."""
    weight = sd.get("decoder.conv_in.weight")
    return weight is not None and weight.ndim == 5 and "decoder.up_blocks.0.upsamplers.0.upscale_conv.weight" in sd


def renamed(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tensors under today's attention names."""
    out = {}
    for key, value in sd.items():
        old = re.match(r"(.*\.attentions\.0\.)(query|key|value|proj_attn)\.(weight|bias)$", key)
        out[f"{old.group(1)}{_OLD_ATTENTION[old.group(2)]}.{old.group(3)}" if old else key] = value
    return out


def infer_config(sd: Mapping[str, torch.Tensor]) -> SeedVR2Config:
    """The configuration of a state dict, from its shapes."""
    blocks = count_indices(sd, r"encoder\.down_blocks\.(\d+)\.")
    widths = tuple(sd[f"encoder.down_blocks.{i}.resnets.0.conv1.weight"].shape[0] for i in range(blocks))
    if any(width % GROUPS for width in widths):
        raise FrameStreamError(f"its widths {widths} are not multiples of the {GROUPS} groups of its norms")
    mirrored = tuple(sd[f"decoder.up_blocks.{i}.resnets.0.conv1.weight"].shape[0] for i in reversed(range(blocks)))
    if mirrored != widths:
        raise FrameStreamError(f"its decoder's widths {mirrored[::-1]} are not its encoder's {widths} reversed")
    down = tuple(sd[f"encoder.down_blocks.{i}.downsamplers.0.conv.weight"].shape[2] > 1 for i in range(blocks - 1))
    up = []
    for i in range(blocks - 1):
        unfolded = sd[f"decoder.up_blocks.{i}.upsamplers.0.upscale_conv.weight"].shape[0]
        width = sd[f"decoder.up_blocks.{i}.upsamplers.0.conv.weight"].shape[0]
        if unfolded not in (4 * width, 8 * width):
            raise FrameStreamError(f"up block {i} unfolds {unfolded} channels into {width}; SeedVR2's unfold 2x2 "
                                   "pixels, and 2 frames or 1")
        up.append(unfolded == 8 * width)
    if sum(up) != sum(down):
        raise FrameStreamError(f"its encoder halves time {sum(down)} times and its decoder doubles it {sum(up)} times")
    return SeedVR2Config(widths=widths, layers=count_indices(sd, r"encoder\.down_blocks\.0\.resnets\.(\d+)\."),
                         latent_channels=sd["decoder.conv_in.weight"].shape[1], temporal_down=down,
                         temporal_up=tuple(up), in_channels=sd["encoder.conv_in.weight"].shape[1],
                         out_channels=sd["decoder.conv_out.weight"].shape[0])


def build_seedvr2(sd: Mapping[str, torch.Tensor], source: str = "checkpoint", metadata=None) -> SeedVR2VAE:
    """A :class:`SeedVR2VAE` holding exactly the given tensors (no copy)."""
    sd = renamed(sd)
    try:
        cfg = infer_config(sd)
    except KeyError as err:
        raise FrameStreamError(f"{source} looks like a SeedVR2 VAE but is incomplete: missing {err}") from None
    except FrameStreamError as err:
        raise FrameStreamError(f"{source} looks like a SeedVR2 VAE but {err}") from None
    return assemble(lambda: SeedVR2VAE(cfg), sd, source)
