"""Mochi's encoder attention: causal over time, each position on its own, streamed and tiled with its history.

At every position of a level's grid, a frame attends to that same position in
itself and in every earlier frame (diffusers' ``MochiVaeAttnProcessor2_0`` and
genmo's ``Attention``, both causal; query and key L2-normalised per head).
Nothing mixes positions, so a spatial tile gets exactly the whole frame's
result on every position it sees, and the layer can run inside the tiles.

What a later frame needs of the earlier ones is their keys and values at every
position: a carry that only grows with the clip, kept by
:func:`state.growing_carry` for the whole frame, each tile reading the box it
computes and appending the positions it owns.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...streaming.state import growing_carry

_TIME = 3  # the history is [B, h, w, frames, 2 * channels]: keys then values, channels last
_POSITIONS = (1, 2)  # its dims of grid rows and columns, so that tiles append what they own


class CausalTimeAttention(nn.Module):
    """Multi-head attention over time at each position (heads of 32 channels), with diffusers' module names."""

    def __init__(self, channels: int, frames_per_latent: int, head_dim: int = 32) -> None:
        super().__init__()
        self.heads, self.frames_per_latent = channels // head_dim, frames_per_latent
        self.to_q, self.to_k, self.to_v = (nn.Linear(channels, channels, bias=False) for _ in range(3))
        self.to_out = nn.ModuleList([nn.Linear(channels, channels), nn.Dropout(0.0)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, t, h, w]`` (already normalised) -> the attention's output, same shape (no residual)."""
        b, c, t, h, w = x.shape
        tokens = x.permute(0, 3, 4, 2, 1)  # [B, h, w, t, C]
        q = self._unit_heads(self.to_q(tokens))
        keys_values = torch.cat([self._unit_heads(self.to_k(tokens)).flatten(-2), self.to_v(tokens)], dim=-1)
        # t of this level's frames stand for t / frames_per_latent latent frames (which sizes the buffer)
        keys_values = growing_carry(self, keys_values, t / self.frames_per_latent, _TIME, _POSITIONS)
        k, v = keys_values.unflatten(-1, (2, self.heads, -1)).unbind(-3)
        earlier = k.shape[3] - t
        visible = torch.arange(earlier + t, device=x.device)[None, :] <= \
            torch.arange(t, device=x.device)[:, None] + earlier
        out = F.scaled_dot_product_attention(_heads_first(q), _heads_first(k), _heads_first(v), attn_mask=visible)
        out = self.to_out[0](out.transpose(1, 2).flatten(2))  # [B*h*w, t, C]
        return out.unflatten(0, (b, h, w)).permute(0, 4, 3, 1, 2)

    def _unit_heads(self, y: torch.Tensor) -> torch.Tensor:
        """``[..., C]`` -> ``[..., heads, head_dim]``, keys' and queries' heads scaled to unit length (diffusers'
        LpNorm with its eps of 1e-5)."""
        return F.normalize(y.unflatten(-1, (self.heads, -1)), dim=-1, eps=1e-5)


def _heads_first(y: torch.Tensor) -> torch.Tensor:
    """``[B, h, w, frames, heads, head_dim]`` -> ``[B*h*w, heads, frames, head_dim]``."""
    return y.flatten(0, 2).transpose(1, 2)
