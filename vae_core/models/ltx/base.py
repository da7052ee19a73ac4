"""What LTX-Video 0.9 and LTX-2 share: options, spatial padding, the latents' statistics, the decoding stages, and
the patching helpers. Both models subclass :class:`LTXFamilyVAE`; each builds its own encoder and decoder.

A subclass provides ``cfg`` (with ``patch_size`` and ``timestep_conditioning``), ``encoder`` and ``decoder``
(``conv_in``, ``mid_block``, ``up_blocks``, ``conv_out``, and for a conditioned decoder ``time_embedder``,
``scale_shift_table``, ``timestep_scale_multiplier``), ``tile_from`` (:func:`model.place_tiles`),
``latents_mean`` / ``latents_std`` buffers and a ``spatial_noise``.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...errors import FrameStreamError
from ...streaming.channel_norm import rms_over_channels
from ...streaming.model import CausalVideoVAE
from ...streaming.traits import MemoryProfile

SPATIAL_PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
HOST_DECODE_TIMESTEP = 0.05  # what the host's LTX VAEs decode a timestep-conditioned decoder at


def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """``p`` x ``p`` pixel patches into channels, in diffusers' order: channel-major, then the patch's column,
    then its row."""
    b, c, t, h, w = x.shape
    x = x.reshape(b, c, t, 1, h // p, p, w // p, p)
    return x.permute(0, 1, 3, 7, 5, 2, 4, 6).flatten(1, 4)


def unpatchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """The inverse of :func:`patchify`."""
    b, c, t, h, w = x.shape
    x = x.reshape(b, c // (p * p), 1, p, p, t, h, w).permute(0, 1, 5, 2, 6, 4, 7, 3)
    return x.flatten(6, 7).flatten(4, 5).flatten(2, 3)


def padding_mode(part: nn.Module | None) -> str:
    """How a host module's encoder or decoder pads its first conv (the host's ``conv_in.conv``)."""
    conv = getattr(getattr(part, "conv_in", None), "conv", None)
    return getattr(conv, "padding_mode", "zeros")


class LTXFamilyVAE(CausalVideoVAE):
    # a tile runs only the last up block (:func:`model.place_tiles`), which holds 9 finest-size tensors of the
    # tile at its peak (measured for 0.9 and LTX-2, docs/ltx2.md "Plan"); untiled, the default
    memory_profile = MemoryProfile(live_in_tiles=9.0)

    def configure(self, normalized_latents: bool | None = None, decode_timestep: float | None = None,
                  noise_seed: int | None = None) -> "LTXFamilyVAE":
        if normalized_latents is not None:
            self.normalized_latents = normalized_latents
        if decode_timestep is not None and self.cfg.timestep_conditioning:
            self.decode_timestep = decode_timestep
        if noise_seed is not None:
            self.spatial_noise.seed = noise_seed
        return self

    def pad_spatially(self, encoder: str, decoder: str) -> "LTXFamilyVAE":
        """Sets how the encoder's and the decoder's convs pad height and width (a ``padding_mode`` of
        nn.Conv3d). It changes every frame's border pixels, so it must match what the weights were trained
        with."""
        for part, mode in ((self.encoder, encoder), (self.decoder, decoder)):
            if mode not in SPATIAL_PADDING_MODES:
                raise FrameStreamError(f"unknown spatial padding {mode!r} for the {self.family}; expected one of "
                                       f"{', '.join(SPATIAL_PADDING_MODES)}")
            for conv in part.modules():
                if isinstance(conv, nn.Conv3d):
                    conv.padding_mode = mode
        self.spatial_padding = (encoder, decoder)
        return self

    def pad_like(self, host_module: nn.Module) -> "LTXFamilyVAE":
        """The spatial padding the host built its module with (padding is not in the weights)."""
        return self.pad_spatially(*(padding_mode(getattr(host_module, part, None)) for part in ("encoder", "decoder")))

    @property
    def finest_width(self) -> int:
        return self.decoder.conv_out.conv.in_channels / self.cfg.patch_size**2

    @property
    def encoder_finest_width(self) -> int:
        return self.encoder.conv_in.conv.out_channels / self.cfg.patch_size**2

    def latent_statistics(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The checkpoint's per-channel mean and standard deviation of latents, shaped and placed like ``like``."""
        return tuple(v.to(like.device, like.dtype).view(1, -1, 1, 1, 1) for v in (self.latents_mean, self.latents_std))

    def to_host_space(self, latent: torch.Tensor) -> torch.Tensor:
        """A raw latent in the space the LATENTs come in (normalised by the statistics, as the host holds them)."""
        if not self.normalized_latents:
            return latent
        mean, std = self.latent_statistics(latent)
        return (latent - mean) / std

    def from_host_space(self, latent: torch.Tensor) -> torch.Tensor:
        """The inverse of :meth:`to_host_space`: the VAE's own raw latent."""
        if not self.normalized_latents:
            return latent
        mean, std = self.latent_statistics(latent)
        return latent * std + mean

    def decode_timestep_for(self, z: torch.Tensor) -> torch.Tensor | None:
        """The (scaled) timestep a conditioned decoder decodes at, per video; None when it is not conditioned."""
        if not self.cfg.timestep_conditioning:
            return None
        if self.decode_timestep is None:
            raise FrameStreamError(f"this {self.family}'s decoder is conditioned on a timestep; set decode_timestep "
                                   "(configure(decode_timestep=0.05), as Lightricks' pipelines and the host decode)")
        t = torch.full((z.shape[0],), self.decode_timestep, device=z.device, dtype=z.dtype)
        return t * self.decoder.timestep_scale_multiplier

    def decode_shared(self, z: torch.Tensor) -> torch.Tensor:
        z = self.from_host_space(z)
        t = self.decode_timestep_for(z)
        x = self.decoder.mid_block(self.decoder.conv_in(z), t)
        for block in self.decoder.up_blocks[: self.tile_from]:
            x = block(x, t)
        return x

    def decode_tile(self, features: torch.Tensor) -> torch.Tensor:
        t = self.decode_timestep_for(features)
        x = features
        for block in self.decoder.up_blocks[self.tile_from :]:
            x = block(x, t)
        x = rms_over_channels(x)
        if t is not None:
            temb = self.decoder.time_embedder(t, x.dtype).view(x.shape[0], 2, -1, 1, 1, 1)
            shift, scale = (temb + self.decoder.scale_shift_table[None, ..., None, None, None]).unbind(1)
            x = x * (1 + scale) + shift
        return unpatchify(self.decoder.conv_out(F.silu(x)), self.cfg.patch_size)
