"""The Wan 2.1 and Wan 2.2 video VAEs, described layer by layer.

Module names follow the original checkpoints (``encoder.downsamples.3.residual.2``,
``decoder.middle.1.to_qkv`` ...), which is also the host's layout, so a loaded
host model's parameters can be shared as they are. Streaming comes from the
layers in :mod:`layers`; nothing here knows about chunks.

Wan 2.1: z=16, 4x8x8, flat lists of residual blocks and resamplers.
Wan 2.2: z=48, 4x16x16 (2x2 patchify into 12 channels), residual down/up
blocks whose shortcuts average or duplicate pixels instead of learning them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from .layers import AvgDown3D, DupUp3D, FrameAttention, Resample, ResidualBlock, RMSNorm
from ...streaming.model import CausalVideoVAE
from ...streaming.conv import CausalConv3d


@dataclass(frozen=True)
class WanConfig:
    version: str = "2.1"
    z_dim: int = 16
    dim: int = 96
    decoder_dim: int = 96
    dim_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    temporal_down: tuple[bool, ...] = (False, True, True)

    @property
    def residual(self) -> bool:
        return self.version == "2.2"

    @property
    def patch_size(self) -> int:
        return 2 if self.residual else 1

    @property
    def temporal_up(self) -> tuple[bool, ...]:
        return self.temporal_down[::-1]

    @classmethod
    def wan21(cls, dim: int = 96) -> "WanConfig":
        return cls("2.1", 16, dim, dim)

    @classmethod
    def wan22(cls, dim: int = 160, decoder_dim: int = 256) -> "WanConfig":
        return cls("2.2", 48, dim, decoder_dim)


def _middle(dim: int) -> nn.Sequential:
    return nn.Sequential(ResidualBlock(dim, dim), FrameAttention(dim), ResidualBlock(dim, dim))


def _head(dim: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(RMSNorm(dim), nn.SiLU(inplace=True), CausalConv3d(dim, out_channels, 3, padding=1))


def _resamples(stage: nn.Module) -> bool:
    """Whether a stage changes the spatial grid (where tiles begin or end)."""
    return any(isinstance(m, Resample) for m in stage.modules())


def _stages(widths: list[int]) -> list[tuple[int, int, int, bool]]:
    """(index, in, out, is_last) for consecutive width pairs."""
    pairs = list(zip(widths[:-1], widths[1:]))
    return [(i, a, b, i == len(pairs) - 1) for i, (a, b) in enumerate(pairs)]


class DownResidualBlock(nn.Module):
    """Wan 2.2 encoder stage: residual blocks, a resampler, plus a pixel-averaging shortcut."""

    def __init__(self, in_dim: int, out_dim: int, blocks: int, temporal: bool, down: bool) -> None:
        super().__init__()
        self.avg_shortcut = AvgDown3D(in_dim, out_dim, 2 if temporal else 1, 2 if down else 1)
        layers = [ResidualBlock(in_dim if i == 0 else out_dim, out_dim) for i in range(blocks)]
        if down:
            layers.append(Resample(out_dim, "downsample3d" if temporal else "downsample2d"))
        self.downsamples = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsamples(x) + self.avg_shortcut(x)


class UpResidualBlock(nn.Module):
    """Wan 2.2 decoder stage: residual blocks, a resampler, plus a pixel-duplicating shortcut."""

    def __init__(self, in_dim: int, out_dim: int, blocks: int, temporal: bool, up: bool) -> None:
        super().__init__()
        self.avg_shortcut = DupUp3D(in_dim, out_dim, 2 if temporal else 1, 2) if up else None
        layers = [ResidualBlock(in_dim if i == 0 else out_dim, out_dim) for i in range(blocks)]
        if up:
            layers.append(Resample(out_dim, "upsample3d" if temporal else "upsample2d", up_out_dim=out_dim))
        self.upsamples = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        main = self.upsamples(x)
        return main if self.avg_shortcut is None else main + self.avg_shortcut(x)


class Encoder(nn.Module):
    def __init__(self, cfg: WanConfig) -> None:
        super().__init__()
        widths = [cfg.dim * m for m in (1, *cfg.dim_mult)]
        self.conv1 = CausalConv3d(3 * cfg.patch_size**2, widths[0], 3, padding=1)
        stages = []
        for i, in_dim, out_dim, last in _stages(widths):
            temporal = i < len(cfg.temporal_down) and cfg.temporal_down[i]
            if cfg.residual:
                stages.append(DownResidualBlock(in_dim, out_dim, cfg.num_res_blocks, temporal, down=not last))
                continue
            for j in range(cfg.num_res_blocks):
                stages.append(ResidualBlock(in_dim if j == 0 else out_dim, out_dim))
            if not last:
                stages.append(Resample(out_dim, "downsample3d" if temporal else "downsample2d"))
        self.downsamples = nn.Sequential(*stages)
        self.past_downsampling = 1 + max(i for i, stage in enumerate(stages) if _resamples(stage))
        self.middle = _middle(widths[-1])
        self.head = _head(widths[-1], cfg.z_dim * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.middle(self.downsamples(self.conv1(x))))


class Decoder(nn.Module):
    def __init__(self, cfg: WanConfig) -> None:
        super().__init__()
        widths = [cfg.decoder_dim * m for m in (cfg.dim_mult[-1], *cfg.dim_mult[::-1])]
        self.conv1 = CausalConv3d(cfg.z_dim, widths[0], 3, padding=1)
        self.middle = _middle(widths[0])
        stages = []
        for i, in_dim, out_dim, last in _stages(widths):
            temporal = i < len(cfg.temporal_up) and cfg.temporal_up[i]
            if cfg.residual:
                stages.append(UpResidualBlock(in_dim, out_dim, cfg.num_res_blocks + 1, temporal, up=not last))
                continue
            in_dim = in_dim // 2 if i > 0 else in_dim  # Wan 2.1 resamplers halve the width
            for j in range(cfg.num_res_blocks + 1):
                stages.append(ResidualBlock(in_dim if j == 0 else out_dim, out_dim))
            if not last:
                stages.append(Resample(out_dim, "upsample3d" if temporal else "upsample2d"))
        self.upsamples = nn.Sequential(*stages)
        self.first_upsampling = min(i for i, stage in enumerate(stages) if _resamples(stage))
        self.head = _head(widths[-1], 3 * cfg.patch_size**2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.upsamples(self.middle(self.conv1(x))))


def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """``b c f (h q) (w r) -> b (c r q) f h w``, the reference's channel order."""
    b, c, f, h, w = x.shape
    x = x.view(b, c, f, h // p, p, w // p, p).permute(0, 1, 6, 4, 2, 3, 5)
    return x.reshape(b, c * p * p, f, h // p, w // p)


def unpatchify(x: torch.Tensor, p: int) -> torch.Tensor:
    b, cpp, f, h, w = x.shape
    x = x.view(b, cpp // (p * p), p, p, f, h, w).permute(0, 1, 4, 5, 3, 6, 2)
    return x.reshape(b, cpp // (p * p), f, h * p, w * p)


class WanVAE(CausalVideoVAE):
    def __init__(self, cfg: WanConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.family = f"Wan {cfg.version} VAE"
        self.latent_channels = cfg.z_dim
        self.spatial_ratio = 2 ** (len(cfg.dim_mult) - 1) * cfg.patch_size
        self.temporal_ratio = 2 ** sum(cfg.temporal_down)
        self.encoder = Encoder(cfg)
        self.conv1 = CausalConv3d(cfg.z_dim * 2, cfg.z_dim * 2, 1)  # to mean and log-variance
        self.conv2 = CausalConv3d(cfg.z_dim, cfg.z_dim, 1)  # latent to decoder input
        self.decoder = Decoder(cfg)

    @property
    def finest_width(self) -> int:
        """Decoder channels per full-resolution pixel at its last stage."""
        return self.cfg.decoder_dim // self.cfg.patch_size**2

    @property
    def encoder_finest_width(self) -> int:
        return self.cfg.dim // self.cfg.patch_size**2

    def decode_shared(self, z: torch.Tensor) -> torch.Tensor:
        x = self.decoder.middle(self.decoder.conv1(self.conv2(z)))
        return self.decoder.upsamples[: self.decoder.first_upsampling](x)

    def decode_tile(self, features: torch.Tensor) -> torch.Tensor:
        x = self.decoder.head(self.decoder.upsamples[self.decoder.first_upsampling :](features))
        return unpatchify(x, self.cfg.patch_size) if self.cfg.patch_size > 1 else x

    def encode_tile(self, x: torch.Tensor) -> torch.Tensor:
        if self.cfg.patch_size > 1:
            x = patchify(x, self.cfg.patch_size)
        return self.encoder.downsamples[: self.encoder.past_downsampling](self.encoder.conv1(x))

    def encode_shared(self, features: torch.Tensor) -> torch.Tensor:
        h = self.encoder.head(self.encoder.middle(self.encoder.downsamples[self.encoder.past_downsampling :](features)))
        z = self.cfg.z_dim  # only the mean half of conv1 is needed
        return nn.functional.conv3d(h, self.conv1.weight[:z], self.conv1.bias[:z])
