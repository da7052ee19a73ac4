"""The HunyuanVideo 1.5 VAE: causal 3D, 4x16x16 compression, 32 latent channels, described layer by layer.

Module names follow diffusers' ``AutoencoderKLHunyuanVideo15``, so those
checkpoints load as they are; :mod:`.checkpoints` renames the original release's
layout (which is also the host's).

Why it streams the way it does:

* Every conv is causal (copies of the first frame in front), and every norm is
  an RMSNorm over channels at one position: nothing looks at later frames or
  gathers statistics, so a stream with carried frames reproduces the whole clip
  exactly and needs no gathering pass (``NormStatistics("position")``).
* The resamplers move pixels between space, time and channels (DCAE-style) and
  treat a clip's first frame apart; :func:`state.first_call` tells them which
  chunk holds it.
* The mid blocks' attention is causal over frames. It runs at latent
  resolution on the whole frame (``decode_shared`` / ``encode_shared``), and its
  keys and values are the one carry that grows with length: 2 x C values per
  latent pixel and latent frame.
* Everything else at latent resolution runs on the whole frame too: the
  decoder's first resnets and the encoder's last block. They are the widest
  layers (1024 channels) but hold little memory there, and they are 6 of the
  13.6 latent pixels the decoder's convs reach; left to the tiles, a 64 px
  overlap (4 latent pixels at 16x) would not hide their edges. Tiles run the
  resamplers and everything finer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...streaming.model import CausalVideoVAE
from ...streaming.traits import MemoryProfile
from .layers import Downsampler, MidBlock, ResnetBlock, RMSNorm, Upsampler, causal_conv


@dataclass(frozen=True)
class HunyuanVideo15Config:
    latent_channels: int = 32
    widths: tuple[int, ...] = (128, 256, 512, 1024, 1024)  # finest first, as diffusers' block_out_channels
    layers_per_block: int = 2  # the encoder's; the decoder has one more per block
    spatial_levels: int = 4  # 2x each: 16x
    temporal_levels: int = 2  # 2x each: 4x
    downsample_match_channel: bool = True  # a resampler outputs the next block's width (else its own)
    upsample_match_channel: bool = True


class Block(nn.Module):
    """A down or up block: resnets, then an optional resampler (diffusers' attribute names)."""

    def __init__(self, in_channels: int, out_channels: int, layers: int, resampler: nn.Module | None,
                 name: str) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(ResnetBlock(in_channels if i == 0 else out_channels, out_channels)
                                     for i in range(layers))
        self._resamplers = name
        if resampler is not None:
            setattr(self, name, nn.ModuleList([resampler]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for resnet in self.resnets:
            x = resnet(x)
        for resampler in getattr(self, self._resamplers, ()):
            x = resampler(x)
        return x


class Encoder(nn.Module):
    def __init__(self, cfg: HunyuanVideo15Config) -> None:
        super().__init__()
        widths = cfg.widths
        self.conv_in = causal_conv(3, widths[0])
        blocks, channels = [], widths[0]
        for i, width in enumerate(widths):
            resampler = None
            if i < cfg.spatial_levels:  # time is packed in the last spatial levels
                out = widths[i + 1] if cfg.downsample_match_channel else width
                resampler = Downsampler(width, out, temporal=i >= cfg.spatial_levels - cfg.temporal_levels)
            blocks.append(Block(channels, width, cfg.layers_per_block, resampler, "downsamplers"))
            channels = resampler.out_channels if resampler is not None else width
        self.down_blocks = nn.ModuleList(blocks)
        self.mid_block = MidBlock(widths[-1])
        self.norm_out = RMSNorm(widths[-1])
        self.conv_out = causal_conv(widths[-1], 2 * cfg.latent_channels)


class Decoder(nn.Module):
    def __init__(self, cfg: HunyuanVideo15Config) -> None:
        super().__init__()
        widths = cfg.widths[::-1]
        self.conv_in = causal_conv(cfg.latent_channels, widths[0])
        self.mid_block = MidBlock(widths[0])
        blocks, channels = [], widths[0]
        for i, width in enumerate(widths):
            resampler = None
            if i < cfg.spatial_levels:  # time is unpacked in the first spatial levels
                out = widths[i + 1] if cfg.upsample_match_channel else width
                resampler = Upsampler(width, out, temporal=i < cfg.temporal_levels)
            blocks.append(Block(channels, width, cfg.layers_per_block + 1, resampler, "upsamplers"))
            channels = resampler.out_channels if resampler is not None else width
        self.up_blocks = nn.ModuleList(blocks)
        self.norm_out = RMSNorm(widths[-1])
        self.conv_out = causal_conv(widths[-1], 3)


class HunyuanVideo15VAE(CausalVideoVAE):
    family = "HunyuanVideo 1.5 VAE"
    # every conv pads space by a replicated copy of its input: 3 finest-size tensors more than the plan's default
    # (measured, docs/hunyuan15.md "The plan against measurement")
    memory_profile = MemoryProfile(live_at_finest=9.0)

    def __init__(self, cfg: HunyuanVideo15Config = HunyuanVideo15Config()) -> None:
        super().__init__()
        self.cfg = cfg
        self.latent_channels = cfg.latent_channels
        self.spatial_ratio = 2**cfg.spatial_levels
        self.temporal_ratio = 2**cfg.temporal_levels
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)

    @property
    def finest_width(self) -> int:
        return self.cfg.widths[0]

    @property
    def encoder_finest_width(self) -> int:
        return self.cfg.widths[0]

    def decode_shared(self, z: torch.Tensor) -> torch.Tensor:
        """The latent's channels repeated up to the first width plus a conv, the mid block (its attention needs
        the whole frame) and the first block's resnets: everything before the first upsampler."""
        decoder = self.decoder
        x = decoder.conv_in(z).add_(z.repeat_interleave(self.cfg.widths[-1] // self.latent_channels, 1))
        x = decoder.mid_block(x)
        for resnet in decoder.up_blocks[0].resnets:
            x = resnet(x)
        return x

    def decode_tile(self, features: torch.Tensor) -> torch.Tensor:
        x = features
        for upsampler in self.decoder.up_blocks[0].upsamplers:
            x = upsampler(x)
        for block in self.decoder.up_blocks[1:]:
            x = block(x)
        return self.decoder.conv_out(F.silu(self.decoder.norm_out(x), inplace=True))

    def encode_tile(self, x: torch.Tensor) -> torch.Tensor:
        """Down to the last downsampler (the blocks after it are at latent resolution: :meth:`encode_shared`)."""
        h = self.encoder.conv_in(x)
        for block in self.encoder.down_blocks[: self.cfg.spatial_levels]:
            h = block(h)
        return h

    def encode_shared(self, features: torch.Tensor) -> torch.Tensor:
        """The blocks at latent resolution and the mid block, then a conv to mean and log-variance plus the
        features averaged down to them; the mean."""
        encoder = self.encoder
        h = features
        for block in encoder.down_blocks[self.cfg.spatial_levels :]:
            h = block(h)
        h = encoder.mid_block(h)
        shortcut = h.unflatten(1, (2 * self.latent_channels, -1)).mean(2)
        moments = encoder.conv_out(F.silu(encoder.norm_out(h), inplace=True)).add_(shortcut)
        return moments[:, : self.latent_channels]
