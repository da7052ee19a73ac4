"""A 2D autoencoder on the streaming engine: a batch of per-frame latents, each frame on its own.

Image VAEs see one image at a time, so the engine's ``[1, C, t, h, w]`` steps
become a batch of ``t`` images (:func:`streaming.frames.per_frame`) and back.
Nothing is carried from one frame to the next: every cut of the batch into
steps decodes the same frames.
"""

from __future__ import annotations

import torch

from ...streaming.frames import per_frame
from ...streaming.model import CausalVideoVAE
from ...streaming.traits import Streaming


class FrameBatchVAE(CausalVideoVAE):
    """Subclasses give the four stages on ``[N, C, H, W]`` images; this runs them over the engine's frames."""

    latent_layout = "frames"
    temporal_ratio = 1
    streaming = Streaming("causal")  # nothing looks ahead: a frame needs only itself

    def decode_latent_stage(self, z: torch.Tensor) -> torch.Tensor:
        """Latents -> features on the latent grid (the whole frame)."""
        raise NotImplementedError

    def decode_pixel_stage(self, features: torch.Tensor) -> torch.Tensor:
        """Features of a region -> its pixels in about [-1, 1]."""
        raise NotImplementedError

    def encode_pixel_stage(self, x: torch.Tensor) -> torch.Tensor:
        """Pixels of a region in [-1, 1] -> features on its latent grid."""
        raise NotImplementedError

    def encode_latent_stage(self, features: torch.Tensor) -> torch.Tensor:
        """Whole-frame features -> the latent (the mean, for a KL autoencoder)."""
        raise NotImplementedError

    def decode_shared(self, z: torch.Tensor) -> torch.Tensor:
        return per_frame(self.decode_latent_stage, z)

    def decode_tile(self, features: torch.Tensor) -> torch.Tensor:
        return per_frame(self.decode_pixel_stage, features)

    def encode_tile(self, x: torch.Tensor) -> torch.Tensor:
        return per_frame(self.encode_pixel_stage, x)

    def encode_shared(self, features: torch.Tensor) -> torch.Tensor:
        return per_frame(self.encode_latent_stage, features)
