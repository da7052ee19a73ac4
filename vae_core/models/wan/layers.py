"""Building blocks shared by the causal video VAEs, each streaming-safe.

Temporal state lives only in :mod:`stream` layers; everything here either works
frame by frame or composes those layers, so a chunked run equals a whole-clip run.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...streaming.channel_norm import RMSNorm
from ...streaming.conv import CausalConv3d
from ...streaming.frames import per_frame
from ...streaming.state import first_call, sliding_windows


class NearestUpsample2x(nn.Module):
    """2x nearest-exact spatial upsampling, computed in fp32 like the reference (bf16 support)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x.float(), scale_factor=2.0, mode="nearest-exact").to(x.dtype)


class ResidualBlock(nn.Module):
    """norm-SiLU-conv twice plus a 1x1x1 shortcut when widths differ."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.residual = nn.Sequential(
            RMSNorm(in_dim),
            nn.SiLU(inplace=True),  # in place on the norm's fresh output
            CausalConv3d(in_dim, out_dim, 3, padding=1),
            RMSNorm(out_dim),
            nn.SiLU(inplace=True),
            nn.Identity(),  # dropout in training; keeps the checkpoint's indices
            CausalConv3d(out_dim, out_dim, 3, padding=1),
        )
        self.shortcut = CausalConv3d(in_dim, out_dim, 1) if in_dim != out_dim else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # not ``self.residual(x).add_(self.shortcut(x))``: torch.compile cannot resume a graph broken inside the
        # shortcut's conv with the bound ``add_`` waiting on the stack (compiled.py)
        residual = self.residual(x)
        shortcut = self.shortcut(x)
        return residual.add_(shortcut)


class FrameAttention(nn.Module):
    """Single-head self-attention over the pixels of each frame (never across time)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = RMSNorm(dim, spatial_dims=2)
        self.to_qkv = nn.Conv2d(dim, dim * 3, 1)
        self.proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + per_frame(self._attend, x)

    def _attend(self, frames: torch.Tensor) -> torch.Tensor:
        n, c, h, w = frames.shape
        qkv = self.to_qkv(self.norm(frames)).reshape(n, 1, c * 3, h * w).transpose(-1, -2)
        q, k, v = qkv.contiguous().chunk(3, dim=-1)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.squeeze(1).transpose(1, 2).reshape(n, c, h, w))


class Resample(nn.Module):
    """Wan's 2x spatial resampling, with an optional 2x temporal step.

    Temporal upsampling leaves frame 0 alone and doubles every later frame
    through ``time_conv`` (a causal conv whose stream starts at frame 1).
    Temporal downsampling keeps frame 0 and then takes stride-2 windows of
    three frames starting at frame 0. Both follow from the reference's
    one-frame-then-four chunking, extended to any chunking.
    """

    def __init__(self, dim: int, mode: str, up_out_dim: int | None = None) -> None:
        super().__init__()
        self.mode = mode
        if mode.startswith("up"):
            self.resample = nn.Sequential(NearestUpsample2x(), nn.Conv2d(dim, up_out_dim or dim // 2, 3, padding=1))
        else:
            self.resample = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(dim, dim, 3, stride=2))
        if mode == "upsample3d":
            self.time_conv = CausalConv3d(dim, dim * 2, (3, 1, 1), padding=(1, 0, 0))
        elif mode == "downsample3d":
            self.time_conv = CausalConv3d(dim, dim, (3, 1, 1), stride=(2, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "upsample3d":
            x = self._double_frames(x)
        x = per_frame(self.resample, x)
        if self.mode == "downsample3d":
            x = self._halve_frames(x)
        return x

    def _double_frames(self, x: torch.Tensor) -> torch.Tensor:
        first = x[:, :, :1] if first_call(self) else None
        later = x[:, :, 1:] if first is not None else x
        if later.shape[2]:
            y = self.time_conv(later)  # [B, 2C, t, H, W]: two output frames per input frame
            b, c2, t, h, w = y.shape
            later = y.view(b, 2, c2 // 2, t, h, w).permute(0, 2, 3, 1, 4, 5).reshape(b, c2 // 2, 2 * t, h, w)
        return later if first is None else torch.cat([first, later], dim=2)

    def _halve_frames(self, x: torch.Tensor) -> torch.Tensor:
        first = x[:, :, :1] if first_call(self) else None
        y = self.time_conv(x)
        return y if first is None else torch.cat([first, y], dim=2)


class AvgDown3D(nn.Module):
    """Wan 2.2's parameter-free shortcut: pixel-unshuffle then average channel groups.

    In time it groups pairs of frames of the sequence with one zero frame in
    front (the reference pads its one-frame first chunk so).
    """

    def __init__(self, in_channels: int, out_channels: int, factor_t: int, factor_s: int) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.factor_t, self.factor_s = factor_t, factor_s
        self.group_size = in_channels * factor_t * factor_s * factor_s // out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ft, fs = self.factor_t, self.factor_s
        if ft > 1:
            windows = sliding_windows(self, x, kernel=ft, stride=ft, front_pad=ft - 1)
            if windows is None:
                return x.new_empty(x.shape[0], self.out_channels, 0, x.shape[3] // fs, x.shape[4] // fs)
            x = windows
        b, c, t, h, w = x.shape
        x = x.view(b, c, t // ft, ft, h // fs, fs, w // fs, fs).permute(0, 1, 3, 5, 7, 2, 4, 6)
        x = x.reshape(b, self.out_channels, self.group_size, t // ft, h // fs, w // fs)
        return x.mean(dim=2)


class DupUp3D(nn.Module):
    """Wan 2.2's parameter-free shortcut: repeat channels then pixel-shuffle.

    In time every frame becomes ``factor_t`` frames and the first
    ``factor_t - 1`` frames of the whole sequence are dropped.
    """

    def __init__(self, in_channels: int, out_channels: int, factor_t: int, factor_s: int) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.factor_t, self.factor_s = factor_t, factor_s
        self.repeats = out_channels * factor_t * factor_s * factor_s // in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ft, fs = self.factor_t, self.factor_s
        b, _, t, h, w = x.shape
        x = x.repeat_interleave(self.repeats, dim=1)
        x = x.view(b, self.out_channels, ft, fs, fs, t, h, w).permute(0, 1, 5, 2, 6, 3, 7, 4)
        x = x.reshape(b, self.out_channels, t * ft, h * fs, w * fs)
        if ft > 1 and first_call(self):
            x = x[:, :, ft - 1 :]
        return x
