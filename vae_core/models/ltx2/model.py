"""The LTX-2 video VAE (2.0 and 2.3): 8x32x32 compression, 128 latent channels, described layer by layer.

Module names follow diffusers' ``AutoencoderKLLTX2Video``, so its checkpoints load
as they are (:mod:`.checkpoints` renames the Lightricks / host layout). The
layers are LTX-Video 0.9's (:mod:`..ltx.model`): parameter-free RMS norms per
position, convs padded in time with copies of the edge frames, space-to-depth
downsamplers, depth-to-space upsamplers, optional timestep conditioning and
decoder noise. What LTX-2 adds is where those layers are generalised here:

* Whether the decoder looks ahead is not in the weights. The release decodes
  with convs padded at both ends: it streams with a delay of its reach
  (:meth:`LTX2VideoVAE.decoder_reach`, 22 latent frames for 2.0), as
  LTX-Video's does. The same weights may be run causally (front padding
  only), which streams like the encoder.
* Upsamplers may scale time, space or both (2.3 mixes all three), each with
  or without the residual shortcut (LTX-Video's upsampler, generalised); a
  clip's first frame group collapses to one frame in each one that scales time.
* Shortcut convs are plain 1x1x1 convs (``conv_shortcut.weight``).
* The decoder pads height and width by reflection in 2.0 and with zeros in 2.3;
  the encoder always with zeros. Neither is in the weights (:mod:`.checkpoints`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...streaming.channel_norm import rms_over_channels
from ...streaming.conv import Conv3d, CausalConv3d
from ...streaming.traits import Streaming
from ..ltx import model as ltx
from ..ltx.base import HOST_DECODE_TIMESTEP, LTXFamilyVAE, patchify
from ..ltx.noise import SpatialNoise
STRIDES = {8: (2, 2, 2), 4: (1, 2, 2), 2: (2, 1, 1)}  # an upsampler's scale (frames x rows x cols) -> its stride


@dataclass(frozen=True)
class LTX2Config:
    """Listed from the pixels inward for the encoder and from the latent outward for the decoder."""

    latent_channels: int = 128
    patch_size: int = 4
    encoder_in_width: int = 128  # conv_in's output
    encoder_widths: tuple[int, ...] = (256, 512, 1024, 2048)  # each down block's output
    encoder_layers: tuple[int, ...] = (4, 6, 6, 2)  # resnets per down block
    encoder_kinds: tuple[str, ...] = ("spatial", "temporal", "spatiotemporal", "spatiotemporal")
    encoder_mid_layers: int = 2
    decoder_in_width: int = 1024  # conv_in's output, the mid block's width
    decoder_mid_layers: int = 5
    decoder_widths: tuple[int, ...] = (512, 256, 128)  # each up block's resnet width
    decoder_layers: tuple[int, ...] = (5, 5, 5)
    decoder_conv_in: tuple[bool, ...] = (False, False, False)  # an up block that changes width first
    upsample_strides: tuple[tuple[int, int, int] | None, ...] = ((2, 2, 2),) * 3
    upsample_residual: tuple[bool, ...] = (True,) * 3
    upsample_factor: tuple[int, ...] = (2,) * 3  # channel reduction of each upsampler's input
    decoder_noise: tuple[bool, ...] = (False,) * 4  # the mid block's resnets, then each up block's
    timestep_conditioning: bool = False
    decoder_causal: bool = False


class ResnetBlock(ltx.ResnetBlock):
    """LTX-Video's resnet, its width-changing shortcut a plain 1x1x1 conv as LTX-2 stores it."""

    def __init__(self, in_channels: int, out_channels: int, causal: bool, conditioned: bool = False,
                 noisy: bool = False) -> None:
        super().__init__(in_channels, out_channels, causal, conditioned, noisy)
        if self.conv_shortcut is not None:  # frame by frame: nothing to stream
            self.conv_shortcut = Conv3d(in_channels, out_channels, 1)


class DownBlock(nn.Module):
    """Resnets at the input width, then one downsampler to the output width (no conv_out, unlike 0.9.0)."""

    def __init__(self, in_channels: int, out_channels: int, layers: int, kind: str) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(ResnetBlock(in_channels, in_channels, True) for _ in range(layers))
        if kind == "conv":
            down = ltx.ltx_conv(in_channels, in_channels, stride=(2, 2, 2))
        else:
            stride = {"spatial": (1, 2, 2), "temporal": (2, 1, 1), "spatiotemporal": (2, 2, 2)}[kind]
            down = ltx.Downsampler(in_channels, out_channels, stride)
        self.downsamplers = nn.ModuleList([down])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for resnet in self.resnets:
            x = resnet(x)
        return self.downsamplers[0](x)


class UpBlock(ltx.UpBlockOrder):
    def __init__(self, cfg: LTX2Config, index: int, in_channels: int) -> None:
        super().__init__()
        width, factor, stride = cfg.decoder_widths[index], cfg.upsample_factor[index], cfg.upsample_strides[index]
        causal, conditioned = cfg.decoder_causal, cfg.timestep_conditioning
        noisy = cfg.decoder_noise[index + 1]
        block_in = in_channels // factor  # diffusers' naming: the time embedder is sized by it
        self.time_embedder = ltx.TimestepEmbedding(block_in * 4) if conditioned else None
        self.conv_in = ResnetBlock(block_in, width, causal, conditioned, noisy) if cfg.decoder_conv_in[index] else None
        self.upsamplers = None
        if stride is not None:
            self.upsamplers = nn.ModuleList([ltx.Upsampler(width * factor, cfg.upsample_residual[index], factor,
                                                           stride, causal)])
        self.resnets = nn.ModuleList(ResnetBlock(width, width, causal, conditioned, noisy)
                                     for _ in range(cfg.decoder_layers[index]))



class Encoder(nn.Module):
    def __init__(self, cfg: LTX2Config) -> None:
        super().__init__()
        self.conv_in = ltx.ltx_conv(3 * cfg.patch_size**2, cfg.encoder_in_width)
        widths = (cfg.encoder_in_width, *cfg.encoder_widths)
        self.down_blocks = nn.ModuleList(DownBlock(widths[i], widths[i + 1], cfg.encoder_layers[i], kind)
                                         for i, kind in enumerate(cfg.encoder_kinds))
        self.mid_block = ltx.MidBlock(widths[-1], cfg.encoder_mid_layers, causal=True)
        self.conv_out = ltx.ltx_conv(widths[-1], cfg.latent_channels + 1)


class Decoder(nn.Module):
    def __init__(self, cfg: LTX2Config) -> None:
        super().__init__()
        causal, conditioned = cfg.decoder_causal, cfg.timestep_conditioning
        self.conv_in = ltx.ltx_conv(cfg.latent_channels, cfg.decoder_in_width, causal=causal)
        self.mid_block = ltx.MidBlock(cfg.decoder_in_width, cfg.decoder_mid_layers, causal, conditioned,
                                      cfg.decoder_noise[0])
        blocks, width = [], cfg.decoder_in_width
        for index in range(len(cfg.decoder_widths)):
            blocks.append(UpBlock(cfg, index, width))
            width = cfg.decoder_widths[index]
        self.up_blocks = nn.ModuleList(blocks)
        self.conv_out = ltx.ltx_conv(width, 3 * cfg.patch_size**2, causal=causal)
        if conditioned:
            self.timestep_scale_multiplier = nn.Parameter(torch.tensor(1000.0))
            self.time_embedder = ltx.TimestepEmbedding(width * 2)
            self.scale_shift_table = nn.Parameter(torch.zeros(2, width))
        ltx.pace_decoder(self)


class LTX2VideoVAE(LTXFamilyVAE):
    family = "LTX-2 VAE"

    def __init__(self, cfg: LTX2Config) -> None:
        super().__init__()
        self.cfg = cfg
        self.latent_channels = cfg.latent_channels
        strides = [s for s in cfg.upsample_strides if s is not None]
        self.spatial_ratio = cfg.patch_size * math.prod(s[1] for s in strides)
        self.temporal_ratio = math.prod(s[0] for s in strides)
        self.decode_timestep: float | None = None  # a timestep-conditioned decoder needs one (Lightricks: 0.05)
        # the host's LTX latents are normalised by the checkpoint's per-channel statistics; diffusers' VAE takes raw
        self.normalized_latents = False
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.first_upsampling = next((i for i, b in enumerate(self.decoder.up_blocks) if b.upsamplers is not None),
                                     len(self.decoder.up_blocks))
        ltx.place_tiles(self)
        self.register_buffer("latents_mean", torch.zeros(cfg.latent_channels))
        self.register_buffer("latents_std", torch.ones(cfg.latent_channels))
        self.spatial_padding = ("zeros", "zeros")
        noisy = [m for m in self.decoder.modules()
                 if isinstance(m, ltx.ResnetBlock) and m.per_channel_scale1 is not None]
        self.spatial_noise = SpatialNoise([m.upscale for m in noisy for _ in range(2)])  # its seed: 0 by default
        for index, resnet in enumerate(noisy):
            resnet.noise, resnet.noise_index = self.spatial_noise, 2 * index
        self._set_streaming()

    def _set_streaming(self) -> None:
        """A causal decoder streams; one that looks ahead streams with a delay of its reach."""
        causal = self.cfg.decoder_causal
        self.streaming = Streaming("causal") if causal else Streaming("delayed", delay=sum(self.decoder_reach()))

    def decode_causally(self, causal: bool) -> "LTX2VideoVAE":
        """Runs the decoder's convs with front padding only (``True``: streams) or padded at both ends (the
        release). The weights are the same; the frames are not, so it must match what the weights were trained
        with (Lightricks' config calls it ``causal_decoder``, diffusers ``decoder_causal``)."""
        for conv in self.decoder.modules():
            if isinstance(conv, CausalConv3d):
                conv.causal = causal
                conv.time_padding = 2 * (conv.kernel_size[0] // 2) if causal else conv.kernel_size[0] // 2
        self.cfg = replace(self.cfg, decoder_causal=causal)
        self._set_streaming()
        return self

    def use_host_conventions(self, host_module: nn.Module | None = None) -> "LTX2VideoVAE":
        """The host's LATENTs are normalised by the checkpoint's per-channel statistics, and it decodes a
        timestep-conditioned decoder at 0.05 (it also mixes 2.5 % noise into the latent first, which is not
        copied: the result stays deterministic). Padding and causality are not in the weights: copy what the
        host built from the file's config."""
        self.normalized_latents = True
        if self.decode_timestep is None:
            self.decode_timestep = HOST_DECODE_TIMESTEP
        if host_module is not None:
            self.pad_like(host_module)
            causal = getattr(getattr(host_module, "decoder", None), "causal", None)
            if isinstance(causal, bool) and causal != self.cfg.decoder_causal:
                self.decode_causally(causal)
        return self

    def decoder_reach(self) -> tuple[float, float]:
        """How many latent frames away (each side) the latent-resolution stages and the upsampling stages see:
        every conv that looks along time adds one frame at its own frame rate (none when causal: nothing ahead
        is seen). Streamed, their sum is how far the decoder's output lags its input."""
        if self.cfg.decoder_causal:
            return 0.0, 0.0
        reaches = self._block_reaches()
        shared = 1.0 + 2 * len(self.decoder.mid_block.resnets) + sum(reaches[: self.first_upsampling])  # + conv_in
        return shared, sum(reaches[self.first_upsampling :]) + 1 / self.temporal_ratio  # + conv_out

    def _block_reaches(self) -> list[float]:
        """Each up block's reach in latent frames, at the frame rates it works at."""
        reaches, rate = [], 1
        for block in self.decoder.up_blocks:
            reach = (2 if block.conv_in is not None else 0) / rate
            if block.upsamplers is not None:
                reach += 1 / rate
                rate *= block.upsamplers[0].stride[0]
            reaches.append(reach + 2 * len(block.resnets) / rate)
        return reaches

    def encode_tile(self, x: torch.Tensor) -> torch.Tensor:
        h = self.encoder.conv_in(patchify(x, self.cfg.patch_size))
        for block in self.encoder.down_blocks:
            h = block(h)
        return h

    def encode_shared(self, features: torch.Tensor) -> torch.Tensor:
        h = self.encoder.mid_block(features)
        h = self.encoder.conv_out(F.silu(rms_over_channels(h)))[:, : self.latent_channels]
        return self.to_host_space(h)
