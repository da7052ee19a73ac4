"""Kandinsky 6 video VAE checkpoints: the release's layout (``kandinskylab/kvae-1``), which diffusers keeps.

Its keys look like the LDM image VAEs' and CogVideoX's original ones
(``decoder.mid.block_1``, ``nin_shortcut``) but every norm is wrapped once more
(``norm1.norm_layer.weight`` in the encoder, ``norm1.norm_layer.norm_layer.weight``
in the decoder's spatial norms) and the samplers are pixel-shuffle blocks
(``downsample.spatial_conv``, ``upsample.linear``). Widths and depths are read
from shapes, so reduced test models load as real ones do; the GroupNorm group
count (32) cannot be read and is assumed.
"""

from __future__ import annotations

from typing import Mapping

import torch

from ...errors import FrameStreamError
from ..assembly import assemble, count_indices
from .model import KandinskyConfig, KandinskyVAE


def is_kandinsky(sd: Mapping[str, torch.Tensor]) -> bool:
    """Spatial norms wrapping a GroupNorm twice and pixel-shuffle upsamplers: no other family has both."""
    return "decoder.mid.block_1.norm1.norm_layer.norm_layer.weight" in sd and \
        "decoder.up.1.upsample.spatial_conv.weight" in sd


def infer_config(sd: Mapping[str, torch.Tensor]) -> KandinskyConfig:
    """The configuration of a state dict, from its shapes."""
    width = sd["encoder.conv_in.conv.weight"].shape[0]
    levels = count_indices(sd, r"encoder\.down\.(\d+)\.")
    widths = [sd[f"encoder.down.{i}.block.0.conv1.conv.weight"].shape[0] for i in range(levels)]
    if any(w % width for w in widths):
        raise FrameStreamError(f"its level widths {widths} are not multiples of its first conv's {width}")
    temporal = sum(f"encoder.down.{i}.downsample.temporal_conv.conv.weight" in sd for i in range(levels))
    return KandinskyConfig(width=width, multipliers=tuple(w // width for w in widths),
                           layers=count_indices(sd, r"encoder\.down\.0\.block\.(\d+)\."),
                           latent_channels=sd["decoder.conv_in.conv.weight"].shape[1], temporal_compression=2**temporal,
                           in_channels=sd["encoder.conv_in.conv.weight"].shape[1],
                           out_channels=sd["decoder.conv_out.conv.weight"].shape[0])


def build_kandinsky(sd: Mapping[str, torch.Tensor], source: str = "checkpoint", metadata=None) -> KandinskyVAE:
    """A :class:`KandinskyVAE` holding exactly the given tensors (no copy)."""
    try:
        cfg = infer_config(sd)
    except KeyError as err:
        raise FrameStreamError(f"{source} looks like a Kandinsky 6 video VAE but is incomplete: missing {err}") from None
    except FrameStreamError as err:
        raise FrameStreamError(f"{source} looks like a Kandinsky 6 video VAE but {err}") from None
    return assemble(lambda: KandinskyVAE(cfg), sd, source)
