"""HunyuanVideo 1.5's layers, each streaming-safe.

Temporal state lives only in the streaming helpers: the causal convs slide
through :func:`state.sliding_windows`, the resamplers ask :func:`state.first_call`
whether their chunk holds the clip's first frame, and the attention keeps its
keys and values with :func:`state.growing_carry`. Everything else works per
position, so a chunked run equals a whole-clip run.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...streaming.channel_norm import RMSNorm
from ...streaming.conv import Conv3d, NestedCausalConv3d
from ...streaming.state import first_call, growing_carry


def causal_conv(in_channels: int, out_channels: int) -> NestedCausalConv3d:
    """Every 3x3x3 conv of this VAE: time padded in front with copies of the first frame, space by replicating
    edge pixels (stored as ``.conv``, as the checkpoints nest it)."""
    return NestedCausalConv3d(in_channels, out_channels, 3, padding=1, time_fill="replicate",
                              spatial_mode="replicate")


class ResnetBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.norm1 = RMSNorm(in_channels)
        self.conv1 = causal_conv(in_channels, out_channels)
        self.norm2 = RMSNorm(out_channels)
        self.conv2 = causal_conv(out_channels, out_channels)
        self.conv_shortcut = Conv3d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x), inplace=True))  # in place on the norms' fresh outputs
        h = self.conv2(F.silu(self.norm2(h), inplace=True))
        return h.add_(x if self.conv_shortcut is None else self.conv_shortcut(x))


class CausalFrameAttention(nn.Module):
    """Single-head attention in which every position sees all positions of its own frame and of every earlier
    frame (the reference's mask).

    Streamed, a step's queries need the keys and values of every frame decoded
    so far: they are carried as one ``[2, B, tokens, C]`` tensor that grows by
    the step's frames (:func:`state.growing_carry`), at latent resolution. The
    projections are 1x1x1 convs in the checkpoints and run as linear maps on
    the tokens.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = RMSNorm(channels)
        self.to_q, self.to_k, self.to_v, self.proj_out = (nn.Conv3d(channels, channels, 1) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        tokens = self.norm(x).flatten(2).transpose(1, 2)  # [B, t*h*w, C]
        q = _linear(tokens, self.to_q)
        kv = growing_carry(self, torch.stack([_linear(tokens, self.to_k), _linear(tokens, self.to_v)]), t, dim=2)
        earlier = kv.shape[2] // (h * w) - t  # frames decoded in earlier steps
        mask = None
        if t > 1:  # one frame sees every key carried so far: no mask needed
            query_frame = torch.arange(earlier, earlier + t, device=x.device).repeat_interleave(h * w)
            key_frame = torch.arange(earlier + t, device=x.device).repeat_interleave(h * w)
            mask = key_frame[None, :] <= query_frame[:, None]
        out = F.scaled_dot_product_attention(q[:, None], kv[0][:, None], kv[1][:, None], attn_mask=mask)[:, 0]
        return x + _linear(out, self.proj_out).transpose(1, 2).unflatten(2, (t, h, w))


def _linear(tokens: torch.Tensor, conv: nn.Conv3d) -> torch.Tensor:
    return F.linear(tokens, conv.weight.flatten(1), conv.bias)


class MidBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(ResnetBlock(channels, channels) for _ in range(2))
        self.attentions = nn.ModuleList([CausalFrameAttention(channels)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.resnets[1](self.attentions[0](self.resnets[0](x)))


def depth_to_space(x: torch.Tensor, rt: int) -> torch.Tensor:
    """``[B, rt*2*2*C, T, H, W]`` -> ``[B, C, rt*T, 2H, 2W]``; the sub-position is the outer channel index."""
    b, _, t, h, w = x.shape
    x = x.unflatten(1, (rt, 2, 2, -1))  # [B, rt, 2, 2, C, T, H, W]
    return x.permute(0, 4, 5, 1, 6, 2, 7, 3).reshape(b, -1, t * rt, 2 * h, 2 * w)


def space_to_depth(x: torch.Tensor, rt: int) -> torch.Tensor:
    """The inverse of :func:`depth_to_space`: ``[B, C, rt*T, 2H, 2W]`` -> ``[B, rt*2*2*C, T, H, W]``."""
    b, c, t, h, w = x.shape
    x = x.view(b, c, t // rt, rt, h // 2, 2, w // 2, 2)
    return x.permute(0, 3, 5, 7, 1, 2, 4, 6).reshape(b, rt * 4 * c, t // rt, h // 2, w // 2)


class Upsampler(nn.Module):
    """A conv to ``factor`` times the output channels, moved into space (2x2) and, with ``temporal``, time (2x);
    plus the input with its channels repeated, moved the same way. A clip's first frame is only upscaled in
    space, from the first half of its channels."""

    def __init__(self, in_channels: int, out_channels: int, temporal: bool) -> None:
        super().__init__()
        factor = 8 if temporal else 4
        self.conv = causal_conv(in_channels, out_channels * factor)
        self.temporal, self.out_channels = temporal, out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        rt = 2 if self.temporal else 1
        if not (self.temporal and first_call(self)):
            return self._shuffle(h, x, rt)
        # the first frame: half the conv's channels and half the shortcut's repeats, space only
        h0 = h[:, :, :1].unflatten(1, (4, -1))[:, :, : self.out_channels].flatten(1, 2)
        first = depth_to_space(_add_repeated(h0, x[:, :, :1]), 1)
        return first if x.shape[2] == 1 else torch.cat([first, self._shuffle(h[:, :, 1:], x[:, :, 1:], rt)], 2)

    def _shuffle(self, h: torch.Tensor, x: torch.Tensor, rt: int) -> torch.Tensor:
        # repeating then moving equals moving then repeating; adding before the move moves once
        return depth_to_space(_add_repeated(h, x), rt)


def _add_repeated(h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``h + x.repeat_interleave(h.shape[1] // x.shape[1], 1)`` in place, without the repeated copy (at the
    finest upsampler it is as large as the finest activation)."""
    h.unflatten(1, (x.shape[1], -1)).add_(x.unsqueeze(2))
    return h


class Downsampler(nn.Module):
    """The mirror of :class:`Upsampler`: a conv to ``1/factor`` of the output channels, 2x2 space (and, with
    ``temporal``, 2 frames) moved into channels, plus the input moved the same way and averaged down to the output
    channels. The first frame is packed in space only and its channels doubled."""

    def __init__(self, in_channels: int, out_channels: int, temporal: bool) -> None:
        super().__init__()
        factor = 8 if temporal else 4
        self.conv = causal_conv(in_channels, out_channels // factor)
        self.temporal, self.out_channels = temporal, out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        rt = 2 if self.temporal else 1
        if not (self.temporal and first_call(self)):
            return self._pack(h, x, rt)
        h0 = space_to_depth(h[:, :, :1], 1)
        first = torch.cat([h0, h0], 1).add_(self._average(space_to_depth(x[:, :, :1], 1)))
        return first if x.shape[2] == 1 else torch.cat([first, self._pack(h[:, :, 1:], x[:, :, 1:], rt)], 2)

    def _pack(self, h: torch.Tensor, x: torch.Tensor, rt: int) -> torch.Tensor:
        return space_to_depth(h, rt).add_(self._average(space_to_depth(x, rt)))

    def _average(self, packed: torch.Tensor) -> torch.Tensor:
        return packed.unflatten(1, (self.out_channels, -1)).mean(2)
