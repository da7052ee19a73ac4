"""The diffusion decoder's layers, in the host's checkpoint names. Everything is a linear layer over channels-last
tokens ``[B, t, h, w, C]``; only the attention (:mod:`attention`) looks at other tokens."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import attention

EPS = 1e-6


class RMSNorm(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))

    def forward(self, x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        weight = self.weight if scale == 1.0 else self.weight * scale
        return F.rms_norm(x, (x.shape[-1],), weight.to(x.dtype), EPS)


class SwiGLU(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        hidden = (channels * 4 + 15) // 16 * 16
        self.w_up = nn.Linear(channels, hidden, bias=False)
        self.w_gate = nn.Linear(channels, hidden, bias=False)
        self.w_down = nn.Linear(hidden, channels, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w_down(F.silu(self.w_gate(x)).mul_(self.w_up(x)))


class Attention(nn.Module):
    """Projections around the neighbourhood attention; queries and keys RMS-normed per head, then rotated."""

    def __init__(self, channels: int, head_dim: int) -> None:
        super().__init__()
        self.head_dim = head_dim
        self.qkv = nn.Linear(channels, 3 * channels)
        self.q_norm, self.k_norm = RMSNorm(head_dim), RMSNorm(head_dim)
        self.proj = nn.Linear(channels, channels)

    def queries(self, y: torch.Tensor, first_frame: int) -> torch.Tensor:
        """Queries ``[B, t, h, w, heads, d]`` of the frames ``first_frame ...`` of the stage's grid, scaled (as the
        host folds the scale into the norm)."""
        channels = y.shape[-1]
        q = F.linear(y, self.qkv.weight[:channels], self.qkv.bias[:channels]).unflatten(-1, (-1, self.head_dim))
        return attention.rotate(self.q_norm(q, self.head_dim ** -0.5), *self._angles(y, first_frame))

    def keys_values(self, y: torch.Tensor, first_frame: int) -> tuple[torch.Tensor, torch.Tensor]:
        channels = y.shape[-1]
        kv = F.linear(y, self.qkv.weight[channels:], self.qkv.bias[channels:])
        k, v = kv.unflatten(-1, (2, -1, self.head_dim)).unbind(-3)
        return attention.rotate(self.k_norm(k), *self._angles(y, first_frame)), v

    def _angles(self, y: torch.Tensor, first_frame: int) -> tuple[torch.Tensor, torch.Tensor]:
        return attention.rotary_tables(self.head_dim, first_frame, *y.shape[1:4], y.device)


class NABlock(nn.Module):
    """A pre-norm transformer block over neighbourhoods (stages 1-4); a :class:`DiffusionNABlock` when
    ``modulated`` (stage 5: AdaLN scales and shifts from the timestep, the latent's context added first)."""

    def __init__(self, channels: int, head_dim: int, kernel: tuple[int, int, int], modulated: bool = False) -> None:
        super().__init__()
        self.kernel = kernel
        self.norm1, self.norm2 = RMSNorm(channels), RMSNorm(channels)
        self.attn = Attention(channels, head_dim)
        self.mlp = SwiGLU(channels)
        if modulated:
            self.scale_shift_table = nn.Parameter(torch.zeros(7, channels))
            self.context_proj = nn.Linear(channels, channels)

    def before_attention(self, x: torch.Tensor, modulation: torch.Tensor | None) -> torch.Tensor:
        """The attention's input; ``modulation``: the shared AdaLN ``[7, C]`` of the step (stage 5)."""
        y = self.norm1(x)
        if modulation is None:
            return y
        scale, shift = self._modulation(modulation, 0), self._modulation(modulation, 1)
        return y * (1 + scale) + shift

    def after_attention(self, x: torch.Tensor, attended: torch.Tensor, modulation: torch.Tensor | None) -> torch.Tensor:
        x = x + self.attn.proj(attended)
        y = self.norm2(x)
        if modulation is not None:
            y = y * (1 + self._modulation(modulation, 3)) + self._modulation(modulation, 4)
        for frame in range(x.shape[1]):  # a frame at a time: the feed-forward's hidden layer is 8x as wide
            x[:, frame] += self.mlp(y[:, frame])
        return x

    def _modulation(self, modulation: torch.Tensor, index: int) -> torch.Tensor:
        return (modulation[index] + self.scale_shift_table[index]).to(modulation.dtype)


class Upsample(nn.Module):
    """A linear layer to ``p_t * p_h * p_w`` times fewer-fold channels, shuffled into frames, rows and columns
    (channels packed channel-major, then frame, row, column offset)."""

    def __init__(self, channels: int, stride: tuple[int, int, int], reduction: int) -> None:
        super().__init__()
        self.stride = stride
        self.out_channels = channels // reduction
        self.proj = nn.Linear(channels, math.prod(stride) * self.out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, frames, height, width, _ = x.shape
        pt, ph, pw = self.stride
        y = self.proj(x).view(batch, frames, height, width, self.out_channels, pt, ph, pw)
        y = y.permute(0, 1, 5, 2, 6, 3, 7, 4)
        return y.reshape(batch, frames * pt, height * ph, width * pw, self.out_channels)


class TimestepEmbedder(nn.Module):
    """The timestep's sinusoids (cosines first, 256 of them) through a two-layer MLP."""

    FREQUENCIES = 256

    def __init__(self, width: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(self.FREQUENCIES, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.FREQUENCIES // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
        angles = t.float()[:, None] * freqs[None]
        sinusoids = torch.cat([angles.cos(), angles.sin()], dim=-1)
        return self.mlp(sinusoids.to(self.mlp[0].weight.dtype))


def patchify(pixels: torch.Tensor, patch: int) -> torch.Tensor:
    """``[B, 3, t, H, W]`` -> tokens ``[B, t, H / p, W / p, 3 p p]`` (channel, then column, then row offset)."""
    batch, channels, frames, height, width = pixels.shape
    x = pixels.view(batch, channels, frames, height // patch, patch, width // patch, patch)
    return x.permute(0, 2, 3, 5, 1, 6, 4).reshape(batch, frames, height // patch, width // patch,
                                                   channels * patch * patch)


def unpatchify(tokens: torch.Tensor, patch: int) -> torch.Tensor:
    """The inverse of :func:`patchify`."""
    batch, frames, rows, cols, _ = tokens.shape
    channels = tokens.shape[-1] // patch ** 2
    x = tokens.view(batch, frames, rows, cols, channels, patch, patch)
    return x.permute(0, 4, 1, 2, 6, 3, 5).reshape(batch, channels, frames, rows * patch, cols * patch)
