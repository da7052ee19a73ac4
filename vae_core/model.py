"""What the streaming engine needs to know about a causal video VAE."""

from __future__ import annotations

import torch
import torch.nn as nn


class CausalVideoVAE(nn.Module):
    """A VAE whose encoder and decoder stream along time through :mod:`stream` layers.

    Subclasses describe their layers and implement ``decode_chunk`` /
    ``encode_chunk`` for one chunk of consecutive frames; the engine decides
    how to cut a video into chunks and where the frames go.

    Convention (the host's and the reference's): the first latent frame
    stands for one pixel frame, every later one for ``temporal_ratio`` frames.
    """

    family: str = "video VAE"
    latent_channels: int
    temporal_ratio: int
    spatial_ratio: int
    finest_width: int  # decoder channels per full-resolution pixel, for memory estimates

    def decode_chunk(self, z: torch.Tensor) -> torch.Tensor:
        """``[B, latent_channels, t, h, w]`` latent -> ``[B, 3, t', H, W]`` pixels in about [-1, 1]."""
        raise NotImplementedError

    def encode_chunk(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, t, H, W]`` pixels in [-1, 1] -> the latent mean, ``[B, latent_channels, t', h, w]``."""
        raise NotImplementedError

    def pixel_frames(self, latent_frames: int) -> int:
        return 1 + self.temporal_ratio * (latent_frames - 1)

    def latent_frames(self, pixel_frames: int) -> int:
        """Latent length for a clip; trailing frames that do not fill a group are dropped, as the host does."""
        return 1 + (pixel_frames - 1) // self.temporal_ratio

    @property
    def weight_dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    @property
    def weight_device(self) -> torch.device:
        return next(self.parameters()).device
