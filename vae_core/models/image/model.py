"""The SD-style image VAEs (SD 1.x/2.x, SDXL, SD3, Flux, Flux 2) over a batch of per-frame latents.

Everything stays in the host's raw VAE space: ComfyUI's LATENT for these models
is what the VAE itself gives (the encoder's mean), and the latent scale and
shift factors (SD's 0.18215, Flux's 0.3611 / 0.1159) are applied by the
samplers, never by VAE Decode or Encode.

Flux 2 is the exception that the host folds into the VAE: its checkpoint holds
a BatchNorm's running statistics (``bn``), and the host's LATENT is the
32-channel mean cut into 2x2 patches (128 channels, 16x) and normalised by
them, with no further scaling in the sampler. This model does the same, so a
Flux 2 latent from the host decodes here as it does there.

Why it tiles the way it does: every GroupNorm pools over a whole frame, which
a spatial tile cannot see, so ``NormStatistics("chunk")`` lets the engine
gather each norm's statistics over all tiles of a step first (each frame is its
own batch row, so they stay per frame). The mid block's attention runs at
latent resolution on the whole frame, in :meth:`decode_latent_stage`.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .blocks import AutoencoderConfig, Decoder, Encoder
from .frame_batch import FrameBatchVAE
from ...streaming.traits import NormStatistics

FLUX2_PATCH = 2
BATCH_NORM_EPS = 1e-4  # not in the weights; Flux 2's (diffusers' ``batch_norm_eps``, the host's ``bn_eps``)


class LatentNorm(nn.Module):
    """Flux 2's fixed per-channel normalisation of the patched latent: a BatchNorm's running statistics only
    (stored as ``bn.running_mean`` / ``bn.running_var``), applied the same way in any train/eval mode."""

    def __init__(self, channels: int, eps: float = BATCH_NORM_EPS) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def _stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = self.running_mean.to(x.dtype).view(1, -1, 1, 1)
        std = (self.running_var.float() + self.eps).sqrt().to(x.dtype).view(1, -1, 1, 1)
        return mean, std

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = self._stats(x)
        return (x - mean) / std

    def denormalise(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = self._stats(x)
        return x * std + mean


class ImageVAE(FrameBatchVAE):
    """``quant_convs``: SD 1.x/2.x and SDXL have 1x1 convs around the latent, SD3 and Flux do not.
    ``latent_norm``: Flux 2's normalised 2x2 patches (see the module docstring)."""

    family = "image VAE (SD 1.x/2.x, SDXL, SD3, Flux, Flux 2)"
    norms = NormStatistics("chunk")

    def __init__(self, cfg: AutoencoderConfig = AutoencoderConfig(), quant_convs: bool = True,
                 latent_norm: bool = False) -> None:
        super().__init__()
        self.cfg = cfg
        self.patch = FLUX2_PATCH if latent_norm else 1
        self.latent_channels = cfg.latent_channels * self.patch**2
        self.spatial_ratio = 2 ** (cfg.levels - 1) * self.patch
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        if quant_convs:
            self.quant_conv = nn.Conv2d(2 * cfg.latent_channels, 2 * cfg.latent_channels, 1)
            self.post_quant_conv = nn.Conv2d(cfg.latent_channels, cfg.latent_channels, 1)
        if latent_norm:
            self.bn = LatentNorm(self.latent_channels)

    @property
    def finest_width(self) -> int:
        return self.cfg.decoder_block_widths[0]

    @property
    def encoder_finest_width(self) -> int:
        return self.cfg.widths[0]

    def _to_grid(self, x: torch.Tensor) -> torch.Tensor:
        """Flux 2's 2x2 patches into channels, so features sit on the latent grid the engine tiles."""
        return F.pixel_unshuffle(x, self.patch) if self.patch > 1 else x

    def _from_grid(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(x, self.patch) if self.patch > 1 else x

    def decode_latent_stage(self, z: torch.Tensor) -> torch.Tensor:
        """post_quant_conv, conv_in and the mid block (its attention sees the whole frame)."""
        if hasattr(self, "bn"):
            z = self.bn.denormalise(z)
        z = self._from_grid(z)
        if hasattr(self, "post_quant_conv"):
            z = self.post_quant_conv(z)
        return self._to_grid(self.decoder.shared_part(z))

    def decode_pixel_stage(self, features: torch.Tensor) -> torch.Tensor:
        """The up blocks, norm_out, SiLU and conv_out: the raw decoder output (the host clamps it later)."""
        return self.decoder.tile_part(self._from_grid(features))

    def encode_pixel_stage(self, x: torch.Tensor) -> torch.Tensor:
        return self._to_grid(self.encoder.tile_part(x))

    def encode_latent_stage(self, features: torch.Tensor) -> torch.Tensor:
        """The mid block, norm_out, SiLU, conv_out and quant_conv; the mean half of the moments (the host's
        ``mode()``), never a sample."""
        moments = self.encoder.shared_part(self._from_grid(features))
        if hasattr(self, "quant_conv"):
            moments = self.quant_conv(moments)
        mean = self._to_grid(moments[:, : self.cfg.latent_channels])
        return self.bn.normalise(mean) if hasattr(self, "bn") else mean
