"""TAESD, the tiny image autoencoders (madebyollin/taesd; diffusers' ``AutoencoderTiny``), over frame batches.

Convs and ReLUs only, no norms and no attention: every output pixel depends on
a finite neighbourhood of the latent, so spatial tiles whose overlap covers
that reach agree with the whole frame (``NormStatistics("position")``, the default).

Module names are diffusers' (``encoder.layers.N``, ``decoder.layers.N``);
:mod:`.checkpoints` renames the host's and madebyollin's layouts.

The host's latent conventions: TAESD works on the latents a diffusion model
samples (SD's VAE latents times 0.18215, ...). The host keeps LATENTs in the
big VAE's raw space, so its TAESD holds ``vae_scale`` / ``vae_shift`` and
decodes ``(z - vae_shift) * vae_scale``, and encodes back with the inverse.
The host's Load VAE adds them for its ``taesd`` / ``taesdxl`` / ``taesd3`` /
``taef1`` entries; a file without them gets 1 and 0, there as here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...errors import FrameStreamError
from ..image.frame_batch import FrameBatchVAE

LATENT_CLAMP = 3.0  # the decoder first squashes its input into (-3, 3) with tanh


@dataclass(frozen=True)
class TinyConfig:
    """Block counts per level, finest first for the encoder and coarsest first for the decoder, as diffusers'
    ``num_encoder_blocks`` / ``num_decoder_blocks``; a missing half (a standalone file) has no counts."""

    latent_channels: int = 4
    width: int = 64  # every TAESD block has the same width
    encoder_blocks: tuple[int, ...] = (1, 3, 3, 3)
    decoder_blocks: tuple[int, ...] = (3, 3, 3, 1)

    @property
    def levels(self) -> int:
        return len(self.encoder_blocks or self.decoder_blocks)


def _conv(n_in: int, n_out: int, **kwargs) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, 3, padding=1, **kwargs)


class TinyBlock(nn.Module):
    """Three 3x3 convs with ReLUs between, plus the input, then a ReLU (widths never change inside TAESD, so the
    1x1 ``skip`` the reference allows for is always the identity)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(_conv(channels, channels), nn.ReLU(), _conv(channels, channels), nn.ReLU(),
                                  _conv(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(x) + x)


class TinyStack(nn.Module):
    """A layer sequence under diffusers' name ``layers``, run in two parts split where the grid becomes the
    latent one: the parts before ``split`` and from it on."""

    def __init__(self, layers: list[nn.Module], split: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(*layers)
        self.split = split

    def first(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers[: self.split](x)

    def rest(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers[self.split :](x)


def tiny_encoder(cfg: TinyConfig) -> TinyStack:
    """Pixels in [0, 1] -> latent; the pixel-resolution part ends with the last stride-2 conv."""
    w = cfg.width
    layers: list[nn.Module] = [_conv(3, w)]
    for level, blocks in enumerate(cfg.encoder_blocks):
        if level:
            layers.append(_conv(w, w, stride=2, bias=False))
        layers += [TinyBlock(w) for _ in range(blocks)]
    split = len(layers) - cfg.encoder_blocks[-1]
    return TinyStack(layers + [_conv(w, cfg.latent_channels)], split)


def tiny_decoder(cfg: TinyConfig) -> TinyStack:
    """Clamped latent -> pixels in about [0, 1]; the latent-resolution part ends before the first upsampling."""
    w = cfg.width
    layers: list[nn.Module] = [_conv(cfg.latent_channels, w), nn.ReLU()]
    split = None
    for level, blocks in enumerate(cfg.decoder_blocks):
        layers += [TinyBlock(w) for _ in range(blocks)]
        if level == len(cfg.decoder_blocks) - 1:
            layers.append(_conv(w, 3))
        else:
            split = len(layers) if split is None else split
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), _conv(w, w, bias=False)]
    return TinyStack(layers, len(layers) if split is None else split)


class TinyAutoencoder(FrameBatchVAE):
    family = "tiny autoencoder (TAESD)"

    def __init__(self, cfg: TinyConfig = TinyConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        self.latent_channels = cfg.latent_channels
        self.spatial_ratio = 2 ** (cfg.levels - 1)
        self.encoder = tiny_encoder(cfg) if cfg.encoder_blocks else None
        self.decoder = tiny_decoder(cfg) if cfg.decoder_blocks else None
        self.register_buffer("vae_scale", torch.tensor(1.0))
        self.register_buffer("vae_shift", torch.tensor(0.0))

    @property
    def finest_width(self) -> int:
        return self.cfg.width

    @property
    def encoder_finest_width(self) -> int:
        return self.cfg.width

    def _half(self, part: str) -> TinyStack:
        half = getattr(self, part)
        if half is None:
            other = "decoder" if part == "encoder" else "encoder"
            raise FrameStreamError(f"this TAESD file holds only the {other}; load a file with both halves (as the "
                                   f"host's taesd entries combine taesd_encoder and taesd_decoder) to use the {part}")
        return half

    def decode_latent_stage(self, z: torch.Tensor) -> torch.Tensor:
        z = (z - self.vae_shift) * self.vae_scale
        return self._half("decoder").first(torch.tanh(z / LATENT_CLAMP) * LATENT_CLAMP)

    def decode_pixel_stage(self, features: torch.Tensor) -> torch.Tensor:
        return self._half("decoder").rest(features).mul(2).sub(1)

    def encode_pixel_stage(self, x: torch.Tensor) -> torch.Tensor:
        return self._half("encoder").first(x.add(1).div(2))

    def encode_latent_stage(self, features: torch.Tensor) -> torch.Tensor:
        return self._half("encoder").rest(features) / self.vae_scale + self.vae_shift
