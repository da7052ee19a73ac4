"""SeedVR2's video VAE: a causal 3D KL autoencoder, 4x8x8, 16 latent channels (ByteDance's ``video_vae_v3``).

Module names follow the release, which the host (``comfy/ldm/seedvr/vae.py``) keeps, so its files load as they
are. There is no diffusers class; the host is the reference.

Why it streams the way it does:

* It is causal end to end (:mod:`layers`): any cut of the clip into steps gives the whole clip's frames, and a
  frame leaves as soon as its latent frame has arrived. The host itself decodes one latent frame per call with
  the same carries.
* Norms and the mid-block attention see one frame at a time, but all of it. The attention runs at latent
  resolution on the whole frame (:meth:`SeedVR2VAE.decode_shared`); in tiles, a step first sums each frame's
  norm statistics over all its tiles (norm by norm, in trial runs), then runs with those
  (``NormStatistics("frame_gathered")``), so tiles do not each shift their tone to their own content. Tiles are
  still not exact: the convs see zeros beyond a tile's edge.
* The latent the diffusion model (and the host's LATENT) holds is the encoder's mean times 0.9152; the decoder
  divides it back out. No shift.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...streaming.model import CausalVideoVAE
from ...streaming.traits import MemoryProfile, NormStatistics
from .layers import CHANNELS_LAST, Block3D, Downsample3D, MidBlock3D, Upsample3D, causal_conv, frame_norm

SCALING = 0.9152  # the release's scaling_factor; not in the file


@dataclass(frozen=True)
class SeedVR2Config:
    widths: tuple[int, ...] = (128, 256, 512, 512)  # finest first, as block_out_channels
    layers: int = 2  # resnets per encoder block (a decoder block has one more)
    latent_channels: int = 16
    # which resamplers also halve / double time: the encoder's downsamplers finest first, the decoder's
    # upsamplers coarsest first (as each runs)
    temporal_down: tuple[bool, ...] = (False, True, True)
    temporal_up: tuple[bool, ...] = (True, True, False)
    in_channels: int = 3
    out_channels: int = 3


class Encoder(nn.Module):
    def __init__(self, cfg: SeedVR2Config) -> None:
        super().__init__()
        widths = cfg.widths
        self.conv_in = causal_conv(cfg.in_channels, widths[0])
        self.down_blocks = nn.ModuleList()
        for i, width in enumerate(widths):
            block = Block3D(widths[max(i - 1, 0)], width, cfg.layers)
            if i < len(widths) - 1:
                block.downsamplers = nn.ModuleList([Downsample3D(width, cfg.temporal_down[i])])
            self.down_blocks.append(block)
        self.mid_block = MidBlock3D(widths[-1])
        self.conv_norm_out = frame_norm(widths[-1])
        self.conv_out = causal_conv(widths[-1], 2 * cfg.latent_channels)


class Decoder(nn.Module):
    def __init__(self, cfg: SeedVR2Config) -> None:
        super().__init__()
        widths = cfg.widths[::-1]
        self.conv_in = causal_conv(cfg.latent_channels, widths[0])
        self.mid_block = MidBlock3D(widths[0])
        self.up_blocks = nn.ModuleList()
        for i, width in enumerate(widths):
            block = Block3D(widths[max(i - 1, 0)], width, cfg.layers + 1)
            if i < len(widths) - 1:
                block.upsamplers = nn.ModuleList([Upsample3D(width, 2 if cfg.temporal_up[i] else 1)])
            self.up_blocks.append(block)
        self.conv_norm_out = frame_norm(widths[-1])
        self.conv_out = causal_conv(widths[-1], cfg.out_channels)


class SeedVR2VAE(CausalVideoVAE):
    family = "SeedVR2 VAE"
    norms = NormStatistics("frame_gathered")
    # at full resolution the last upsampler and the first resnet after it are twice the finest width, and each
    # causal conv joins two carried frames to a step's four: peak RSS measured 17-20 finest-width tensors a step
    # (benchmarks/seedvr2_decode.py memory), not the engine's default 6
    memory_profile = MemoryProfile(live_at_finest=17.0)

    def __init__(self, cfg: SeedVR2Config = SeedVR2Config()) -> None:
        super().__init__()
        self.cfg = cfg
        self.latent_channels = cfg.latent_channels
        self.temporal_ratio = 2 ** sum(cfg.temporal_up)
        self.spatial_ratio = 2 ** (len(cfg.widths) - 1)
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)

    @property
    def finest_width(self) -> int:
        return self.cfg.widths[0]

    @property
    def encoder_finest_width(self) -> int:
        return self.cfg.widths[0]

    def decode_shared(self, z: torch.Tensor) -> torch.Tensor:
        """The latent-resolution stages, through the mid block's attention (which needs the whole frame)."""
        return self.decoder.mid_block(self.decoder.conv_in((z / SCALING).contiguous(memory_format=CHANNELS_LAST)))

    def decode_tile(self, features: torch.Tensor) -> torch.Tensor:
        x = features
        for block in self.decoder.up_blocks:
            x = block(x)
        return self.decoder.conv_out(F.silu(self.decoder.conv_norm_out(x)))

    def encode_tile(self, x: torch.Tensor) -> torch.Tensor:
        h = self.encoder.conv_in(x.contiguous(memory_format=CHANNELS_LAST))
        for block in self.encoder.down_blocks:
            h = block(h)
        return h

    def encode_shared(self, features: torch.Tensor) -> torch.Tensor:
        """The mid block (its attention needs the whole frame) and the posterior's mode, scaled."""
        encoder = self.encoder
        h = encoder.conv_out(F.silu(encoder.conv_norm_out(encoder.mid_block(features))))
        return h[:, : self.latent_channels] * SCALING
