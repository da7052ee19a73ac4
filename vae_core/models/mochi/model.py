"""The Mochi 1 VAE: causal 3D, 6x8x8 compression, 12 latent channels, described layer by layer.

Module names follow diffusers' ``AutoencoderKLMochi``, so its checkpoints load
as they are; :mod:`checkpoints` renames genmo's layout (which the host keeps).

Why it streams the way it does:

* Every conv is causal: it pads its front with copies of the first frame and
  its sides by replicating edge pixels, so it streams through
  :func:`state.sliding_windows`. The encoder's downsampling convs have kernel
  = stride = ``(t, 2, 2)`` with ``t - 1`` copies in front, so the clip's first
  frame makes a latent frame of its own.
* Every norm is a GroupNorm over one frame (its channels and pixels), so
  nothing but the convs and the encoder's attention couples frames, and a
  stream cut anywhere gives the whole-clip result (``NormStatistics(
  "frame")``: nothing to gather). A spatial tile normalises with its own
  statistics, which is where tiles differ from the whole frame.
* The decoder has no attention. Each up block widens every position with a
  linear layer and unfolds the channels into time and space (x3, x2, x1 in
  time, x2 in space). The first latent frame must stand for one pixel frame:
  diffusers decodes all six frames of it and drops the first five decoded
  frames at the end; genmo's code (and the host's) drops the first
  ``t - 1`` frames right after each unfolding instead. The dropped frames still
  feed diffusers' later convs, so the two differ over a clip's first frames;
  the model follows diffusers unless told otherwise
  (:meth:`MochiVAE.drop_first_frames`). Either way a step's first call knows
  it holds the clip's start (:func:`state.first_call`).
* The encoder starts with Fourier features of the pixels and attends over
  time at each position (:mod:`attention`), in its down blocks and last mid
  block; that runs inside the tiles exactly, its keys and values kept for the
  whole clip.
* The decoder's latent-resolution stages (up to the first unfolding) and the
  encoder's (from its last downsampling on) run on the whole frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...errors import FrameStreamError
from ...streaming.conv import Conv3d, NestedCausalConv3d
from ...streaming.frames import per_frame
from ...streaming.group_norm import GroupNorm
from ...streaming.model import CausalVideoVAE
from ...streaming.state import first_call
from ...streaming.traits import NormStatistics
from .attention import CausalTimeAttention

GROUPS = 32  # not in the weights; every norm of the release uses 32
FOURIER_OCTAVES = (6, 7)  # the encoder's input features: sin and cos at 2^6 and 2^7 cycles per unit
FRAME_DROPPING = ("end", "per_level")
UNFOLDING_SHARE = 1.5  # the decoder's memory at full resolution, in widths of its finest stage (see finest_width)


@dataclass(frozen=True)
class DecoderConfig:
    widths: tuple[int, ...] = (128, 256, 512, 768)  # finest first, as diffusers' decoder_block_out_channels
    layers: tuple[int, ...] = (3, 3, 4, 6, 3)  # resnets: the last mid block, the up blocks finest first, the first
    temporal: tuple[int, ...] = (1, 2, 3)  # each level's expansion, finest first
    spatial: tuple[int, ...] = (2, 2, 2)
    out_channels: int = 3


@dataclass(frozen=True)
class EncoderConfig:
    widths: tuple[int, ...] = (64, 128, 256, 384)
    layers: tuple[int, ...] = (3, 3, 4, 6, 3)  # resnets: the first mid block, each down block, the last mid block
    temporal: tuple[int, ...] = (1, 2, 3)  # each down block's reduction
    spatial: tuple[int, ...] = (2, 2, 2)
    attention: tuple[bool, ...] = (False, True, True, True, True)  # per stage, as layers
    in_channels: int = 15  # RGB and its Fourier features


@dataclass(frozen=True)
class MochiConfig:
    latent_channels: int = 12
    encoder: EncoderConfig | None = EncoderConfig()  # None: a file with the decoder only
    decoder: DecoderConfig | None = DecoderConfig()


def mochi_conv(in_channels: int, out_channels: int) -> NestedCausalConv3d:
    """The resnets' 3x3x3 conv: two copies of the first frame in front, edge pixels replicated at the sides."""
    return NestedCausalConv3d(in_channels, out_channels, 3, padding=1, time_fill="replicate",
                              spatial_mode="replicate")


def downsampling_conv(in_channels: int, out_channels: int, time: int, space: int) -> NestedCausalConv3d:
    """Kernel = stride = ``(time, space, space)`` with ``time - 1`` copies of the first frame in front (an odd
    count for ``time`` 2, which a centred padding cannot say, hence set on the conv itself)."""
    conv = NestedCausalConv3d(in_channels, out_channels, (time, space, space), stride=(time, space, space),
                              time_fill="replicate")
    conv.conv.time_padding = time - 1
    return conv


def linear_over_channels(layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """A linear layer applied at every position of ``[B, C, T, H, W]`` (the checkpoints' 1x1x1 convs)."""
    return layer(x.movedim(1, -1)).movedim(-1, 1)


def fourier_features(x: torch.Tensor) -> torch.Tensor:
    """The pixels, then the sines and the cosines of each channel at every octave (a channel's octaves
    adjacent), computed in fp32 as the reference does."""
    x32 = x.float()
    turns = 2.0 ** torch.tensor(FOURIER_OCTAVES, dtype=torch.float32, device=x.device) * (2 * math.pi)
    angles = (x32.unsqueeze(2) * turns.view(1, 1, -1, 1, 1, 1)).flatten(1, 2)
    return torch.cat([x32, angles.sin(), angles.cos()], dim=1).to(x.dtype)


class FrameGroupNorm(nn.Module):
    """GroupNorm over each frame alone (diffusers' ``MochiChunkedGroupNorm3D``, genmo's ``GroupNormSpatial``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm_layer = GroupNorm(GROUPS, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return per_frame(self.norm_layer, x)


class ResnetBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm1 = FrameGroupNorm(channels)
        self.conv1 = mochi_conv(channels, channels)
        self.norm2 = FrameGroupNorm(channels)
        self.conv2 = mochi_conv(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the norms' and the conv's outputs are fresh tensors: activating and adding in place saves two of the
        # step's largest allocations per resnet
        h = self.conv1(F.silu(self.norm1(x), inplace=True))
        return self.conv2(F.silu(self.norm2(h), inplace=True)).add_(x)


class Stage(nn.Module):
    """Resnets at one width, each followed by a residual attention over time where the stage has one."""

    def __init__(self, channels: int, layers: int, attention: bool = False, frames_per_latent: int = 1) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(ResnetBlock(channels) for _ in range(layers))
        self.norms = self.attentions = None
        if attention:
            self.norms = nn.ModuleList(FrameGroupNorm(channels) for _ in range(layers))
            self.attentions = nn.ModuleList(CausalTimeAttention(channels, frames_per_latent) for _ in range(layers))

    def refine(self, x: torch.Tensor) -> torch.Tensor:
        for index, resnet in enumerate(self.resnets):
            x = resnet(x)
            if self.attentions is not None:
                x = x + self.attentions[index](self.norms[index](x))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.refine(x)


class DownBlock(Stage):
    def __init__(self, in_channels: int, out_channels: int, layers: int, time: int, space: int, attention: bool,
                 frames_per_latent: int) -> None:
        super().__init__(out_channels, layers, attention, frames_per_latent)
        self.conv_in = downsampling_conv(in_channels, out_channels, time, space)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.refine(self.conv_in(x))


class DropLeading(nn.Module):
    """Drops the first ``frames`` frames of a clip (in the step that holds its start)."""

    def __init__(self, frames: int = 0) -> None:
        super().__init__()
        self.frames = frames

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, self.frames :] if self.frames and first_call(self) else x


class UpBlock(Stage):
    """Resnets, then a linear layer whose channels unfold into ``time`` frames and ``space``-fold pixels."""

    def __init__(self, in_channels: int, out_channels: int, layers: int, time: int, space: int) -> None:
        super().__init__(in_channels, layers)
        self.time, self.space = time, space
        self.proj = nn.Linear(in_channels, out_channels * time * space * space)
        self.drop = DropLeading()  # genmo's first-frame handling, when asked for (MochiVAE.drop_first_frames)

    def expand(self, x: torch.Tensor) -> torch.Tensor:
        b, _, t, h, w = x.shape
        st, s = self.time, self.space
        y = self.proj(x.permute(0, 2, 3, 4, 1)).unflatten(-1, (-1, st, s, s))  # [B, t, h, w, C, st, sh, sw]
        y = y.permute(0, 4, 1, 5, 2, 6, 3, 7).reshape(b, -1, t * st, h * s, w * s)
        return self.drop(y)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.expand(self.refine(x))


class Decoder(nn.Module):
    def __init__(self, cfg: DecoderConfig, latent_channels: int) -> None:
        super().__init__()
        widths, layers = cfg.widths, cfg.layers
        levels = len(widths) - 1
        self.conv_in = Conv3d(latent_channels, widths[-1], 1)
        self.block_in = Stage(widths[-1], layers[-1])
        self.up_blocks = nn.ModuleList(
            UpBlock(widths[-i - 1], widths[-i - 2], layers[-i - 2], cfg.temporal[-i - 1], cfg.spatial[-i - 1])
            for i in range(levels))
        self.block_out = Stage(widths[0], layers[0])
        self.proj_out = nn.Linear(widths[0], cfg.out_channels)
        self.drop = DropLeading(math.prod(cfg.temporal) - 1)  # diffusers' first-frame handling


class Encoder(nn.Module):
    def __init__(self, cfg: EncoderConfig, latent_channels: int) -> None:
        super().__init__()
        widths, layers, attention = cfg.widths, cfg.layers, cfg.attention
        rates = [math.prod(cfg.temporal[i:]) for i in range(len(cfg.temporal) + 1)]  # frames per latent frame
        self.proj_in = nn.Linear(cfg.in_channels, widths[0])
        self.block_in = Stage(widths[0], layers[0], attention[0], rates[0])
        self.down_blocks = nn.ModuleList(
            DownBlock(widths[i], widths[i + 1], layers[i + 1], cfg.temporal[i], cfg.spatial[i], attention[i + 1],
                      rates[i + 1])
            for i in range(len(widths) - 1))
        self.block_out = Stage(widths[-1], layers[-1], attention[-1], 1)
        self.norm_out = FrameGroupNorm(widths[-1])
        self.proj_out = nn.Linear(widths[-1], 2 * latent_channels, bias=False)


class MochiVAE(CausalVideoVAE):
    family = "Mochi VAE"
    norms = NormStatistics("frame")

    def __init__(self, cfg: MochiConfig = MochiConfig(), source: str = "this file") -> None:
        super().__init__()
        self.cfg, self.source = cfg, source
        self.latent_channels = cfg.latent_channels
        parts = cfg.decoder or cfg.encoder
        self.temporal_ratio, self.spatial_ratio = math.prod(parts.temporal), math.prod(parts.spatial)
        self.decoder = Decoder(cfg.decoder, cfg.latent_channels) if cfg.decoder is not None else None
        self.encoder = Encoder(cfg.encoder, cfg.latent_channels) if cfg.encoder is not None else None

    def drop_first_frames(self, where: str) -> "MochiVAE":
        """Where the decoder drops the frames a clip's first latent frame unfolds into beyond its one: ``"end"``
        (diffusers: five decoded frames) or ``"per_level"`` (genmo's code and the host's: after each unfolding)."""
        if where not in FRAME_DROPPING:
            raise FrameStreamError(f"frame dropping must be one of {', '.join(FRAME_DROPPING)}, got {where!r}")
        if self.decoder is not None:
            for block in self.decoder.up_blocks:
                block.drop.frames = block.time - 1 if where == "per_level" else 0
            self.decoder.drop.frames = self.temporal_ratio - 1 if where == "end" else 0
        return self

    def _decoder(self) -> Decoder:
        if self.decoder is None:
            raise FrameStreamError(f"{self.source} holds only the Mochi VAE's encoder, so it cannot decode; load "
                                   "the decoder file (or one holding both)")
        return self.decoder

    def _encoder(self) -> Encoder:
        if self.encoder is None:
            raise FrameStreamError(f"{self.source} holds only the Mochi VAE's decoder, so it cannot encode; load "
                                   "a file with the encoder too (genmo's encoder.safetensors, or diffusers' vae "
                                   "folder)")
        return self.encoder

    @property
    def finest_width(self) -> float:
        """For the memory plan: the finest stage's width and half again, for the last unfolding's output and its
        reordered copy, which live beside the finest stage's own tensors (benchmarks/mochi_decode.py, "plan")."""
        return UNFOLDING_SHARE * self._decoder().block_out.resnets[0].conv1.conv.in_channels

    @property
    def encoder_finest_width(self) -> int:
        return self._encoder().block_in.resnets[0].conv1.conv.in_channels

    def decode_shared(self, z: torch.Tensor) -> torch.Tensor:
        """Up to the first unfolding: everything at latent resolution."""
        decoder = self._decoder()
        x = decoder.block_in(decoder.conv_in(z))
        return decoder.up_blocks[0].refine(x)

    def decode_tile(self, features: torch.Tensor) -> torch.Tensor:
        decoder = self.decoder
        x = decoder.up_blocks[0].expand(features)
        for block in decoder.up_blocks[1:]:
            x = block(x)
        x = linear_over_channels(decoder.proj_out, F.silu(decoder.block_out(x)))
        return decoder.drop(x)

    def encode_tile(self, x: torch.Tensor) -> torch.Tensor:
        """Up to the last downsampling conv, whose output is on the latent grid."""
        encoder = self._encoder()
        h = encoder.block_in(linear_over_channels(encoder.proj_in, fourier_features(x)))
        for block in encoder.down_blocks[:-1]:
            h = block(h)
        return encoder.down_blocks[-1].conv_in(h)

    def encode_shared(self, features: torch.Tensor) -> torch.Tensor:
        encoder = self._encoder()
        h = encoder.block_out(encoder.down_blocks[-1].refine(features))
        h = F.silu(encoder.norm_out(h)).movedim(1, -1)
        return F.linear(h, encoder.proj_out.weight[: self.latent_channels]).movedim(-1, 1)  # the mean only
