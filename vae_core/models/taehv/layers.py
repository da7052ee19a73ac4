"""The tiny video autoencoders' layers on ``[B, C, T, H, W]`` streams.

The reference (madebyollin/taehv) runs 2D layers over a batch of frames; the
only things that look along time are a MemBlock (it sees its own input one
frame back), TPool (groups of frames become channels) and TGrow (channels
become frames). Here every 2D conv keeps its checkpoint's 2D weight but runs
as a 3D conv one frame deep, so a video needs no reshaping between layers, and
the two layers that carry frames across steps do it through
:func:`state.sliding_windows`: chunked runs equal whole-clip ones.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...streaming.conv import conv3d
from ...streaming.state import sliding_windows


class FrameConv(nn.Conv2d):
    """A 2D conv applied to every frame of a ``[B, C, T, H, W]`` video, zero-padded to keep the size (over stride)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[2] == 0:  # a step that has not completed a frame for this layer
            h, w = ((n + 2 * p - k) // s + 1 for n, p, k, s in zip(x.shape[3:], self.padding, self.kernel_size,
                                                                   self.stride))
            return x.new_empty(x.shape[0], self.out_channels, 0, h, w)
        return conv3d(x, self.weight.unsqueeze(2), self.bias, (1, *self.stride), (0, *self.padding), (1, 1, 1),
                      self.groups)


def frame_conv(n_in: int, n_out: int, kernel: int = 3, stride: int = 1, bias: bool = True,
               groups: int = 1) -> FrameConv:
    return FrameConv(n_in, n_out, kernel, stride=stride, padding=kernel // 2, bias=bias, groups=groups)


class Clamp(nn.Module):
    """Squashes the latent into (-3, 3), as the decoder was trained."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / 3) * 3


def _with_past(layer: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    """``x`` and, along channels, the frame before each one (zeros before the stream's first), or None while no
    frame has reached ``layer``."""
    span = sliding_windows(layer, x, 2, 1, front_pad=1)
    if span is None:
        return None
    return torch.cat([span[:, :, 1:], span[:, :, :-1]], dim=1)


class MemBlock(nn.Module):
    """Three convs over each frame beside its predecessor, plus a (learned where widths differ) skip."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(frame_conv(n_in * 2, n_out), nn.ReLU(inplace=True), frame_conv(n_out, n_out),
                                  nn.ReLU(inplace=True), frame_conv(n_out, n_out))
        self.skip = frame_conv(n_in, n_out, kernel=1, bias=False) if n_in != n_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        both = _with_past(self, x)
        if both is None:
            return x.new_empty(x.shape[0], self.conv[-1].out_channels, 0, *x.shape[3:])
        return F.relu(self.conv(both) + self.skip(x))


class SuperMemBlock(nn.Module):
    """The ``super`` decoders' block: a 7x7 depthwise conv and an inverted bottleneck over each frame beside its
    predecessor, plus the input."""

    def __init__(self, n_f: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(frame_conv(n_f * 2, n_f * 2, kernel=7, bias=False, groups=n_f * 2),
                                  frame_conv(n_f * 2, n_f * 4, kernel=1), nn.ReLU(inplace=True),
                                  frame_conv(n_f * 4, n_f, kernel=1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        both = _with_past(self, x)
        if both is None:
            return x
        return self.conv(both) + x


class TPool(nn.Module):
    """``stride`` consecutive frames side by side along channels (frame ``k`` of a group as channel block ``k``),
    mixed by a 1x1 conv into one frame. A group split between steps waits in the carry for its last frames."""

    def __init__(self, n_f: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.conv = frame_conv(n_f * stride, n_f, kernel=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return self.conv(x)
        span = sliding_windows(self, x, self.stride, self.stride, front_pad=0)
        if span is None:
            return x.new_empty(x.shape[0], self.conv.out_channels, 0, *x.shape[3:])
        b, c, t, h, w = span.shape
        groups = span.view(b, c, t // self.stride, self.stride, h, w).permute(0, 3, 1, 2, 4, 5)
        return self.conv(groups.reshape(b, c * self.stride, t // self.stride, h, w))


class TGrow(nn.Module):
    """A 1x1 conv to ``stride`` times the channels, whose channel block ``k`` becomes output frame ``k`` of
    each input frame. Frame by frame: nothing to carry."""

    def __init__(self, n_f: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.conv = frame_conv(n_f, n_f * stride, kernel=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if self.stride == 1:
            return y
        b, _, t, h, w = y.shape
        c = y.shape[1] // self.stride
        return y.view(b, self.stride, c, t, h, w).permute(0, 2, 3, 1, 4, 5).reshape(b, c, t * self.stride, h, w)


class Upsample(nn.Module):
    """Nearest-neighbour 2x in space, every frame alone."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=(1, 2, 2), mode="nearest") if x.shape[2] else \
            x.new_empty(*x.shape[:3], x.shape[3] * 2, x.shape[4] * 2)


class PixelShuffle(nn.Module):
    """``C * r * r`` channels -> ``C`` channels on an ``r`` times finer grid, every frame alone (nn.PixelShuffle's
    channel order)."""

    def __init__(self, r: int) -> None:
        super().__init__()
        self.r = r

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pixel_shuffle(x, self.r)


def pixel_shuffle(x: torch.Tensor, r: int) -> torch.Tensor:
    b, c, t, h, w = x.shape
    x = x.view(b, c // (r * r), r, r, t, h, w).permute(0, 1, 4, 5, 2, 6, 3)
    return x.reshape(b, c // (r * r), t, h * r, w * r)


def pixel_unshuffle(x: torch.Tensor, r: int) -> torch.Tensor:
    b, c, t, h, w = x.shape
    x = x.view(b, c, t, h // r, r, w // r, r).permute(0, 1, 4, 6, 2, 3, 5)
    return x.reshape(b, c * r * r, t, h // r, w // r)
