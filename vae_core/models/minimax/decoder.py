"""MiniMax H3's decoder: a ViT over every latent voxel of a window (7 latent frames) of one spatial tile.

Each latent voxel is one token; four learned register tokens and one zero
token follow them, all at position 0. Attention is full (not causal) and the
3-axis rotary positions are normalised to [-1, 1) over the tile and the
window, so a token's output depends on the whole tile and window it is
decoded in: the tiles and windows the release decodes in are part of the
model (:mod:`model`). Module names follow the release (the host's layout):
one fused ``to_qkv`` whose output holds each head's query, key and value in
turn, and a gated feed-forward ``w1`` whose output is the gate, then the value.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

EPS = 1e-5


class Attention(nn.Module):
    def __init__(self, heads: int, head_dim: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        self.to_qkv = nn.Linear(heads * head_dim, 3 * heads * head_dim)
        self.to_out = nn.Linear(heads * head_dim, heads * head_dim)

    def forward(self, x: torch.Tensor, rotation: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        b, s, _ = x.shape
        q, k, v = self.to_qkv(x).view(b, s, self.heads, 3 * self.head_dim).chunk(3, dim=-1)  # [B, S, heads, d]
        q = rotate(F.rms_norm(q, (self.head_dim,), eps=EPS), *rotation)
        k = rotate(F.rms_norm(k, (self.head_dim,), eps=EPS), *rotation)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return self.to_out(out.transpose(1, 2).reshape(b, s, -1))


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding on the first ``2 * half`` channels of each head: channel ``i`` turns with ``i + half``
    (``cos``/``sin``: ``[S, 1, half]``)."""
    half = cos.shape[-1]
    first, second, rest = x[..., :half], x[..., half : 2 * half], x[..., 2 * half :]
    return torch.cat([first * cos - second * sin, second * cos + first * sin, rest], dim=-1)


class FeedForward(nn.Module):
    def __init__(self, dim: int, inner: int) -> None:
        super().__init__()
        self.w1 = nn.Linear(dim, 2 * inner)
        self.w2 = nn.Linear(inner, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, value = self.w1(x).chunk(2, dim=-1)
        return self.w2(F.silu(gate) * value)


class TransformerBlock(nn.Module):
    def __init__(self, heads: int, head_dim: int, ffn_mult: int = 4) -> None:
        super().__init__()
        dim = heads * head_dim
        self.norm1 = nn.RMSNorm(dim, eps=EPS)
        self.attn = Attention(heads, head_dim)
        self.scale1 = nn.Parameter(torch.zeros(dim))
        self.norm2 = nn.RMSNorm(dim, eps=EPS)
        self.ff = FeedForward(dim, dim * ffn_mult)
        self.scale2 = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor, rotation: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), rotation) * self.scale1
        return x + self.ff(self.norm2(x)) * self.scale2


class Decoder(nn.Module):
    """Latent ``[B, C, t, h, w]`` (one window of one tile) -> its raw output ``[B, 3, 4t, 16h, 16w]``."""

    def __init__(self, latent_channels: int, layers: int, heads: int, head_dim: int, patch: int, patch_t: int,
                 registers: int = 4, rope_theta: float = 100.0, rope_share: float = 0.75,
                 out_channels: int = 3) -> None:
        super().__init__()
        dim = heads * head_dim
        self.patch, self.patch_t, self.out_channels = patch, patch_t, out_channels
        self.rope_dim, self.rope_theta = int(head_dim * rope_share), rope_theta
        self.x_embedder = nn.Linear(latent_channels, dim)
        self.register_tokens = nn.Parameter(torch.zeros(1, registers, dim))
        self.transformer_blocks = nn.ModuleList(TransformerBlock(heads, head_dim) for _ in range(layers))
        self.norm_out = nn.LayerNorm(dim, eps=EPS)
        self.proj_out = nn.Linear(dim, out_channels * patch_t * patch * patch)

    def forward(self, z: torch.Tensor, affine: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """``affine``: a scale and a shift per output channel, folded into the last layer (no pass over the
        pixels)."""
        b, _, t, h, w = z.shape
        tokens = self.x_embedder(z.flatten(2).transpose(1, 2))  # [B, t*h*w, dim], frames slowest
        suffix = [self.register_tokens.to(tokens.dtype).expand(b, -1, -1), tokens.new_zeros(b, 1, tokens.shape[2])]
        x = torch.cat([tokens, *suffix], dim=1)
        rotation = self._rotation((t, h, w), 1 + self.register_tokens.shape[1], x.dtype)
        for block in self.transformer_blocks:
            x = block(x, rotation)
        p, pt = self.patch, self.patch_t
        weight, bias = self.proj_out.weight, self.proj_out.bias
        if affine is not None:  # the output's features are channel-major: each channel's pt * p * p in turn
            scale, shift = (v.repeat_interleave(pt * p * p) for v in affine)
            weight, bias = weight * scale[:, None], torch.addcmul(shift, bias, scale)
        pixels = F.linear(self.norm_out(x[:, : t * h * w]), weight, bias)
        pixels = pixels.view(b, t, h, w, self.out_channels, pt, p, p).permute(0, 4, 1, 5, 2, 6, 3, 7)
        return pixels.reshape(b, self.out_channels, t * pt, h * p, w * p)

    def _rotation(self, grid: tuple[int, int, int], suffix: int,
                  dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """``cos``, ``sin`` ``[S, 1, half]`` for the grid's tokens (centres of cells spanning [-1, 1) on each
        axis) and ``suffix`` tokens at 0."""
        device = self.x_embedder.weight.device
        inv_freq = 1.0 / self.rope_theta ** torch.arange(0, 1, 6 / self.rope_dim, device=device)
        axes = [torch.arange(0.5, n, device=device) / n * 2.0 - 1.0 for n in grid]
        positions = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).flatten(0, 2)  # [t*h*w, 3]
        positions = torch.cat([positions, positions.new_zeros(suffix, 3)])
        angles = (2.0 * math.pi * positions[:, :, None] * inv_freq).flatten(1)  # [S, rope_dim / 2]
        return angles.cos().to(dtype)[:, None], angles.sin().to(dtype)[:, None]
