"""The causal-streaming protocol, written once for every temporal layer.

A video VAE is streamed by feeding it consecutive chunks of frames. Every layer
that looks along time (a causal conv, a temporal down/up-sampler) must carry the
frames it still needs from one chunk to the next. Instead of threading a cache
list through every block's ``forward`` (the reference Wan code pastes that
boilerplate into each block), such a layer asks ``slot(self)`` for its own small
dict inside the active :class:`StreamState`. Blocks built from these layers are
plain ``nn.Module`` compositions and need no cache code at all.

Each temporal layer is defined over the *whole* sequence, so cutting the
sequence into chunks anywhere gives the same result as one whole-clip call.
Without an active state, a call is simply a fresh one-chunk stream.
"""

from __future__ import annotations

import contextvars
from contextlib import contextmanager
from typing import Iterator

import torch

_ACTIVE: contextvars.ContextVar["StreamState | None"] = contextvars.ContextVar("framestream_stream", default=None)


class StreamState:
    """The per-layer carry of one stream (one video, one tile)."""

    def __init__(self) -> None:
        self._slots: dict[int, dict] = {}

    def slot(self, layer: torch.nn.Module) -> dict:
        return self._slots.setdefault(id(layer), {})

    @contextmanager
    def active(self) -> Iterator["StreamState"]:
        token = _ACTIVE.set(self)
        try:
            yield self
        finally:
            _ACTIVE.reset(token)


def slot(layer: torch.nn.Module) -> dict:
    """The calling layer's carry in the active stream (a throwaway one outside any stream)."""
    state = _ACTIVE.get()
    return state.slot(layer) if state is not None else {}


def first_call(carry: dict) -> bool:
    """True the first time a layer sees its stream; marks it seen."""
    seen = carry.get("seen", False)
    carry["seen"] = True
    return not seen


def sliding_windows(carry: dict, x: torch.Tensor, kernel: int, stride: int, front_pad: int) -> torch.Tensor | None:
    """Frames of ``x`` plus the carried ones that complete windows along time.

    The stream is the whole sequence with ``front_pad`` zero frames in front;
    windows of ``kernel`` frames start every ``stride`` frames. Returns the span
    covering every window that is complete so far (or None when none is), and
    carries the frames the next windows still need.
    """
    carried = carry.get("frames")
    if carried is None and front_pad:
        carried = x.new_zeros(x.shape[0], x.shape[1], front_pad, *x.shape[3:])
    frames = x if carried is None else torch.cat([carried.to(x.device, x.dtype), x], dim=2)
    count = (frames.shape[2] - kernel) // stride + 1 if frames.shape[2] >= kernel else 0
    # clone: a slice would keep the whole chunk alive until the next step
    carry["frames"] = frames[:, :, count * stride :].clone()
    if count == 0:
        return None
    return frames[:, :, : (count - 1) * stride + kernel]


class CausalConv3d(torch.nn.Conv3d):
    """A 3D conv that pads only in front in time and streams its input.

    ``padding`` is given as for a centred conv (Wan's convention); the temporal
    part becomes ``2 * padding_t`` frames of causal front padding, supplied by
    the stream, while the spatial part stays inside the conv (no padded copy).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding)
        self.front_pad = 2 * self.padding[0]
        self.padding = (0, self.padding[1], self.padding[2])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernel, stride = self.kernel_size[0], self.stride[0]
        if kernel == 1 and stride == 1:
            return super().forward(x)
        frames = sliding_windows(slot(self), x, kernel, stride, self.front_pad)
        if frames is None:
            return self._empty_output(x)
        return super().forward(frames)

    def _empty_output(self, x: torch.Tensor) -> torch.Tensor:
        out_h = (x.shape[3] + 2 * self.padding[1] - self.kernel_size[1]) // self.stride[1] + 1
        out_w = (x.shape[4] + 2 * self.padding[2] - self.kernel_size[2]) // self.stride[2] + 1
        return x.new_empty(x.shape[0], self.out_channels, 0, out_h, out_w)
