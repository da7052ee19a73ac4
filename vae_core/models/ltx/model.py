"""The LTX-Video VAE (0.9.x): 8x32x32 compression, 128 latent channels, described layer by layer.

Module names follow diffusers' ``AutoencoderKLLTXVideo``, so its checkpoints load
as they are (:mod:`ltx_checkpoints` renames the original layout).

Why it streams the way it does:

* The encoder is causal: every temporal conv pads its front with copies of the
  first frame, so it streams through :func:`stream.sliding_windows` like Wan's.
* The decoder is not: its convs pad both ends by replicating the edge frames
  and look one frame ahead. Every norm is per position (RMS over channels,
  LayerNorm over channels), so nothing else couples frames, and it streams with
  a delay: each conv holds back the frame it looks ahead to, each residual waits
  for its branch (:func:`state.aligned`), and steps that feed nothing flush the
  clip's end out (:mod:`temporal`). Exact, with no frame computed twice.
* Optional timestep conditioning (0.9.1 and later) scales and shifts per
  channel; it depends only on the decode timestep, not on the window.
* How the convs pad height and width is not in the weights: Lightricks' code
  reads it from the config a checkpoint carries (zeros when silent), while the
  host pads the decoder with reflection when the config is silent. The model
  pads with zeros unless told otherwise (:meth:`LTXVideoVAE.pad_spatially`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...errors import FrameStreamError
from ...streaming.channel_norm import rms_over_channels
from ...streaming.model import CausalVideoVAE
from ...streaming.traits import Streaming
from .base import HOST_DECODE_TIMESTEP, LTXFamilyVAE, patchify
from .noise import SpatialNoise
from ...streaming.conv import NestedCausalConv3d, pace
from ...streaming.state import aligned, drop_first, sliding_windows




@dataclass(frozen=True)
class LTXConfig:
    latent_channels: int = 128
    patch_size: int = 4
    encoder_widths: tuple[int, ...] = (128, 256, 512, 512)
    encoder_layers: tuple[int, ...] = (4, 3, 3, 3, 4)  # resnets per down block, then the mid block
    encoder_scaling: tuple[bool, ...] = (True, True, True, False)
    decoder_widths: tuple[int, ...] = (128, 256, 512, 512)  # listed finest first, as in diffusers' config
    decoder_layers: tuple[int, ...] = (4, 3, 3, 3, 4)
    decoder_scaling: tuple[bool, ...] = (True, True, True, False)
    upsample_residual: tuple[bool, ...] = (False, False, False, False)
    upsample_factor: tuple[int, ...] = (1, 1, 1, 1)
    timestep_conditioning: bool = False
    decoder_noise: tuple[bool, ...] = ()  # per decoder block as decoder_layers (0.9.1's spatial noise); () none


def ltx_conv(in_channels: int, out_channels: int, kernel: int = 3, stride=1, causal: bool = True) -> NestedCausalConv3d:
    """LTX-Video's conv: padded in time by repeating edge frames, in front only (causal, streams) or at both ends."""
    return NestedCausalConv3d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2,
                              time_fill="replicate", causal=causal)


def channel_layer_norm(norm: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    return norm(x.movedim(1, -1)).movedim(-1, 1)


class TimestepEmbedding(nn.Module):
    """Sinusoidal features of the decode timestep (256, cos first) through two linear layers."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.timestep_embedder = nn.Module()
        self.timestep_embedder.linear_1 = nn.Linear(256, dim)
        self.timestep_embedder.linear_2 = nn.Linear(dim, dim)

    def forward(self, t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        half = 128
        freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
        angles = t.float()[:, None] * freqs[None]
        features = torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1).to(dtype)
        layers = self.timestep_embedder
        return layers.linear_2(F.silu(layers.linear_1(features)))


class ResnetBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, causal: bool, conditioned: bool = False,
                 noisy: bool = False) -> None:
        super().__init__()
        self.conv1 = ltx_conv(in_channels, out_channels, causal=causal)
        self.conv2 = ltx_conv(out_channels, out_channels, causal=causal)
        self.norm3 = self.conv_shortcut = None
        if in_channels != out_channels:
            self.norm3 = nn.LayerNorm(in_channels, eps=1e-6)
            self.conv_shortcut = ltx_conv(in_channels, out_channels, kernel=1, causal=causal)
        self.scale_shift_table = nn.Parameter(torch.zeros(4, in_channels)) if conditioned else None
        self.per_channel_scale1 = self.per_channel_scale2 = None
        if noisy:
            self.per_channel_scale1 = nn.Parameter(torch.zeros(in_channels, 1, 1))
            self.per_channel_scale2 = nn.Parameter(torch.zeros(in_channels, 1, 1))
        self.noise: SpatialNoise | None = None  # the model's, set once the decoder is built
        self.noise_index = 0  # of this block's first field
        self.upscale = 1  # its resolution over the latent's

    def _add_noise(self, h: torch.Tensor, which: int, scale: torch.Tensor | None) -> torch.Tensor:
        if scale is None:
            return h
        return h + (self.noise(self.noise_index + which, h) * scale)[None, :, None]

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None = None) -> torch.Tensor:
        h = rms_over_channels(x)
        if self.scale_shift_table is not None:
            shift1, scale1, shift2, scale2 = (temb.unflatten(1, (4, -1)) +
                                              self.scale_shift_table[None, ..., None, None, None]).unbind(1)
            h = h * (1 + scale1) + shift1
        h = self._add_noise(self.conv1(F.silu(h)), 0, self.per_channel_scale1)
        h = rms_over_channels(h)
        if self.scale_shift_table is not None:
            h = h * (1 + scale2) + shift2
        h = self._add_noise(self.conv2(F.silu(h)), 1, self.per_channel_scale2)
        x = aligned(self, x, h.shape[2])
        if self.norm3 is not None:
            x = self.conv_shortcut(channel_layer_norm(self.norm3, x))
        return h + x


def _space_time_to_depth(x: torch.Tensor, stride: tuple[int, int, int]) -> torch.Tensor:
    st, sh, sw = stride
    x = x.unflatten(4, (-1, sw)).unflatten(3, (-1, sh)).unflatten(2, (-1, st))
    return x.permute(0, 1, 3, 5, 7, 2, 4, 6).flatten(1, 4)


def _depth_to_space_time(x: torch.Tensor, stride: tuple[int, int, int]) -> torch.Tensor:
    b, c, t, h, w = x.shape
    st, sh, sw = stride
    x = x.reshape(b, c // (st * sh * sw), st, sh, sw, t, h, w).permute(0, 1, 5, 2, 6, 3, 7, 4)
    return x.flatten(6, 7).flatten(4, 5).flatten(2, 3)


class Downsampler(nn.Module):
    """0.9.5's space/time-to-depth downsampler with an averaged shortcut (causal: one copy of frame 0 in front)."""

    def __init__(self, in_channels: int, out_channels: int, stride: tuple[int, int, int]) -> None:
        super().__init__()
        self.stride = stride
        self.group_size = in_channels * math.prod(stride) // out_channels
        self.conv = ltx_conv(in_channels, out_channels // math.prod(stride))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        st = self.stride[0]
        if st > 1:
            x = sliding_windows(self, x, st, st, st - 1, replicate=True)
            if x is None:
                raise FrameStreamError("LTX temporal downsampling needs whole frame groups per step")
        shortcut = _space_time_to_depth(x, self.stride).unflatten(1, (-1, self.group_size)).mean(dim=2)
        return _space_time_to_depth(self.conv(x), self.stride) + shortcut


class Upsampler(nn.Module):
    """Depth-to-space by ``stride`` (frames, rows, cols), optionally plus the input rearranged the same way.

    Scaling time, the clip's first latent frame stands for one frame: the
    first ``stride_t - 1`` frames of the stream are dropped, however the steps
    cut it (0.9's upsamplers scale all three by 2: a clip gives 8T - 7 frames).
    """

    def __init__(self, in_channels: int, residual: bool, factor: int, stride: tuple[int, int, int] = (2, 2, 2),
                 causal: bool = False) -> None:
        super().__init__()
        self.stride, self.residual, self.factor = stride, residual, factor
        self.conv = ltx_conv(in_channels, in_channels * math.prod(stride) // factor, causal=causal)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        y = _depth_to_space_time(h, self.stride)
        if self.residual:
            repeats = math.prod(self.stride) // self.factor
            y = y + _depth_to_space_time(aligned(self, x, h.shape[2]), self.stride).repeat(1, repeats, 1, 1, 1)
        return drop_first(self, y, self.stride[0] - 1)


class DownBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, layers: int, scaling: bool, kind: str) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(ResnetBlock(in_channels, in_channels, True) for _ in range(layers))
        self.downsamplers = self.conv_out = None
        if scaling and kind == "conv":
            self.downsamplers = nn.ModuleList([ltx_conv(in_channels, in_channels, stride=(2, 2, 2))])
        elif scaling:
            stride = {"spatial": (1, 2, 2), "temporal": (2, 1, 1), "spatiotemporal": (2, 2, 2)}[kind]
            self.downsamplers = nn.ModuleList([Downsampler(in_channels, out_channels, stride)])
        if in_channels != out_channels and kind == "conv":
            self.conv_out = ResnetBlock(in_channels, out_channels, True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for resnet in self.resnets:
            x = resnet(x)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)
        return self.conv_out(x) if self.conv_out is not None else x


class MidBlock(nn.Module):
    def __init__(self, channels: int, layers: int, causal: bool, conditioned: bool = False,
                 noisy: bool = False) -> None:
        super().__init__()
        self.time_embedder = TimestepEmbedding(channels * 4) if conditioned else None
        self.resnets = nn.ModuleList(ResnetBlock(channels, channels, causal, conditioned, noisy)
                                     for _ in range(layers))

    def forward(self, x: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        temb = self.time_embedder(t, x.dtype).view(x.shape[0], -1, 1, 1, 1) if self.time_embedder else None
        for resnet in self.resnets:
            x = resnet(x, temb)
        return x


class UpBlockOrder(nn.Module):
    """LTX's up block order, which LTX-2's keeps: the width's resnet, the upsampling, then the resnets."""

    conv_in: nn.Module | None
    time_embedder: nn.Module | None
    upsamplers: nn.ModuleList | None
    resnets: nn.ModuleList

    def forward(self, x: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        if self.conv_in is not None:
            x = self.conv_in(x, t)  # diffusers hands the raw timestep to conv_in too
        temb = self.time_embedder(t, x.dtype).view(x.shape[0], -1, 1, 1, 1) if self.time_embedder else None
        if self.upsamplers is not None:
            x = self.upsamplers[0](x)
        for resnet in self.resnets:
            x = resnet(x, temb)
        return x


class UpBlock(UpBlockOrder):
    def __init__(self, in_channels: int, out_channels: int, layers: int, scaling: bool, conditioned: bool,
                 residual: bool, factor: int, noisy: bool = False) -> None:
        super().__init__()
        self.time_embedder = TimestepEmbedding(in_channels * 4) if conditioned else None
        self.conv_in = ResnetBlock(in_channels, out_channels, False, conditioned, noisy) \
            if in_channels != out_channels else None
        self.upsamplers = nn.ModuleList([Upsampler(out_channels * factor, residual, factor)]) if scaling else None
        self.resnets = nn.ModuleList(ResnetBlock(out_channels, out_channels, False, conditioned, noisy)
                                     for _ in range(layers))


class Encoder(nn.Module):
    def __init__(self, cfg: LTXConfig, kinds: tuple[str, ...]) -> None:
        super().__init__()
        widths, p = cfg.encoder_widths, cfg.patch_size
        self.conv_in = ltx_conv(3 * p * p, widths[0])
        version_095 = kinds[0] != "conv"
        blocks, out = [], widths[0]
        count = len(widths) - (1 if version_095 else 0)
        for i in range(count):
            inp = out
            out = widths[i + 1] if (version_095 or i + 1 < count) else widths[i]
            blocks.append(DownBlock(inp, out, cfg.encoder_layers[i], cfg.encoder_scaling[i], kinds[i]))
        self.down_blocks = nn.ModuleList(blocks)
        self.mid_block = MidBlock(out, cfg.encoder_layers[-1], causal=True)
        self.conv_out = ltx_conv(out, cfg.latent_channels + 1)


class Decoder(nn.Module):
    def __init__(self, cfg: LTXConfig) -> None:
        super().__init__()
        widths, layers = cfg.decoder_widths[::-1], cfg.decoder_layers[::-1]
        scaling, residual, factor = cfg.decoder_scaling[::-1], cfg.upsample_residual[::-1], cfg.upsample_factor[::-1]
        c = cfg.timestep_conditioning
        noisy = cfg.decoder_noise[::-1] or (False,) * len(layers)
        self.conv_in = ltx_conv(cfg.latent_channels, widths[0], causal=False)
        self.mid_block = MidBlock(widths[0], layers[0], causal=False, conditioned=c, noisy=noisy[0])
        blocks, out = [], widths[0]
        for i in range(len(widths)):
            inp, out = out // factor[i], widths[i] // factor[i]
            blocks.append(UpBlock(inp, out, layers[i + 1], scaling[i], c, residual[i], factor[i], noisy[i + 1]))
        self.up_blocks = nn.ModuleList(blocks)
        self.conv_out = ltx_conv(out, 3 * cfg.patch_size**2, causal=False)
        pace_decoder(self)
        if c:
            self.timestep_scale_multiplier = nn.Parameter(torch.tensor(1000.0))
            self.time_embedder = TimestepEmbedding(out * 2)
            self.scale_shift_table = nn.Parameter(torch.zeros(2, out))


def pace_decoder(decoder: nn.Module) -> None:
    """Tells each of the decoder's convs its frame rate over the latent's (what it lets out per step while the
    clip's end flushes through), and each up block's resnets their resolution over the latent's (for their
    noise fields): every upsampler multiplies them by its strides (LTX-2's may scale time or space alone)."""
    rate = upscale = 1
    for block in decoder.up_blocks:
        if block.conv_in is not None:
            pace(block.conv_in, rate)
            block.conv_in.upscale = upscale
        if block.upsamplers is not None:
            pace(block.upsamplers[0], rate)
            rate *= block.upsamplers[0].stride[0]
            upscale *= block.upsamplers[0].stride[1]
        pace(block.resnets, rate)
        for resnet in block.resnets:
            resnet.upscale = upscale
    pace(decoder.conv_out, rate)


def place_tiles(vae: CausalVideoVAE) -> None:
    """Tiles start at the last up block that scales space: every earlier stage runs on the whole frame.

    The finest block reaches a few of its own pixels per conv, well inside
    the tiles' overlap, so the tiles cross-fade where they already agree; from
    the first upsampler on, the decoder's spatial reach spans many latent
    pixels (with random weights 10 at LTX-2.0's depth), and 64 px of a 32x VAE
    are 2. The whole-frame stages cost memory the tiles do not shrink: their
    share of the finest stage's activations, for the plan (``MemoryProfile.whole_frame_share``).
    """
    blocks = vae.decoder.up_blocks
    scaling = [i for i, b in enumerate(blocks) if b.upsamplers is not None and b.upsamplers[0].stride[1] > 1]
    vae.tile_from = scaling[-1] if scaling else len(blocks)
    space = time = 1
    for block in blocks[: vae.tile_from]:
        if block.upsamplers is not None:
            space, time = space * block.upsamplers[0].stride[1], time * block.upsamplers[0].stride[0]
    if vae.tile_from in (0, len(blocks)):
        vae.memory_profile = replace(vae.memory_profile, whole_frame_share=0.0)  # only latent-resolution stages
        return
    channels = next(m for m in blocks[vae.tile_from].modules() if isinstance(m, nn.Conv3d)).in_channels
    share = channels * space**2 * time / (vae.finest_width * vae.spatial_ratio**2 * vae.temporal_ratio)
    vae.memory_profile = replace(vae.memory_profile, whole_frame_share=share)


class LTXVideoVAE(LTXFamilyVAE):
    family = "LTX-Video VAE"

    def __init__(self, cfg: LTXConfig, down_kinds: tuple[str, ...] = ("conv",) * 4) -> None:
        super().__init__()
        self.cfg = cfg
        self.latent_channels = cfg.latent_channels
        self.spatial_ratio = cfg.patch_size * 2 ** sum(cfg.decoder_scaling)
        self.temporal_ratio = 2 ** sum(cfg.decoder_scaling)
        self.decode_timestep: float | None = None  # 0.9.1+ (timestep-conditioned decoders): e.g. 0.05
        # ComfyUI's LTX latents are normalised by the checkpoint's per-channel statistics; diffusers' VAE takes raw
        self.normalized_latents = False
        self.encoder = Encoder(cfg, down_kinds)
        self.decoder = Decoder(cfg)
        self.first_upsampling = next((i for i, b in enumerate(self.decoder.up_blocks) if b.upsamplers is not None),
                                     len(self.decoder.up_blocks))
        place_tiles(self)
        self.streaming = Streaming("delayed", delay=sum(self.decoder_reach()))
        self.register_buffer("latents_mean", torch.zeros(cfg.latent_channels))
        self.register_buffer("latents_std", torch.ones(cfg.latent_channels))
        self.last_downsampling = max((i for i, b in enumerate(self.encoder.down_blocks) if b.downsamplers is not None),
                                     default=-1)
        self.spatial_padding = ("zeros", "zeros")
        noisy = [m for m in self.decoder.modules() if isinstance(m, ResnetBlock) and m.per_channel_scale1 is not None]
        self.spatial_noise = SpatialNoise([m.upscale for m in noisy for _ in range(2)])  # its seed: 0 by default
        for index, resnet in enumerate(noisy):
            resnet.noise, resnet.noise_index = self.spatial_noise, 2 * index

    def use_host_conventions(self, host_module: nn.Module | None = None) -> "LTXVideoVAE":
        """The host's LATENTs are normalised by the checkpoint's per-channel statistics, and it decodes a
        timestep-conditioned decoder at 0.05 (it also mixes 2.5 % noise into the latent first, which is not
        copied: the result stays deterministic). Padding is not in the weights: the host pads a config-less
        decoder with reflection where Lightricks pads with zeros, so copy what it built."""
        self.normalized_latents = True
        if self.decode_timestep is None:
            self.decode_timestep = HOST_DECODE_TIMESTEP
        if host_module is not None:
            self.pad_like(host_module)
        return self

    def decoder_reach(self) -> tuple[float, float]:
        """How many latent frames away (each side) the latent-resolution stages and the upsampling stages still
        see: every temporal conv adds one frame at its own frame rate. Streamed, their sum is how far the
        decoder's output lags its input (see :class:`model.CausalVideoVAE`)."""
        shared, rate = 1.0, 1  # conv_in
        shared += 2 * len(self.decoder.mid_block.resnets)
        upsampling = 0.0
        for index, block in enumerate(self.decoder.up_blocks):
            reach = (2 if block.conv_in is not None else 0) / rate
            if block.upsamplers is not None:
                reach += 1 / rate
                rate *= 2
            reach += 2 * len(block.resnets) / rate
            if index < self.first_upsampling:
                shared += reach
            else:
                upsampling += reach
        return shared, upsampling + 1 / rate  # conv_out

    def encode_tile(self, x: torch.Tensor) -> torch.Tensor:
        h = self.encoder.conv_in(patchify(x, self.cfg.patch_size))
        for block in self.encoder.down_blocks[: self.last_downsampling + 1]:
            h = block(h)
        return h

    def encode_shared(self, features: torch.Tensor) -> torch.Tensor:
        h = features
        for block in self.encoder.down_blocks[self.last_downsampling + 1 :]:
            h = block(h)
        h = self.encoder.conv_out(F.silu(rms_over_channels(self.encoder.mid_block(h))))[:, : self.latent_channels]
        return self.to_host_space(h)
