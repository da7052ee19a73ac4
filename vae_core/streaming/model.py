"""What the streaming engine needs to know about a causal video VAE."""

from __future__ import annotations

import torch
import torch.nn as nn

from .traits import LatentLayout, MemoryProfile, NormStatistics, Streaming


class CausalVideoVAE(nn.Module):
    """A VAE whose encoder and decoder stream along time through :mod:`stream` layers.

    Subclasses describe their layers and split each direction in two: the part
    at latent resolution, run on the whole frame (it is cheap there, and whole-
    frame attention sees everything), and the high-resolution part, which the
    engine may run tile by tile. The engine decides how to cut a video into
    chunks and tiles and where the frames go.

    Convention (the host's and the reference's): the first latent frame
    stands for one pixel frame, every later one for ``temporal_ratio`` frames.
    """

    family: str = "video VAE"
    latent_layout: LatentLayout = "video"  # see :mod:`traits`
    latent_channels: int
    temporal_ratio: int
    spatial_ratio: int
    finest_width: int  # decoder channels per full-resolution pixel, for memory estimates
    encoder_finest_width: int  # the same for the encoder
    # how the engine may cut, normalise and plan this family (:mod:`traits`); a model states them as class
    # attributes, or in ``__init__`` where they follow from its config
    streaming: Streaming = Streaming()
    norms: NormStatistics = NormStatistics()
    memory_profile: MemoryProfile = MemoryProfile()

    def decode_shared(self, z: torch.Tensor) -> torch.Tensor:
        """``[B, latent_channels, t, h, w]`` latent -> features on the same ``h x w`` grid (whole frame)."""
        raise NotImplementedError

    def decode_tile(self, features: torch.Tensor) -> torch.Tensor:
        """Features of a region of the grid -> ``[B, 3, t', H, W]`` pixels of that region, in about [-1, 1]."""
        raise NotImplementedError

    def encode_tile(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, t, H, W]`` pixels in [-1, 1] of a region -> features on its latent grid."""
        raise NotImplementedError

    def encode_shared(self, features: torch.Tensor) -> torch.Tensor:
        """Whole-frame features -> the latent mean, ``[B, latent_channels, t', h, w]``."""
        raise NotImplementedError

    def decode_chunk(self, z: torch.Tensor) -> torch.Tensor:
        """One untiled chunk: latent -> pixels."""
        return self.decode_tile(self.decode_shared(z))

    def encode_chunk(self, x: torch.Tensor) -> torch.Tensor:
        """One untiled chunk: pixels -> latent mean."""
        return self.encode_shared(self.encode_tile(x))

    def decode_steps(self, length: int, per_step: int) -> list[tuple[int, int]]:
        """Latent spans ``[start, stop)`` a causal decode advances by. A model whose output depends on how the
        clip is cut (CogVideoX normalises each of its chunks on its own) overrides this with its own cut."""
        return [(start, min(start + per_step, length)) for start in range(0, length, per_step)]

    def encode_steps(self, pixel_frames: int, latents_per_step: int) -> list[tuple[int, int]]:
        """Pixel spans ``[start, stop)`` a causal encode advances by: the first frame, then whole latent groups."""
        spans = [(0, 1)]
        while spans[-1][1] < pixel_frames:
            start = spans[-1][1]
            spans.append((start, min(start + self.temporal_ratio * latents_per_step, pixel_frames)))
        return spans

    def decoded_frames(self, latent_frames: int) -> int:
        """Pixel frames a decode of ``latent_frames`` yields (CogVideoX gives ``4n`` for even ``n``)."""
        return self.pixel_frames(latent_frames)

    def pixel_frames(self, latent_frames: int) -> int:
        return 1 + self.temporal_ratio * (latent_frames - 1)

    def latent_frames(self, pixel_frames: int) -> int:
        """Latent length for a clip; trailing frames that do not fill a group are dropped, as the host does."""
        return 1 + (pixel_frames - 1) // self.temporal_ratio

    @property
    def min_frame_px(self) -> int:
        """The smallest frame side the encoder takes."""
        return self.spatial_ratio

    @property
    def frame_counts(self) -> str:
        """The clip lengths the model takes whole, for messages."""
        return f"1 + {self.temporal_ratio}k"

    def check_length(self, latent_frames: int) -> None:
        """Raises :class:`FrameStreamError` for a latent length the model cannot have made (most take any)."""

    def use_host_conventions(self, host_module: nn.Module | None = None) -> "CausalVideoVAE":
        """Switches to the host's (ComfyUI's) conventions for this family's LATENTs, and copies what
        ``host_module`` (the host's own loaded module, when the weights came from it) was built with beyond its
        weights. Most families need nothing."""
        return self

    def configure(self, normalized_latents: bool | None = None, decode_timestep: float | None = None,
                  noise_seed: int | None = None) -> "CausalVideoVAE":
        """Options only some families have: latents normalised by per-channel statistics, the timestep a
        conditioned decoder decodes at, the seed of noise a decoder adds. None keeps the current value; families
        without the option ignore it."""
        return self

    @property
    def weight_dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    @property
    def weight_device(self) -> torch.device:
        return next(self.parameters()).device
