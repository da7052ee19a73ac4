"""The Stable Video Diffusion VAE: the SD image encoder and a temporal decoder, 8x spatial, 4 latent channels.

The host's SVD LATENT is a batch of image latents ``[T, 4, h, w]``, one per
frame, all one video (``latent_layout = "frames"``): the engine hands the model
``[1, 4, T, h, w]`` and ``temporal_ratio`` is 1. The LATENT is raw VAE space
(the samplers apply SD's 0.18215), so the host needs no conventions here.

Why it decodes the way it does:

* The encoder is the image VAE's, frame by frame: nothing crosses frames.
* The decoder looks ahead: its temporal convs pad both ends of the clip with
  zeros. It cannot stream, so the engine decodes overlapping windows whose halos
  cover the convs' reach (:meth:`TemporalDecoder.reach`): 2 frames per temporal
  resnet, 1 for ``time_conv_out``; the mid block's 4 at latent resolution get
  their own ``shared_halo``. Windows then give the whole clip's frames.
* The temporal resnets' GroupNorms pool over the whole clip
  (``NormStatistics("clip")``): the engine gathers their statistics in passes
  before the one that writes, counting each window's core frames once. diffusers'
  pipeline instead decodes ``decode_chunk_size`` frames per call, each chunk
  with its own statistics and its own zero padding, which changes the frames at
  every chunk boundary.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ...streaming.frames import per_frame
from ...streaming.model import CausalVideoVAE
from ...streaming.traits import NormStatistics, Streaming
from ..image.blocks import AutoencoderConfig, Encoder
from .layers import TemporalDecoder, frame_norms


class SVDVAE(CausalVideoVAE):
    """``mid_layers``: resnets of the decoder's mid block (diffusers ties it to ``layers_per_block``, the original
    layout always has 2). ``quant_conv``: diffusers' layout has the 1x1 conv after the encoder, the original
    (Stability's ``AutoencodingEngine``) has none."""

    family = "Stable Video Diffusion VAE"
    latent_layout = "frames"
    temporal_ratio = 1
    # the image encoder's norms see one frame each: nothing to gather. 1 gathering pass gave 47-62 dB on random
    # weights, 2 gave 52-69 dB (README, "Stable Video Diffusion")
    norms = NormStatistics("clip", encoder="frame", passes=2)

    def __init__(self, cfg: AutoencoderConfig = AutoencoderConfig(), mid_layers: int = 2,
                 quant_conv: bool = True) -> None:
        super().__init__()
        self.cfg = cfg
        self.latent_channels = cfg.latent_channels
        self.spatial_ratio = 2 ** (cfg.levels - 1)
        self.encoder = frame_norms(Encoder(cfg))
        if quant_conv:
            self.quant_conv = nn.Conv2d(2 * cfg.latent_channels, 2 * cfg.latent_channels, 1)
        self.decoder = TemporalDecoder(cfg, mid_layers)
        shared_halo, halo = self.decoder.reach()
        # cores as wide as the halo: a window is at most three cores, so a long clip costs at most ~3x its whole
        # decode, and SVD's own clips (14 or 25 frames: the release's halo is 25) decode in a single window; the
        # halos cover the reach, so there is nothing to cross-fade
        self.streaming = Streaming("windows", core=halo, halo=halo, blend=0, shared_halo=shared_halo)

    @property
    def finest_width(self) -> int:
        return self.cfg.widths[0]

    @property
    def encoder_finest_width(self) -> int:
        return self.cfg.widths[0]

    def decode_shared(self, z: torch.Tensor) -> torch.Tensor:
        """``conv_in`` and the mid block (its attention sees the whole frame)."""
        return self.decoder.shared_part(z)

    def decode_tile(self, features: torch.Tensor) -> torch.Tensor:
        """The up blocks, ``conv_norm_out``, SiLU, ``conv_out`` and ``time_conv_out``: the raw decoder output."""
        return self.decoder.tile_part(features)

    def encode_tile(self, x: torch.Tensor) -> torch.Tensor:
        return per_frame(self.encoder.tile_part, x)

    def encode_shared(self, features: torch.Tensor) -> torch.Tensor:
        return per_frame(self._latent_mean, features)

    def _latent_mean(self, features: torch.Tensor) -> torch.Tensor:
        """The mid block, norm, conv_out and quant_conv; the mean half of the moments (never a sample)."""
        moments = self.encoder.shared_part(features)
        if hasattr(self, "quant_conv"):
            moments = self.quant_conv(moments)
        return moments[:, : self.latent_channels]
