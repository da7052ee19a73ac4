"""The CogVideoX VAE (CogVideoX 2B/5B/1.5): 4x8x8 compression, 16 latent channels, described layer by layer.

Module names follow diffusers' ``AutoencoderKLCogVideoX``, so its checkpoints
load as they are (:mod:`cogvideox_checkpoints` renames the original layout).

Why it streams the way it does:

* Every temporal conv is causal and pads the front of the clip with copies of
  its first frame; diffusers carries the last frames between chunks in a
  ``conv_cache``, which :func:`stream.sliding_windows` reproduces.
* The rest is *not* defined over the whole clip: diffusers decodes two latent
  frames at a time (the first chunk takes the odd one over) and encodes eight
  pixel frames at a time, and each chunk's GroupNorms normalise over that chunk
  only, its temporal up/downsamplers and the decoder's spatial norm treat a
  chunk's odd first frame apart. The released weights were trained and are
  used that way, so that chunking is part of the model: :meth:`decode_steps`
  and :meth:`encode_steps` cut the clip exactly as diffusers does, and the
  samplers act on each step alone (``NormStatistics("chunk")``).
* The decoder's spatial norms are conditioned on the latent ``zq`` at every
  layer, so :meth:`CogVideoXVAE.decode_shared` hands the tiles the latent along
  with the features, both on the latent grid, where the tiler cuts them alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...streaming.group_norm import GroupNorm
from ...streaming.model import CausalVideoVAE
from ...streaming.traits import NormStatistics, Streaming
from ...streaming.conv import Conv3d, NestedCausalConv3d
from ...streaming.frames import per_frame


@dataclass(frozen=True)
class CogVideoXConfig:
    in_channels: int = 3
    out_channels: int = 3
    latent_channels: int = 16
    widths: tuple[int, ...] = (128, 256, 256, 512)  # diffusers' block_out_channels, encoder order
    layers_per_block: int = 3  # the decoder's up blocks have one more
    groups: int = 32  # every release; not readable from shapes
    temporal_compression: int = 4
    quant_conv: bool = False
    post_quant_conv: bool = False


def cog_conv(in_channels: int, out_channels: int, kernel: int = 3) -> NestedCausalConv3d:
    """diffusers' CogVideoXCausalConv3d: padded in front with copies of the first frame, then with carried frames."""
    return NestedCausalConv3d(in_channels, out_channels, kernel, padding=kernel // 2, time_fill="replicate")


def align_to(zq: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """``zq`` stretched (nearest) over ``f``'s frames and pixels; as diffusers, an odd chunk's first frame apart."""
    if f.shape[2] > 1 and f.shape[2] % 2 == 1:
        first = F.interpolate(zq[:, :, :1], size=(1, *f.shape[-2:]))
        rest = F.interpolate(zq[:, :, 1:], size=(f.shape[2] - 1, *f.shape[-2:]))
        return torch.cat([first, rest], dim=2)
    return F.interpolate(zq, size=f.shape[-3:])


class SpatialNorm(nn.Module):
    """GroupNorm whose scale and shift come from the latent (diffusers' CogVideoXSpatialNorm3D).

    The 1x1 convs run on the latent before it is stretched: nearest stretching
    commutes with them, and the latent grid is 64 times smaller.
    """

    def __init__(self, channels: int, zq_channels: int, groups: int) -> None:
        super().__init__()
        self.norm_layer = GroupNorm(groups, channels, eps=1e-6)
        self.conv_y = cog_conv(zq_channels, channels, kernel=1)
        self.conv_b = cog_conv(zq_channels, channels, kernel=1)

    def forward(self, f: torch.Tensor, zq: torch.Tensor) -> torch.Tensor:
        return self.norm_layer(f) * align_to(self.conv_y(zq), f) + align_to(self.conv_b(zq), f)


class ResnetBlock(nn.Module):
    """Norms are GroupNorms in the encoder, spatial norms (``zq_channels``) in the decoder."""

    def __init__(self, in_channels: int, out_channels: int, groups: int, zq_channels: int | None = None) -> None:
        super().__init__()
        if zq_channels is None:
            self.norm1 = GroupNorm(groups, in_channels, eps=1e-6)
            self.norm2 = GroupNorm(groups, out_channels, eps=1e-6)
        else:
            self.norm1 = SpatialNorm(in_channels, zq_channels, groups)
            self.norm2 = SpatialNorm(out_channels, zq_channels, groups)
        self.conv1 = cog_conv(in_channels, out_channels)
        self.conv2 = cog_conv(out_channels, out_channels)
        self.conv_shortcut = Conv3d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor, zq: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv1(F.silu(_norm(self.norm1, x, zq)))
        h = self.conv2(F.silu(_norm(self.norm2, h, zq)))
        return h + (self.conv_shortcut(x) if self.conv_shortcut is not None else x)


def _norm(norm: nn.Module, x: torch.Tensor, zq: torch.Tensor | None) -> torch.Tensor:
    return norm(x) if zq is None else norm(x, zq)


class Downsampler(nn.Module):
    """diffusers' CogVideoXDownsample3D, on one step alone: frames averaged in pairs (an odd step keeps its first
    frame), then a strided 2D conv padded on the right and bottom."""

    def __init__(self, channels: int, compress_time: bool) -> None:
        super().__init__()
        self.compress_time = compress_time
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.compress_time:
            first, rest = (x[:, :, :1], x[:, :, 1:]) if x.shape[2] % 2 else (x[:, :, :0], x)
            x = torch.cat([first, rest.unflatten(2, (-1, 2)).mean(3)], dim=2)
        return per_frame(self.conv, F.pad(x, (0, 1, 0, 1)))


class Upsampler(nn.Module):
    """diffusers' CogVideoXUpsample3D, on one step alone: nearest 2x in space and, with ``compress_time``, in time
    (an odd step of several frames keeps its first frame single; a one-frame step stays one frame)."""

    def __init__(self, channels: int, compress_time: bool) -> None:
        super().__init__()
        self.compress_time = compress_time
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[2]
        if self.compress_time and t > 1 and t % 2:
            x = torch.cat([F.interpolate(x[:, :, :1], scale_factor=(1, 2, 2)),
                           F.interpolate(x[:, :, 1:], scale_factor=(2, 2, 2))], dim=2)
        else:
            x = F.interpolate(x, scale_factor=(2 if self.compress_time and t > 1 else 1, 2, 2))
        return per_frame(self.conv, x)


class Block(nn.Module):
    """A down block (resnets, then an optional downsampler) or an up block (spatial norms, optional upsampler)."""

    def __init__(self, in_channels: int, out_channels: int, layers: int, groups: int, sampler: nn.Module | None,
                 zq_channels: int | None = None, down: bool = True) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(ResnetBlock(in_channels if i == 0 else out_channels, out_channels, groups,
                                                 zq_channels) for i in range(layers))
        samplers = nn.ModuleList([sampler]) if sampler is not None else None
        self.downsamplers, self.upsamplers = (samplers, None) if down else (None, samplers)

    @property
    def sampler(self) -> nn.Module | None:
        samplers = self.downsamplers if self.downsamplers is not None else self.upsamplers
        return samplers[0] if samplers is not None else None


class MidBlock(nn.Module):
    def __init__(self, channels: int, groups: int, zq_channels: int | None = None) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(ResnetBlock(channels, channels, groups, zq_channels) for _ in range(2))


class Encoder(nn.Module):
    def __init__(self, cfg: CogVideoXConfig) -> None:
        super().__init__()
        widths, g = cfg.widths, cfg.groups
        levels = cfg.temporal_compression.bit_length() - 1
        self.conv_in = cog_conv(cfg.in_channels, widths[0])
        self.down_blocks = nn.ModuleList(
            Block(widths[max(i - 1, 0)], widths[i], cfg.layers_per_block, g,
                  Downsampler(widths[i], i < levels) if i < len(widths) - 1 else None)
            for i in range(len(widths)))
        self.mid_block = MidBlock(widths[-1], g)
        self.norm_out = GroupNorm(g, widths[-1], eps=1e-6)
        self.conv_out = cog_conv(widths[-1], 2 * cfg.latent_channels)


class Decoder(nn.Module):
    def __init__(self, cfg: CogVideoXConfig) -> None:
        super().__init__()
        widths, g, z = cfg.widths[::-1], cfg.groups, cfg.latent_channels
        levels = cfg.temporal_compression.bit_length() - 1
        self.conv_in = cog_conv(z, widths[0])
        self.mid_block = MidBlock(widths[0], g, z)
        self.up_blocks = nn.ModuleList(
            Block(widths[max(i - 1, 0)], widths[i], cfg.layers_per_block + 1, g,
                  Upsampler(widths[i], i < levels) if i < len(widths) - 1 else None, z, down=False)
            for i in range(len(widths)))
        self.norm_out = SpatialNorm(widths[-1], z, g)
        self.conv_out = cog_conv(widths[-1], cfg.out_channels)


class CogVideoXVAE(CausalVideoVAE):
    family = "CogVideoX VAE"
    norms = NormStatistics("chunk")
    streaming = Streaming(needs_length=True)  # the first step takes the odd frame over: see decode_steps
    latent_frames_per_step = 2  # diffusers' num_latent_frames_batch_size
    pixel_frames_per_step = 8  # diffusers' num_sample_frames_batch_size

    def __init__(self, cfg: CogVideoXConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.latent_channels = cfg.latent_channels
        self.temporal_ratio = cfg.temporal_compression
        self.spatial_ratio = 2 ** (len(cfg.widths) - 1)
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.quant_conv = Conv3d(2 * cfg.latent_channels, 2 * cfg.latent_channels, 1) if cfg.quant_conv else None
        self.post_quant_conv = Conv3d(cfg.latent_channels, cfg.latent_channels, 1) if cfg.post_quant_conv else None
        blocks = self.decoder.up_blocks
        self.first_upsampling = next((i for i, b in enumerate(blocks) if b.upsamplers is not None), len(blocks))
        self.last_downsampling = max((i for i, b in enumerate(self.encoder.down_blocks) if b.downsamplers is not None),
                                     default=-1)

    @property
    def finest_width(self) -> int:
        return self.decoder.conv_out.conv.in_channels

    @property
    def encoder_finest_width(self) -> int:
        return self.encoder.conv_in.conv.out_channels

    def decode_steps(self, length: int, per_step: int) -> list[tuple[int, int]]:
        """diffusers' frame batches, whatever ``per_step`` asks: two latent frames a step, the first step taking
        the odd one over. Each step's norms and upsamplers see that step alone, so another cut decodes to
        different frames than the ones the model was trained and is used to give."""
        n = self.latent_frames_per_step
        first = length - n * (max(length // n, 1) - 1)
        return [(0, first)] + [(start, start + n) for start in range(first, length, n)]

    def encode_steps(self, pixel_frames: int, latents_per_step: int) -> list[tuple[int, int]]:
        """diffusers' encoder batches, whatever ``latents_per_step`` asks: eight frames a step, the first step
        taking the rest over (1 + 8k frames: nine first). The downsamplers pair frames within a step, so the cut
        is part of the model, as for :meth:`decode_steps`."""
        n = self.pixel_frames_per_step
        first = pixel_frames - n * (max(pixel_frames // n, 1) - 1)
        return [(0, first)] + [(start, start + n) for start in range(first, pixel_frames, n)]

    def decoded_frames(self, latent_frames: int) -> int:
        """Pixel frames diffusers decodes from a clip: ``1 + 4(n - 1)`` for odd ``n``, but ``4n`` for even ``n``
        (every step then has two latent frames, and a two-frame step upsamples to eight)."""
        if latent_frames % 2:
            return self.pixel_frames(latent_frames)
        return self.temporal_ratio * latent_frames

    def decode_shared(self, z: torch.Tensor) -> torch.Tensor:
        """Features up to the first spatial upsampling, with the latent ``zq`` the tiles' spatial norms need
        appended along channels."""
        if self.post_quant_conv is not None:
            z = self.post_quant_conv(z)
        decoder = self.decoder
        x = decoder.conv_in(z)
        for resnet in decoder.mid_block.resnets:
            x = resnet(x, z)
        for block in decoder.up_blocks[: self.first_upsampling + 1]:  # no upsampler before the first one's
            for resnet in block.resnets:
                x = resnet(x, z)
        return torch.cat([x, z], dim=1)

    def decode_tile(self, features: torch.Tensor) -> torch.Tensor:
        x, zq = features[:, : -self.latent_channels], features[:, -self.latent_channels :]
        decoder = self.decoder
        for index, block in enumerate(decoder.up_blocks[self.first_upsampling :]):
            if index > 0:
                for resnet in block.resnets:
                    x = resnet(x, zq)
            if block.sampler is not None:
                x = block.sampler(x)
        return decoder.conv_out(F.silu(decoder.norm_out(x, zq)))

    def encode_tile(self, x: torch.Tensor) -> torch.Tensor:
        h = self.encoder.conv_in(x)
        for block in self.encoder.down_blocks[: self.last_downsampling + 1]:
            h = _run_block(block, h)
        return h

    def encode_shared(self, features: torch.Tensor) -> torch.Tensor:
        encoder, h = self.encoder, features
        for block in encoder.down_blocks[self.last_downsampling + 1 :]:
            h = _run_block(block, h)
        for resnet in encoder.mid_block.resnets:
            h = resnet(h)
        h = encoder.conv_out(F.silu(encoder.norm_out(h)))
        if self.quant_conv is not None:
            h = self.quant_conv(h)
        return h[:, : self.latent_channels]


def _run_block(block: Block, x: torch.Tensor) -> torch.Tensor:
    for resnet in block.resnets:
        x = resnet(x)
    return block.sampler(x) if block.sampler is not None else x
