"""Kandinsky 6's video VAE (KVAE): 4x8x8 compression, 16 latent channels, described layer by layer.

Module names follow the release (``kandinskylab/kvae-1``), which diffusers'
``AutoencoderKLKVAEVideo`` keeps, so its checkpoints load as they are.

Why it streams the way it does:

* Every temporal conv is causal: the front of the clip is padded with copies of
  its first frame (in space, with copies of the edges), later frames come from
  the carry, as :func:`state.sliding_windows` keeps it. The encoder's temporal
  downsampler is such a conv with stride 2.
* The rest is *not* defined over the whole clip: the release decodes 17 pixel
  frames' worth of latents first (5 latent frames), then 16 (4 latent frames)
  at a time, and encodes 17 frames first, then 16 at a time. Each chunk's
  GroupNorms normalise over that chunk only (the release's "cached" statistics
  only mark that a first chunk was seen), the first chunk's first frame is
  upsampled and averaged apart, and a chunk of one latent frame is not
  upsampled in time at all. The weights are used that way, so the chunking is
  part of the model: :meth:`KandinskyVAE.decode_steps` and
  :meth:`KandinskyVAE.encode_steps` cut the clip as the release does, and
  ``NormStatistics("chunk")`` pools a tiled step's statistics over its tiles.
* The decoder's spatial norms are conditioned on the latent at every layer, so
  :meth:`KandinskyVAE.decode_shared` hands the tiles the latent along with the
  features, both on the latent grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...streaming.conv import Conv3d, NestedCausalConv3d
from ...streaming.group_norm import GroupNorm
from ...streaming.model import CausalVideoVAE
from ...streaming.state import first_call
from ...streaming.traits import NormStatistics, Streaming

GROUPS = 32  # every norm of the release; not readable from shapes
FIRST_CHUNK, CHUNK = 17, 16  # the release's pixel frames per chunk (its seg_len), the first one more


@dataclass(frozen=True)
class KandinskyConfig:
    width: int = 128  # ch
    multipliers: tuple[int, ...] = (1, 2, 4, 8)  # ch_mult, finest first
    layers: int = 2  # num_res_blocks (the decoder's levels have one more)
    latent_channels: int = 16
    temporal_compression: int = 4
    in_channels: int = 3
    out_channels: int = 3

    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(self.width * m for m in self.multipliers)

    @property
    def temporal_levels(self) -> int:
        return self.temporal_compression.bit_length() - 1


def causal_conv(in_channels: int, out_channels: int, kernel=3, stride=1) -> NestedCausalConv3d:
    """The release's cached causal conv: the first frame repeated in front, edges repeated in space."""
    k_t, k_h, k_w = (kernel,) * 3 if isinstance(kernel, int) else kernel
    s_t = stride if isinstance(stride, int) else stride[0]
    return NestedCausalConv3d(in_channels, out_channels, (k_t, k_h, k_w), stride=(s_t, 1, 1),
                              padding=(k_t // 2, k_h // 2, k_w // 2), time_fill="replicate", spatial_mode="replicate")


class ChunkNorm(nn.Module):
    """The release's ``KVAECachedGroupNorm``: a GroupNorm over the chunk in hand (one step of the stream)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm_layer = GroupNorm(GROUPS, channels, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm_layer(x)


def align_to(zq: torch.Tensor, f: torch.Tensor, first_chunk: bool) -> torch.Tensor:
    """``zq`` stretched (nearest) over ``f``'s frames and pixels; in the first chunk, its first frame apart."""
    if first_chunk and zq.shape[2] > 1:
        first = F.interpolate(zq[:, :, :1], size=(1, *f.shape[-2:]))
        rest = F.interpolate(zq[:, :, 1:], size=(f.shape[2] - 1, *f.shape[-2:]))
        return torch.cat([first, rest], dim=2)
    return F.interpolate(zq, size=f.shape[-3:])


class SpatialNorm(nn.Module):
    """A chunk GroupNorm whose scale and shift come from the latent (``KVAECachedSpatialNorm3D``). The 1x1 convs
    run on the latent before it is stretched: nearest stretching commutes with them."""

    def __init__(self, channels: int, zq_channels: int) -> None:
        super().__init__()
        self.norm_layer = ChunkNorm(channels)
        self.conv_y = Conv3d(zq_channels, channels, 1)
        self.conv_b = Conv3d(zq_channels, channels, 1)

    def forward(self, f: torch.Tensor, zq: torch.Tensor) -> torch.Tensor:
        first = first_call(self)
        return self.norm_layer(f) * align_to(self.conv_y(zq), f, first) + align_to(self.conv_b(zq), f, first)


class ResnetBlock(nn.Module):
    """GroupNorms in the encoder, spatial norms (``zq_channels``) in the decoder."""

    def __init__(self, in_channels: int, out_channels: int, zq_channels: int | None = None) -> None:
        super().__init__()
        if zq_channels is None:
            self.norm1, self.norm2 = ChunkNorm(in_channels), ChunkNorm(out_channels)
        else:
            self.norm1, self.norm2 = SpatialNorm(in_channels, zq_channels), SpatialNorm(out_channels, zq_channels)
        self.conv1 = causal_conv(in_channels, out_channels)
        self.conv2 = causal_conv(out_channels, out_channels)
        self.nin_shortcut = Conv3d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor, zq: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv1(F.silu(_norm(self.norm1, x, zq)))
        h = self.conv2(F.silu(_norm(self.norm2, h, zq)))
        return h + (self.nin_shortcut(x) if self.nin_shortcut is not None else x)


def _norm(norm: nn.Module, x: torch.Tensor, zq: torch.Tensor | None) -> torch.Tensor:
    return norm(x) if zq is None else norm(x, zq)


def reflect_conv(channels: int, stride: int) -> Conv3d:
    """A per-frame 3x3 conv padded by reflection."""
    return Conv3d(channels, channels, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1), padding_mode="reflect")


class Downsampler(nn.Module):
    """``KVAECachedPXSDownsample``: a strided conv plus the 2x2 average in space; with ``compress_time``, a
    stride-2 causal conv plus the average of frame pairs (the first chunk's first frame alone); a 1x1 conv."""

    def __init__(self, channels: int, compress_time: bool) -> None:
        super().__init__()
        self.spatial_conv = reflect_conv(channels, 2)
        self.temporal_conv = causal_conv(channels, channels, (3, 1, 1), stride=2) if compress_time else None
        self.linear = Conv3d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.spatial_conv(x) + F.avg_pool3d(x, (1, 2, 2))
        if self.temporal_conv is not None:
            first, rest = (x[:, :, :1], x[:, :, 1:]) if first_call(self) else (x[:, :, :0], x)
            pairs = rest[:, :, : rest.shape[2] // 2 * 2].unflatten(2, (-1, 2)).mean(3)
            x = self.temporal_conv(x) + torch.cat([first, pairs], dim=2)
        return self.linear(x)


class Upsampler(nn.Module):
    """``KVAECachedPXSUpsample``: with ``compress_time``, every frame twice (the first chunk's first once; a
    one-frame chunk stays one frame) plus a causal conv of them; then nearest 2x in space plus a conv; a 1x1 conv."""

    def __init__(self, channels: int, compress_time: bool) -> None:
        super().__init__()
        self.temporal_conv = causal_conv(channels, channels, (3, 1, 1)) if compress_time else None
        self.spatial_conv = reflect_conv(channels, 1)
        self.linear = Conv3d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.temporal_conv is not None:
            first = first_call(self)
            if x.shape[2] > 1:
                x = x.repeat_interleave(2, dim=2)[:, :, 1 if first else 0 :]
            x = x + self.temporal_conv(x)
        x = F.interpolate(x, scale_factor=(1, 2, 2))
        return self.linear(x + self.spatial_conv(x))


class Level(nn.Module):
    """One resolution: resnets (``block``), then a down- or upsampler (``downsample`` / ``upsample``)."""

    def __init__(self, in_channels: int, out_channels: int, layers: int, zq_channels: int | None = None) -> None:
        super().__init__()
        self.block = nn.ModuleList(ResnetBlock(in_channels if i == 0 else out_channels, out_channels, zq_channels)
                                   for i in range(layers))

    def run(self, x: torch.Tensor, zq: torch.Tensor | None = None) -> torch.Tensor:
        for resnet in self.block:
            x = resnet(x, zq)
        return x


class Middle(nn.Module):
    def __init__(self, channels: int, zq_channels: int | None = None) -> None:
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, zq_channels)
        self.block_2 = ResnetBlock(channels, channels, zq_channels)

    def forward(self, x: torch.Tensor, zq: torch.Tensor | None = None) -> torch.Tensor:
        return self.block_2(self.block_1(x, zq), zq)


class Encoder(nn.Module):
    def __init__(self, cfg: KandinskyConfig) -> None:
        super().__init__()
        widths = cfg.widths
        self.conv_in = causal_conv(cfg.in_channels, cfg.width)
        self.down = nn.ModuleList()
        for i, width in enumerate(widths):
            level = Level(cfg.width if i == 0 else widths[i - 1], width, cfg.layers)
            if i < len(widths) - 1:
                level.downsample = Downsampler(width, i < cfg.temporal_levels)
            self.down.append(level)
        self.mid = Middle(widths[-1])
        self.norm_out = ChunkNorm(widths[-1])
        self.conv_out = causal_conv(widths[-1], 2 * cfg.latent_channels)


class Decoder(nn.Module):
    def __init__(self, cfg: KandinskyConfig) -> None:
        super().__init__()
        widths, z, levels = cfg.widths, cfg.latent_channels, len(cfg.widths)
        self.conv_in = causal_conv(z, widths[-1])
        self.mid = Middle(widths[-1], z)
        up = [None] * levels  # up[i] is level i, finest first, as the release numbers them; it runs coarsest first
        width = widths[-1]
        for i in reversed(range(levels)):
            up[i] = Level(width, widths[i], cfg.layers + 1, z)
            width = widths[i]
            if i > 0:
                up[i].upsample = Upsampler(width, i >= levels - cfg.temporal_levels)
        self.up = nn.ModuleList(up)
        self.norm_out = SpatialNorm(widths[0], z)
        self.conv_out = causal_conv(widths[0], cfg.out_channels)


class KandinskyVAE(CausalVideoVAE):
    family = "Kandinsky 6 video VAE"
    norms = NormStatistics("chunk")
    streaming = Streaming(needs_length=True)  # the release's chunks: see decode_steps

    def __init__(self, cfg: KandinskyConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.latent_channels = cfg.latent_channels
        self.temporal_ratio = cfg.temporal_compression
        self.spatial_ratio = 2 ** (len(cfg.widths) - 1)
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)

    @property
    def finest_width(self) -> int:
        return self.cfg.widths[0]

    @property
    def encoder_finest_width(self) -> int:
        return self.cfg.width

    def decode_steps(self, length: int, per_step: int) -> list[tuple[int, int]]:
        """The release's chunks, whatever ``per_step`` asks: 5 latent frames (17 pixel frames), then 4. Each
        chunk's norms and upsamplers see that chunk alone, so another cut decodes to other frames."""
        first, n = self.latent_frames(FIRST_CHUNK), CHUNK // self.temporal_ratio
        return [(0, min(first, length))] + [(start, min(start + n, length)) for start in range(first, length, n)]

    def encode_steps(self, pixel_frames: int, latents_per_step: int) -> list[tuple[int, int]]:
        """The release's chunks, whatever ``latents_per_step`` asks: 17 frames, then 16."""
        return [(0, min(FIRST_CHUNK, pixel_frames))] + [
            (start, min(start + CHUNK, pixel_frames)) for start in range(FIRST_CHUNK, pixel_frames, CHUNK)]

    def decoded_frames(self, latent_frames: int) -> int:
        """Pixel frames the release decodes: ``1 + 4(n - 1)``, except that a last chunk of one latent frame (a
        clip of ``4k + 2`` latent frames, ``k >= 1``) is not upsampled in time and gives one frame."""
        frames = 0
        for start, stop in self.decode_steps(latent_frames, 1):
            t = stop - start
            frames += 1 if t == 1 else self.temporal_ratio * t - (self.temporal_ratio - 1 if start == 0 else 0)
        return frames

    def decode_shared(self, z: torch.Tensor) -> torch.Tensor:
        """The coarsest level, with the latent the tiles' spatial norms need appended along channels."""
        decoder = self.decoder
        x = decoder.up[-1].run(decoder.mid(decoder.conv_in(z), z), z)
        return torch.cat([x, z], dim=1)

    def decode_tile(self, features: torch.Tensor) -> torch.Tensor:
        x, zq = features[:, : -self.latent_channels], features[:, -self.latent_channels :]
        decoder = self.decoder
        x = decoder.up[-1].upsample(x)
        for i in reversed(range(len(decoder.up) - 1)):
            x = decoder.up[i].run(x, zq)
            if i > 0:
                x = decoder.up[i].upsample(x)
        return decoder.conv_out(F.silu(decoder.norm_out(x, zq)))

    def encode_tile(self, x: torch.Tensor) -> torch.Tensor:
        h = self.encoder.conv_in(x)
        for level in self.encoder.down[:-1]:
            h = level.downsample(level.run(h))
        return h

    def encode_shared(self, features: torch.Tensor) -> torch.Tensor:
        encoder = self.encoder
        h = encoder.mid(encoder.down[-1].run(features))
        return encoder.conv_out(F.silu(encoder.norm_out(h)))[:, : self.latent_channels]
