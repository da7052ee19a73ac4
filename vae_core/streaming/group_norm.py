"""GroupNorm whose statistics may span more frames and pixels than the tensor in hand.

HunyuanVideo's and CogVideoX's VAEs normalise with GroupNorm over channels *and*
time *and* space. A causal stream sees one chunk (and one tile) at a time, so a
plain GroupNorm would compute its mean and variance over that piece only: the
first frames of a clip then look different depending on what follows them, and
tiles disagree at their seams. (Wan replaced GroupNorm with a per-position
RMSNorm for exactly this reason; LTX-Video did too.)

The statistics are sums, so they can be gathered piecewise. While a stream is
active, :class:`GroupNorm` adds the moments of the part of its input that the
current tile owns to the stream's running totals, and normalises with a
:class:`Pooling` policy the engine chose:

* ``running``: the totals so far, this piece included (a causal estimate; the
  first pass of a clip-wide decode);
* ``frozen``: totals handed over from a previous pass over the whole clip. The
  first GroupNorm then sees the whole clip's statistics exactly; a later one
  sees statistics of inputs computed with the previous pass's estimates, so
  each extra pass shrinks the error further;
* ``per_step``: totals of the current step only (CogVideoX's own chunk-wise
  statistics), gathered over every tile of the step.

A tiled step's statistics are exact only if each norm's input was normalised
with exact statistics before it, so a tiled step gathers them norm by norm
(``gathering``, :class:`steps._Step`): each pass runs every tile up to the first
norm whose statistics are not yet frozen, adds that norm's moments and stops
the tile (:class:`Gathered`); the next pass freezes them.

Outside a stream, or with no policy, it is an ordinary GroupNorm.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple

import torch
import torch.nn as nn

from .compiled import eager_only
from .state import StreamState, active_state

class Moments(NamedTuple):
    """Per video and group: sum, sum of squares and count of the values seen, in float64."""

    total: torch.Tensor
    squares: torch.Tensor
    count: int

    @staticmethod
    def of(x: torch.Tensor, groups: int) -> "Moments":
        """``x``'s moments per video and group. torch's own GroupNorm kernel gives each group's mean and 1/std in
        one pass over ``x`` (its output is dropped), four times faster on the CPU than summing in float64; the
        mean and variance it returns in float32 are within 1e-7 of the float64 sums."""
        b, c, positions = x.shape[0], x.shape[1], x.shape[2:].numel()
        count = positions * (c // groups)
        if x.numel() == 0:
            zeros = torch.zeros(b, groups, dtype=torch.float64, device=x.device)
            return Moments(zeros, zeros.clone(), 0)
        # half-precision statistics lose digits; the kernel reads contiguous memory (a tile's owned part is a view)
        x = (x if x.dtype in (torch.float32, torch.float64) else x.float()).contiguous()
        _, mean, rstd = torch.ops.aten.native_group_norm(x, None, None, b, c, positions, groups, 0.0)
        mean, var = mean.double().view(b, groups), rstd.double().view(b, groups).square().reciprocal()
        return Moments(mean * count, (var + mean.square()) * count, count)

    def __add__(self, other: "Moments") -> "Moments":  # type: ignore[override]
        return Moments(self.total + other.total.to(self.total.device), self.squares + other.squares.to(self.total.device),
                       self.count + other.count)

    def mean_var(self) -> tuple[torch.Tensor, torch.Tensor]:
        mean = self.total / self.count
        return mean, (self.squares / self.count - mean.square()).clamp_(min=0)


@dataclass(frozen=True)
class Pooling:
    """How a stream's GroupNorms pick their statistics (see the module docstring)."""

    frozen: dict[int, Moments] | None = None
    per_step: bool = False
    gathering: bool = False  # a tile stops once it added the moments of a norm whose statistics are not frozen


class Gathered(Exception):
    """A tile of a gathering pass (:attr:`Pooling.gathering`) stopped: it added the moments the pass was for."""


def frozen_after(state: StreamState) -> Pooling:
    """A policy that applies the totals ``state`` committed (a pass over the whole clip)."""
    return Pooling(frozen=state.carries.moments())


class GroupNorm(nn.GroupNorm):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        totals = pooled_moments(self, x, Moments.of)
        if totals is None:
            return super().forward(x)
        return self.normalise(x, *totals.mean_var())

    def normalise(self, x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
        """GroupNorm's ``(x - mean) / sqrt(var + eps) * weight + bias`` with the given per-(video, group) ``mean``
        and ``var``, in float32, as one fused pass: inference-mode batch norm over ``[1, B * C, ...]`` with each
        channel given its group's statistics (three times faster on the CPU than the same in separate ops)."""
        b, c = x.shape[:2]
        per_channel = c // self.num_groups
        channel_mean = mean.float().to(x.device).repeat_interleave(per_channel, 1).reshape(-1)
        channel_var = var.float().to(x.device).repeat_interleave(per_channel, 1).reshape(-1)
        weight = None if self.weight is None else self.weight.float().repeat(b)
        bias = None if self.bias is None else self.bias.float().repeat(b)
        y = torch.batch_norm(x.float().reshape(1, b * c, -1), weight, bias, channel_mean, channel_var, False, 0.0,
                             self.eps, False)
        return y.reshape(x.shape).to(x.dtype)


@eager_only
def pooled_moments(norm: nn.GroupNorm, x: torch.Tensor, moments_of: Callable[[torch.Tensor, int], Moments]
                   ) -> Moments | None:
    """The statistics ``norm`` applies to ``x`` under the active stream's :class:`Pooling` (None: no pooling,
    the norm's own), after adding ``moments_of(part, groups)`` of the part of ``x`` the current tile owns to the
    stream's totals. In a gathering pass, a tile stops (raises :class:`Gathered`) after adding the moments of the
    first norm whose statistics are not frozen yet."""
    state = active_state()
    pooling: Pooling | None = state.pooling if state is not None else None
    if pooling is None:
        return None
    frozen = pooling.frozen if pooling.frozen is not None else {}
    if pooling.gathering and id(norm) in frozen:
        return frozen[id(norm)]  # gathered in an earlier pass of this step
    seen = moments_of(state.owned(x), norm.num_groups)
    before = state.carries.this_step(norm).moments
    if before is None and not pooling.per_step:
        before = state.carries.earlier(norm).moments
    totals = seen if before is None else before + seen
    state.carries.writing(norm).moments = totals
    if id(norm) in frozen:
        return frozen[id(norm)]
    if pooling.gathering and state.window is not None:  # in one tile of several
        raise Gathered
    return totals
