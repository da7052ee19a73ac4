"""Stable Video Diffusion's temporal decoder, under diffusers' module names (``AutoencoderKLTemporalDecoder``).

The decoder is the SD image decoder with time added: every resnet is a 2D
resnet per frame followed by a temporal resnet whose two convs are (3, 1, 1)
with zeros past both ends of the clip, the two mixed by a learned factor; the
mid block's attention stays per frame; a last (3, 1, 1) conv follows
``conv_out``. Tensors are ``[B, C, T, H, W]``; the 2D parts (the image VAEs'
own blocks) run on every frame through :func:`streaming.frames.per_frame`.

Two kinds of GroupNorm, and why they differ here:

* the temporal resnets' norms see a 5-D tensor, so they pool over the whole
  clip (and the frame): :class:`streaming.group_norm.GroupNorm`, whose clip-wide
  statistics the engine gathers before the pass that writes;
* the 2D norms (spatial resnets, attention, ``conv_norm_out``, the encoder)
  pool over one frame. They must not join the clip's totals, so they are plain
  ``nn.GroupNorm`` (:func:`frame_norms`): exact untiled; under spatial tiles
  each tile normalises with its own statistics, an approximation as in
  diffusers' own tiled decode.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...streaming.conv import CausalConv3d
from ...streaming.frames import per_frame
from ...streaming.group_norm import GroupNorm
from ..image.blocks import EPS, AutoencoderConfig, MidAttention, ResnetBlock2D, Upsample2D

TEMPORAL_EPS = 1e-5  # the temporal resnets' norms (diffusers' ``temporal_eps``, the host's default GroupNorm)


def frame_norms(module: nn.Module) -> nn.Module:
    """``module`` (an image block) with its pooling GroupNorms replaced by plain ones, same names and shapes.

    The image blocks pool their per-frame statistics over the tiles of a step
    (``NormStatistics("chunk")``); this model's pooling is over the clip, which
    a norm over one frame must never join (see the module docstring).
    """
    for parent in list(module.modules()):
        for name, child in parent.named_children():
            if isinstance(child, GroupNorm):
                setattr(parent, name, nn.GroupNorm(child.num_groups, child.num_channels, child.eps))
    return module


def temporal_conv(channels: int) -> CausalConv3d:
    """A (3, 1, 1) conv looking one frame back and one ahead, zeros past the clip's ends (diffusers' padding 1)."""
    return CausalConv3d(channels, channels, (3, 1, 1), padding=(1, 0, 0), causal=False)


def temporal_reach(*modules: nn.Module) -> int:
    """Frames each side that ``modules``, run one after the other, see: each temporal conv adds its half-width.
    Residual and mixed branches add nothing beyond their longest path, which is this sum for this decoder."""
    return sum((conv.kernel_size[0] - 1) // 2 for module in modules for conv in module.modules()
               if isinstance(conv, CausalConv3d))


class TemporalResnetBlock(nn.Module):
    """GroupNorm over (channels, time, space), SiLU, (3, 1, 1) conv, twice, plus the input (widths never change)."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.norm1 = GroupNorm(groups, channels, eps=TEMPORAL_EPS)
        self.conv1 = temporal_conv(channels)
        self.norm2 = GroupNorm(groups, channels, eps=TEMPORAL_EPS)
        self.conv2 = temporal_conv(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        return x + self.conv2(F.silu(self.norm2(h)))


class TimeMixer(nn.Module):
    """diffusers' ``AlphaBlender`` as this decoder builds it (strategy "learned", spatial and temporal switched):
    ``spatial + sigmoid(mix_factor) * (temporal - spatial)``; the host's ``VideoResBlock`` mixes the same way.

    diffusers' ``decode`` also passes an ``image_only_indicator`` (all zeros for video). Only the
    "learned_with_images" strategy reads its values, which no block of this decoder uses; the blocks take
    just its length, the frame count, which the ``[B, C, T, H, W]`` layout carries here.
    """

    def __init__(self) -> None:
        super().__init__()
        self.mix_factor = nn.Parameter(torch.zeros(1))

    def forward(self, spatial: torch.Tensor, temporal: torch.Tensor) -> torch.Tensor:
        return torch.lerp(spatial, temporal, torch.sigmoid(self.mix_factor).to(spatial.dtype))


class SpatioTemporalResBlock(nn.Module):
    """A 2D resnet on every frame, then a temporal resnet on its output, the two mixed by :class:`TimeMixer`."""

    def __init__(self, in_channels: int, out_channels: int, groups: int) -> None:
        super().__init__()
        self.spatial_res_block = frame_norms(ResnetBlock2D(in_channels, out_channels, groups, eps=EPS))
        self.temporal_res_block = TemporalResnetBlock(out_channels, groups)
        self.time_mixer = TimeMixer()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spatial = per_frame(self.spatial_res_block, x)
        return self.time_mixer(spatial, self.temporal_res_block(spatial))


class MidBlockTemporalDecoder(nn.Module):
    """The first resnet, then (per frame) the attention and the second resnet.

    As in diffusers, resnets and attention pair up from the second resnet on and
    there is one attention, so a third resnet (``layers_per_block`` 3 or more)
    is built but never run, and with a single resnet the attention is not run.
    Every release has two.
    """

    def __init__(self, channels: int, layers: int, groups: int) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(SpatioTemporalResBlock(channels, channels, groups) for _ in range(layers))
        self.attentions = nn.ModuleList([frame_norms(MidAttention(channels, groups))])

    @property
    def running(self) -> list[nn.Module]:
        """The resnets that run, in order."""
        return list(self.resnets[: 1 + len(self.attentions)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.resnets[0](x)
        for attention, resnet in zip(self.attentions, self.resnets[1:]):
            x = resnet(per_frame(attention, x))
        return x


class UpBlockTemporalDecoder(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, layers: int, groups: int, upsample: bool) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(SpatioTemporalResBlock(in_channels if i == 0 else out_channels, out_channels,
                                                            groups) for i in range(layers))
        self.upsamplers = nn.ModuleList([Upsample2D(out_channels)]) if upsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for resnet in self.resnets:
            x = resnet(x)
        return per_frame(self.upsamplers[0], x) if self.upsamplers is not None else x


class TemporalDecoder(nn.Module):
    """Latents ``[B, latent_channels, T, h, w]`` -> pixels ``[B, out_channels, T, H, W]``, split where the engine
    splits it: :meth:`shared_part` (``conv_in`` and the mid block, at latent resolution: the attention sees the
    whole frame) and :meth:`tile_part` (the up blocks and the output convs)."""

    def __init__(self, cfg: AutoencoderConfig, mid_layers: int) -> None:
        super().__init__()
        widths = cfg.widths[::-1]  # coarsest first, as the decoder runs
        self.conv_in = nn.Conv2d(cfg.latent_channels, widths[0], 3, padding=1)
        self.mid_block = MidBlockTemporalDecoder(widths[0], mid_layers, cfg.groups)
        self.up_blocks = nn.ModuleList(
            UpBlockTemporalDecoder(widths[max(i - 1, 0)], width, cfg.layers_per_block + 1, cfg.groups,
                                   upsample=i < len(widths) - 1)
            for i, width in enumerate(widths))
        self.conv_norm_out = nn.GroupNorm(cfg.groups, widths[-1], eps=EPS)
        self.conv_out = nn.Conv2d(widths[-1], cfg.out_channels, 3, padding=1)
        self.time_conv_out = temporal_conv(cfg.out_channels)

    def reach(self) -> tuple[int, int]:
        """Frames each side that :meth:`shared_part` and :meth:`tile_part` see (the frame rate never changes)."""
        return temporal_reach(*self.mid_block.running), temporal_reach(self.up_blocks, self.time_conv_out)

    def shared_part(self, z: torch.Tensor) -> torch.Tensor:
        return self.mid_block(per_frame(self.conv_in, z))

    def tile_part(self, h: torch.Tensor) -> torch.Tensor:
        for block in self.up_blocks:
            h = block(h)
        return self.time_conv_out(per_frame(self._frame_out, h))

    def _frame_out(self, h: torch.Tensor) -> torch.Tensor:
        return self.conv_out(F.silu(self.conv_norm_out(h)))
