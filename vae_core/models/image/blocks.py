"""The Stable Diffusion autoencoder's 2D building blocks, under diffusers' module names.

These blocks are the image VAEs' (SD 1.x/2.x, SDXL, SD3, Flux) and, shared, the
encoder and spatial parts of Stable Video Diffusion's VAE. Every tensor here is
``[N, C, H, W]``: a frame batch, one image per row. Attribute names are those of
diffusers' ``Encoder`` / ``Decoder`` (``down_blocks.i.resnets.j``,
``mid_block.attentions.0.to_q``, ``conv_norm_out``), so diffusers checkpoints
load as they are; :mod:`.checkpoints` renames the original (LDM) layout.

Every norm is :class:`streaming.group_norm.GroupNorm`: statistics over each row
(one frame) only, so a frame batch decodes exactly frame by frame, and the
engine can pool a frame's statistics over the spatial tiles it cuts it into.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...streaming.group_norm import GroupNorm

EPS = 1e-6  # every norm of these VAEs


@dataclass(frozen=True)
class AutoencoderConfig:
    """What the weights of an SD-style autoencoder fix (diffusers' names in brackets).

    ``widths`` are the encoder's block widths, finest first (``block_out_channels``);
    ``decoder_widths`` the decoder's, also finest first, when they differ
    (Flux 2's ``decoder_block_out_channels``). :class:`Encoder` and
    :class:`Decoder` read only the fields that shape them.
    """

    latent_channels: int = 4
    widths: tuple[int, ...] = (128, 256, 512, 512)
    decoder_widths: tuple[int, ...] | None = None
    layers_per_block: int = 2  # the decoder has one more per block, as in every release
    groups: int = 32  # not in the weights; every release uses 32 (``norm_num_groups``)
    in_channels: int = 3
    out_channels: int = 3
    double_z: bool = True  # the encoder gives mean and log-variance
    mid_attention: bool = True  # ``mid_block_add_attention``

    @property
    def levels(self) -> int:
        return len(self.widths)

    @property
    def decoder_block_widths(self) -> tuple[int, ...]:
        return self.decoder_widths or self.widths


class ResnetBlock2D(nn.Module):
    """GroupNorm, SiLU, 3x3 conv, twice, plus the input (through a 1x1 ``conv_shortcut`` when the width changes)."""

    def __init__(self, in_channels: int, out_channels: int, groups: int, eps: float = EPS) -> None:
        super().__init__()
        self.norm1 = GroupNorm(groups, in_channels, eps=eps)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = GroupNorm(groups, out_channels, eps=eps)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return h + (self.conv_shortcut(x) if self.conv_shortcut is not None else x)


class MidAttention(nn.Module):
    """Single-head self-attention over all positions of each frame, with a residual (the mid block's)."""

    def __init__(self, channels: int, groups: int, eps: float = EPS) -> None:
        super().__init__()
        self.group_norm = GroupNorm(groups, channels, eps=eps)
        self.to_q, self.to_k, self.to_v = (nn.Linear(channels, channels) for _ in range(3))
        self.to_out = nn.ModuleList([nn.Linear(channels, channels), nn.Dropout(0.0)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # normalised as [N, C, H, W], before flattening, so a pooling GroupNorm sees a frame-shaped tensor
        tokens = self.group_norm(x).flatten(2).transpose(1, 2)
        out = F.scaled_dot_product_attention(self.to_q(tokens), self.to_k(tokens), self.to_v(tokens))
        return self.to_out[0](out).transpose(1, 2).reshape(x.shape) + x


class MidBlock2D(nn.Module):
    """Resnet, optional attention, resnet, at the coarsest width."""

    def __init__(self, channels: int, groups: int, attention: bool) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(ResnetBlock2D(channels, channels, groups) for _ in range(2))
        self.attentions = nn.ModuleList([MidAttention(channels, groups)] if attention else [])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.resnets[0](x)
        for attention in self.attentions:
            x = attention(x)
        return self.resnets[1](x)


class Downsample2D(nn.Module):
    """Halves the size: one zero row and column at the bottom and right, then a stride-2 3x3 conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample2D(nn.Module):
    """Doubles the size: nearest-neighbour copies, then a 3x3 conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class ResnetStage(nn.Module):
    """A down or up block: resnets, then an optional resampler (``downsamplers.0`` / ``upsamplers.0``)."""

    def __init__(self, in_channels: int, out_channels: int, layers: int, groups: int,
                 resample: type[Downsample2D] | type[Upsample2D] | None = None) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(ResnetBlock2D(in_channels if i == 0 else out_channels, out_channels, groups)
                                     for i in range(layers))
        if resample is Downsample2D:
            self.downsamplers = nn.ModuleList([Downsample2D(out_channels)])
        elif resample is Upsample2D:
            self.upsamplers = nn.ModuleList([Upsample2D(out_channels)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for resnet in self.resnets:
            x = resnet(x)
        for resampler in (*getattr(self, "downsamplers", ()), *getattr(self, "upsamplers", ())):
            x = resampler(x)
        return x


class Encoder(nn.Module):
    """Pixels ``[N, in_channels, H, W]`` -> moments ``[N, 2 * latent_channels, H / 2^(levels-1), ...]``.

    Split where the streaming engine splits it: :meth:`tile_part` (full resolution, may run in tiles) and
    :meth:`shared_part` (latent resolution, whole frame: the attention sees everything).
    """

    def __init__(self, cfg: AutoencoderConfig) -> None:
        super().__init__()
        widths = cfg.widths
        self.conv_in = nn.Conv2d(cfg.in_channels, widths[0], 3, padding=1)
        self.down_blocks = nn.ModuleList(
            ResnetStage(widths[max(i - 1, 0)], width, cfg.layers_per_block, cfg.groups,
                        Downsample2D if i < len(widths) - 1 else None)
            for i, width in enumerate(widths))
        self.mid_block = MidBlock2D(widths[-1], cfg.groups, cfg.mid_attention)
        self.conv_norm_out = GroupNorm(cfg.groups, widths[-1], eps=EPS)
        self.conv_out = nn.Conv2d(widths[-1], (2 if cfg.double_z else 1) * cfg.latent_channels, 3, padding=1)

    def tile_part(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for block in self.down_blocks:
            h = block(h)
        return h

    def shared_part(self, h: torch.Tensor) -> torch.Tensor:
        return self.conv_out(F.silu(self.conv_norm_out(self.mid_block(h))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shared_part(self.tile_part(x))


class Decoder(nn.Module):
    """Latent ``[N, latent_channels, h, w]`` -> ``[N, out_channels, h * 2^(levels-1), ...]``, split as
    :class:`Encoder`: :meth:`shared_part` (``conv_in`` and the mid block) then :meth:`tile_part`."""

    def __init__(self, cfg: AutoencoderConfig) -> None:
        super().__init__()
        widths = cfg.decoder_block_widths[::-1]  # coarsest first, as the decoder runs
        self.conv_in = nn.Conv2d(cfg.latent_channels, widths[0], 3, padding=1)
        self.mid_block = MidBlock2D(widths[0], cfg.groups, cfg.mid_attention)
        self.up_blocks = nn.ModuleList(
            ResnetStage(widths[max(i - 1, 0)], width, cfg.layers_per_block + 1, cfg.groups,
                        Upsample2D if i < len(widths) - 1 else None)
            for i, width in enumerate(widths))
        self.conv_norm_out = GroupNorm(cfg.groups, widths[-1], eps=EPS)
        self.conv_out = nn.Conv2d(widths[-1], cfg.out_channels, 3, padding=1)

    def shared_part(self, z: torch.Tensor) -> torch.Tensor:
        return self.mid_block(self.conv_in(z))

    def tile_part(self, h: torch.Tensor) -> torch.Tensor:
        for block in self.up_blocks:
            h = block(h)
        return self.conv_out(F.silu(self.conv_norm_out(h)))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.tile_part(self.shared_part(z))
