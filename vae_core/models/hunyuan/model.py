"""The HunyuanVideo VAE: causal 3D, 4x8x8 compression, 16 latent channels, described layer by layer.

Module names follow diffusers' ``AutoencoderKLHunyuanVideo`` (the same names as
Tencent's release), so those checkpoints load as they are; :mod:`hunyuan_checkpoints`
renames the host's layout.

Why it streams the way it does:

* Every conv is causal: it pads its front with copies of the first frame (and
  its sides by replicating edge pixels), so it streams through
  :func:`stream.sliding_windows` like Wan's.
* The temporal upsamplers treat a clip's first frame apart (it is only
  upscaled in space): :func:`stream.first_call` tells them which chunk holds it.
* The mid block's attention is causal across frames: a frame attends to every
  position of itself and of all earlier frames. It keeps the keys and values of
  the frames already decoded as its carry, at latent resolution, in one buffer
  that grows with the clip (:func:`stream.growing_carry`: 2 x 512 values per
  latent pixel and frame).
* Every norm is a GroupNorm over channels, time *and* space, which no chunked
  decode can reproduce locally. The engine gathers the statistics over the
  whole clip in a first pass and applies them in a second (:mod:`group_norm`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...streaming.group_norm import GroupNorm
from ...streaming.model import CausalVideoVAE
from ...streaming.traits import NormStatistics
from ...streaming.conv import NestedCausalConv3d
from ...streaming.state import first_call, growing_carry


@dataclass(frozen=True)
class HunyuanConfig:
    latent_channels: int = 16
    widths: tuple[int, ...] = (128, 256, 512, 512)  # finest first, as in diffusers' block_out_channels
    layers_per_block: int = 2
    groups: int = 32  # not in the weights; every release uses 32
    mid_attention: bool = True


def hunyuan_conv(in_channels: int, out_channels: int, kernel: int = 3, stride=1) -> NestedCausalConv3d:
    """HunyuanVideo's causal conv: time padded in front with copies of the first frame, space by replicating edges."""
    return NestedCausalConv3d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2,
                              time_fill="replicate", spatial_mode="replicate")


class ResnetBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, groups: int) -> None:
        super().__init__()
        self.norm1 = GroupNorm(groups, in_channels, eps=1e-6)
        self.conv1 = hunyuan_conv(in_channels, out_channels)
        self.norm2 = GroupNorm(groups, out_channels, eps=1e-6)
        self.conv2 = hunyuan_conv(out_channels, out_channels)
        self.conv_shortcut = hunyuan_conv(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return h + (self.conv_shortcut(x) if self.conv_shortcut is not None else x)


class CausalFrameAttention(nn.Module):
    """Single-head attention over all positions of this frame and every earlier one (diffusers' mask)."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.group_norm = GroupNorm(groups, channels, eps=1e-6)
        self.to_q, self.to_k, self.to_v = (nn.Linear(channels, channels) for _ in range(3))
        self.to_out = nn.ModuleList([nn.Linear(channels, channels), nn.Dropout(0.0)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        tokens = self.group_norm(x).permute(0, 2, 3, 4, 1).flatten(1, 3)
        q = self.to_q(tokens)
        keys, values = self._with_earlier_frames(self.to_k(tokens), self.to_v(tokens), t)
        earlier = keys.shape[1] // (h * w) - t
        query_frame = torch.arange(t, device=x.device).repeat_interleave(h * w) + earlier
        key_frame = torch.arange(earlier + t, device=x.device).repeat_interleave(h * w)
        visible = key_frame[None, :] <= query_frame[:, None]
        out = F.scaled_dot_product_attention(q[:, None], keys[:, None], values[:, None], attn_mask=visible)[:, 0]
        out = self.to_out[0](out).unflatten(1, (t, h, w)).permute(0, 4, 1, 2, 3)
        return out + x

    def _with_earlier_frames(self, k: torch.Tensor, v: torch.Tensor, frames: int) -> tuple[torch.Tensor, torch.Tensor]:
        keys_values = growing_carry(self, torch.stack([k, v]), frames, dim=2)  # one carry, so the plan sees it
        return keys_values[0], keys_values[1]


class MidBlock(nn.Module):
    def __init__(self, channels: int, groups: int, attention: bool) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(ResnetBlock(channels, channels, groups) for _ in range(2))
        self.attentions = nn.ModuleList([CausalFrameAttention(channels, groups)] if attention else [])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.resnets[0](x)
        if len(self.attentions):
            x = self.attentions[0](x)
        return self.resnets[1](x)


class Downsampler(nn.Module):
    def __init__(self, channels: int, stride: tuple[int, int, int]) -> None:
        super().__init__()
        self.conv = hunyuan_conv(channels, channels, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsampler(nn.Module):
    """Nearest-neighbour upscaling then a causal conv; a clip's first frame is not doubled in time."""

    def __init__(self, channels: int, factor: tuple[int, int, int]) -> None:
        super().__init__()
        self.factor = factor
        self.conv = hunyuan_conv(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.factor[0] > 1 and first_call(self):
            first = F.interpolate(x[:, :, :1], scale_factor=(1, *self.factor[1:]), mode="nearest")
            rest = F.interpolate(x[:, :, 1:], scale_factor=self.factor, mode="nearest") if x.shape[2] > 1 else None
            x = first if rest is None else torch.cat([first, rest], dim=2)
        else:
            x = F.interpolate(x, scale_factor=self.factor, mode="nearest")
        return self.conv(x)


class Block(nn.Module):
    """A down or up block: resnets, then an optional resampler (diffusers' attribute names for each)."""

    def __init__(self, in_channels: int, out_channels: int, layers: int, groups: int,
                 downsample: tuple[int, int, int] | None = None, upsample: tuple[int, int, int] | None = None) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(ResnetBlock(in_channels if i == 0 else out_channels, out_channels, groups)
                                     for i in range(layers))
        if downsample is not None:
            self.downsamplers = nn.ModuleList([Downsampler(out_channels, downsample)])
        if upsample is not None:
            self.upsamplers = nn.ModuleList([Upsampler(out_channels, upsample)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for resnet in self.resnets:
            x = resnet(x)
        for resampler in (*getattr(self, "downsamplers", ()), *getattr(self, "upsamplers", ())):
            x = resampler(x)
        return x


def _resampling(index: int, blocks: int) -> tuple[int, int, int] | None:
    """diffusers' placement for 4x8x8: space in the first three blocks, time in the two before the last."""
    space = index < 3
    time = blocks - 3 <= index < blocks - 1
    if not (space or time):
        return None
    return (2 if time else 1, 2 if space else 1, 2 if space else 1)


class Encoder(nn.Module):
    def __init__(self, cfg: HunyuanConfig) -> None:
        super().__init__()
        widths, groups = cfg.widths, cfg.groups
        self.conv_in = hunyuan_conv(3, widths[0])
        self.down_blocks = nn.ModuleList(
            Block(widths[max(i - 1, 0)], width, cfg.layers_per_block, groups,
                  downsample=_resampling(i, len(widths)))
            for i, width in enumerate(widths))
        self.mid_block = MidBlock(widths[-1], groups, cfg.mid_attention)
        self.conv_norm_out = GroupNorm(groups, widths[-1], eps=1e-6)
        self.conv_out = hunyuan_conv(widths[-1], 2 * cfg.latent_channels)


class Decoder(nn.Module):
    def __init__(self, cfg: HunyuanConfig) -> None:
        super().__init__()
        widths, groups = cfg.widths[::-1], cfg.groups
        self.conv_in = hunyuan_conv(cfg.latent_channels, widths[0])
        self.mid_block = MidBlock(widths[0], groups, cfg.mid_attention)
        self.up_blocks = nn.ModuleList(
            Block(widths[max(i - 1, 0)], width, cfg.layers_per_block + 1, groups,
                  upsample=_resampling(i, len(widths)))
            for i, width in enumerate(widths))
        self.conv_norm_out = GroupNorm(groups, widths[-1], eps=1e-6)
        self.conv_out = hunyuan_conv(widths[-1], 3)


class HunyuanVideoVAE(CausalVideoVAE):
    family = "HunyuanVideo VAE"
    temporal_ratio = 4
    spatial_ratio = 8
    norms = NormStatistics("clip")

    def __init__(self, cfg: HunyuanConfig = HunyuanConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        self.latent_channels = cfg.latent_channels
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.quant_conv = nn.Conv3d(2 * cfg.latent_channels, 2 * cfg.latent_channels, 1)
        self.post_quant_conv = nn.Conv3d(cfg.latent_channels, cfg.latent_channels, 1)

    @property
    def finest_width(self) -> int:
        return self.cfg.widths[0]

    @property
    def encoder_finest_width(self) -> int:
        return self.cfg.widths[0]

    def decode_shared(self, z: torch.Tensor) -> torch.Tensor:
        """Up to the mid block's attention, which needs the whole frame."""
        return self.decoder.mid_block(self.decoder.conv_in(self.post_quant_conv(z)))

    def decode_tile(self, features: torch.Tensor) -> torch.Tensor:
        x = features
        for block in self.decoder.up_blocks:
            x = block(x)
        return self.decoder.conv_out(F.silu(self.decoder.conv_norm_out(x)))

    def encode_tile(self, x: torch.Tensor) -> torch.Tensor:
        h = self.encoder.conv_in(x)
        for block in self.encoder.down_blocks:
            h = block(h)
        return h

    def encode_shared(self, features: torch.Tensor) -> torch.Tensor:
        h = self.encoder.mid_block(features)
        h = self.encoder.conv_out(F.silu(self.encoder.conv_norm_out(h)))
        return self.quant_conv(h)[:, : self.latent_channels]
