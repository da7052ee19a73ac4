"""MiniMax H3's encoder: a causal 3D CNN run on one clip of 17 frames at a time, each clip a fresh start.

Module names follow the release (the host's ``comfy/ldm/minimax/vae.py``
reads it as it is; diffusers' ``AutoencoderKLMiniMaxH3`` renames them, see
:mod:`checkpoints`). Nothing is carried from clip to clip: every clip is
zero-padded in front again, and its GroupNorms normalise each frame alone, so
a clip is the encoder's step and needs no stream state.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules.utils import _triple

from ...streaming.conv import conv3d
from ...streaming.frame_norm import FrameGroupNorm

GROUPS = 32  # every norm of the release; not readable from shapes


class ClipConv3d(nn.Conv3d):
    """``padding`` (t, h, w): ``2t`` zero frames in front of the clip, ``h``/``w`` reflected edges on both sides
    (``edges``: (left, right, top, bottom) instead)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 edges: tuple[int, int, int, int] | None = None) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride)
        pad_t, pad_h, pad_w = _triple(padding)
        self.front = 2 * pad_t
        self.edges = edges if edges is not None else (pad_w, pad_w, pad_h, pad_h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv3d(padded(x, self.front, self.edges), self.weight, self.bias, self.stride, (0, 0, 0),
                      self.dilation, self.groups)


def padded(x: torch.Tensor, front: int, edges: tuple[int, int, int, int]) -> torch.Tensor:
    """``x`` with ``front`` zero frames and reflected ``edges``, written once into one new tensor (F.pad twice
    fills and copies the whole clip twice)."""
    if not any(edges):
        return F.pad(x, (0, 0, 0, 0, front, 0)) if front else x
    left, right, top, bottom = edges
    b, c, t, h, w = x.shape
    out = x.new_empty(b, c, front + t, top + h + bottom, left + w + right)
    out[:, :, :front].zero_()
    body = out[:, :, front:]
    if body.is_contiguous():  # one video: the frames after the front are one block
        torch._C._nn.reflection_pad3d(x, (left, right, top, bottom, 0, 0), out=body)
    else:
        body.copy_(F.pad(x, (left, right, top, bottom, 0, 0), mode="reflect"))
    return out


def frame_norm(channels: int) -> FrameGroupNorm:
    return FrameGroupNorm(GROUPS, channels, eps=1e-6)


class ResnetBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.norm1, self.norm2 = frame_norm(in_channels), frame_norm(out_channels)
        self.conv1 = ClipConv3d(in_channels, out_channels, 3, padding=1)
        self.conv2 = ClipConv3d(out_channels, out_channels, 3, padding=1)
        self.nin_shortcut = ClipConv3d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x), inplace=True))
        h = self.conv2(F.silu(self.norm2(h), inplace=True))
        return h + (x if self.nin_shortcut is None else self.nin_shortcut(x))


class Downsample(nn.Module):
    """A strided 3x3x3 conv; a spatial stride of 2 first reflects one row and column at the bottom and right."""

    def __init__(self, channels: int, time_stride: int, space_stride: int) -> None:
        super().__init__()
        self.conv = ClipConv3d(channels, channels, 3, stride=(time_stride, space_stride, space_stride),
                               padding=(1, 0, 0), edges=(0, 1, 0, 1) if space_stride == 2 else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Level(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, layers: int, time_stride: int, space_stride: int) -> None:
        super().__init__()
        self.block = nn.ModuleList(ResnetBlock(in_channels if i == 0 else out_channels, out_channels)
                                   for i in range(layers))
        if time_stride * space_stride > 1:
            self.downsample = Downsample(out_channels, time_stride, space_stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for resnet in self.block:
            x = resnet(x)
        downsample = getattr(self, "downsample", None)
        return x if downsample is None else downsample(x)


class Encoder(nn.Module):
    """Pixels ``[B, 3, t, H, W]`` (ImageNet-normalised) -> moments ``[B, 2 * latent_channels, t', H/16, W/16]``."""

    def __init__(self, widths: tuple[int, ...], layers: int, space_strides: tuple[int, ...],
                 time_strides: tuple[int, ...], latent_channels: int, in_channels: int = 3) -> None:
        super().__init__()
        self.conv_in = ClipConv3d(in_channels, widths[0], 3, padding=1)
        self.down = nn.ModuleList(
            Level(widths[max(i - 1, 0)], width, layers, time_strides[i], space_strides[i])
            for i, width in enumerate(widths))
        self.norm_out = frame_norm(widths[-1])
        self.conv_out = ClipConv3d(widths[-1], 2 * latent_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.down:
            h = level(h)
        return self.conv_out(F.silu(self.norm_out(h), inplace=True))
