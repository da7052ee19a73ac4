"""SeedVR2's VAE layers, under the release's (and the host's) module names: the Stable Diffusion VAE's blocks made
3D with causal convs.

Everything that couples frames is a causal conv padded in front with copies of the clip's first frame; norms and
the mid-block attention work on each frame alone. So a stream cut anywhere gives the whole clip's frames, and the
only things a layer must know about the clip's start are its padding (the stream's carries) and, in the temporal
upsamplers, that the first latent frame stands for one frame (:func:`state.first_call`).

Activations are kept channels-last (:data:`CHANNELS_LAST`), where oneDNN's and cuDNN's 3D convs are faster;
every layer here keeps the layout it is given.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...streaming.conv import CausalConv3d, Conv3d
from ...streaming.frame_norm import FrameGroupNorm
from ...streaming.state import first_call

GROUPS = 32  # every norm of the release; not readable from shapes
CHANNELS_LAST = torch.channels_last_3d
EPS = 1e-6


def frame_norm(channels: int) -> FrameGroupNorm:
    return FrameGroupNorm(GROUPS, channels, eps=EPS)


def causal_conv(in_channels: int, out_channels: int) -> CausalConv3d:
    """The release's 3x3x3 ``InflatedCausalConv3d``: two copies of the clip's first frame in front, zeros around
    the frame."""
    return CausalConv3d(in_channels, out_channels, 3, padding=1, time_fill="replicate")


class ResnetBlock3D(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.norm1 = frame_norm(in_channels)
        self.conv1 = causal_conv(in_channels, out_channels)
        self.norm2 = frame_norm(out_channels)
        self.conv2 = causal_conv(out_channels, out_channels)
        self.conv_shortcut = Conv3d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return h + (self.conv_shortcut(x) if self.conv_shortcut is not None else x)


class FrameAttention(nn.Module):
    """One head as wide as the channels, over all pixels of each frame alone (the release's mid-block
    ``Attention``, run on ``(B*T, C, H, W)``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.group_norm = frame_norm(channels)
        self.to_q, self.to_k, self.to_v = (nn.Linear(channels, channels) for _ in range(3))
        self.to_out = nn.ModuleList([nn.Linear(channels, channels)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        tokens = self.group_norm(x).permute(0, 2, 3, 4, 1).reshape(b * t, 1, h * w, c)  # a frame's pixels
        out = F.scaled_dot_product_attention(self.to_q(tokens), self.to_k(tokens), self.to_v(tokens))
        return x + self.to_out[0](out).reshape(b, t, h, w, c).permute(0, 4, 1, 2, 3)


class MidBlock3D(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(ResnetBlock3D(channels, channels) for _ in range(2))
        self.attentions = nn.ModuleList([FrameAttention(channels)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.resnets[1](self.attentions[0](self.resnets[0](x)))


class Downsample3D(nn.Module):
    """A strided 3x3 conv after one row and column of zeros on the right and bottom (``H -> H // 2``); in time
    (``temporal``) a causal conv of stride 2, so the clip's first frame makes an output frame of its own."""

    def __init__(self, channels: int, temporal: bool) -> None:
        super().__init__()
        kernel, stride = ((3, 3, 3), (2, 2, 2)) if temporal else ((1, 3, 3), (1, 2, 2))
        self.conv = RightBottomPaddedConv3d(channels, channels, kernel, stride=stride, padding=(kernel[0] // 2, 0, 0),
                                            time_fill="replicate")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class RightBottomPaddedConv3d(CausalConv3d):
    """Zeros below and right of each frame, added after the stream's carry (which keeps frames on the tile's
    grid)."""

    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, *,
                      edges_done: bool = False) -> torch.Tensor:
        return super()._conv_forward(F.pad(x, (0, 1, 0, 1)), weight, bias, edges_done=edges_done)


class Upsample3D(nn.Module):
    """A 1x1x1 conv to ``4 * time`` times the channels, unfolded into 2x2 pixels and ``time`` frames, then a
    causal conv. Of the clip's first latent frame only the first unfolded frame is kept."""

    def __init__(self, channels: int, time: int) -> None:
        super().__init__()
        self.time = time
        self.upscale_conv = Conv3d(channels, channels * 4 * time, 1)
        self.conv = causal_conv(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, t, h, w = x.shape
        y = self.upscale_conv(x).permute(0, 2, 3, 4, 1)  # [b, t, h, w, C']: channels-last, a view
        c = y.shape[-1] // (4 * self.time)
        # channel ((row * 2 + column) * time + frame) * c + ci -> frame t * time + frame, pixel (2h + row, 2w + column)
        y = y.reshape(b, t, h, w, 2, 2, self.time, c).permute(0, 1, 6, 2, 4, 3, 5, 7)
        y = y.reshape(b, t * self.time, 2 * h, 2 * w, c).permute(0, 4, 1, 2, 3)  # channels-last again
        if self.time > 1 and t and first_call(self):
            y = torch.cat([y[:, :, :1], y[:, :, self.time :]], dim=2)
        return self.conv(y)


class Block3D(nn.Module):
    """A down or up block: resnets, then an optional resampler (the release's attribute names for each)."""

    def __init__(self, in_channels: int, out_channels: int, layers: int) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(ResnetBlock3D(in_channels if i == 0 else out_channels, out_channels)
                                     for i in range(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for resnet in self.resnets:
            x = resnet(x)
        for resampler in (*getattr(self, "downsamplers", ()), *getattr(self, "upsamplers", ())):
            x = resampler(x)
        return x
