"""The one causal convolution every family streams through.

Families differ only in how they pad: in time, in front with zeros (Wan) or
with copies of the first frame (HunyuanVideo, CogVideoX, LTX-Video's encoder),
or at both ends for a decoder that looks ahead (LTX-Video's, decoded in
windows); in space with zeros, replicated or reflected edges. The temporal
front padding is supplied by the stream (:func:`state.sliding_windows`), so a
chunked run equals a whole-clip run; the spatial padding stays inside the conv.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules.utils import _triple

from .state import sliding_windows

TIME_FILLS = ("zeros", "replicate")


class Conv3d(nn.Conv3d):
    """nn.Conv3d that sends small CPU float32 convs to oneDNN (see :func:`_one_dnn_serves`), in any padding mode."""

    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        padding = self.padding
        if self.padding_mode != "zeros":
            x = F.pad(x, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            padding = (0, 0, 0)
        if _one_dnn_serves(x):
            return torch.ops.aten.mkldnn_convolution(x, weight, bias, padding, self.stride, self.dilation, self.groups)
        return F.conv3d(x, weight, bias, self.stride, padding, self.dilation, self.groups)

    def empty_output(self, x: torch.Tensor) -> torch.Tensor:
        """What this conv gives for no complete temporal window yet: zero frames of the right size."""
        out_h = (x.shape[3] + 2 * self.padding[1] - self.kernel_size[1]) // self.stride[1] + 1
        out_w = (x.shape[4] + 2 * self.padding[2] - self.kernel_size[2]) // self.stride[2] + 1
        return x.new_empty(x.shape[0], self.out_channels, 0, out_h, out_w)


class CausalConv3d(Conv3d):
    """A 3D conv that streams along time.

    ``padding`` is given as for a centred conv (Wan's convention). Causal, its
    temporal part becomes ``2 * padding_t`` frames in front, filled by
    ``time_fill`` and carried by the stream; not causal, ``padding_t`` frames
    at each end (such a decoder is decoded in windows, never streamed).
    ``spatial_mode`` is nn.Conv3d's ``padding_mode`` for height and width.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, *,
                 time_fill: str = "zeros", spatial_mode: str = "zeros", causal: bool = True) -> None:
        pad_t, pad_h, pad_w = _triple(padding)
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=(0, pad_h, pad_w),
                         padding_mode=spatial_mode)
        if time_fill not in TIME_FILLS:
            raise ValueError(f"time_fill must be one of {TIME_FILLS}, got {time_fill!r}")
        self.time_fill, self.causal = time_fill, causal
        self.time_padding = 2 * pad_t if causal else pad_t

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernel, stride = self.kernel_size[0], self.stride[0]
        if kernel == 1 and stride == 1:  # frame by frame: nothing to carry
            return super().forward(x)
        if not self.causal:
            return super().forward(_pad_time(x, self.time_padding, self.time_fill))
        frames = sliding_windows(self, x, kernel, stride, self.time_padding, replicate=self.time_fill == "replicate")
        return self.empty_output(x) if frames is None else super().forward(frames)


class NestedCausalConv3d(nn.Module):
    """:class:`CausalConv3d` stored as ``.conv``, as diffusers' and Lightricks' checkpoints nest their causal convs
    (``conv_in.conv.weight``): the same conv, under the checkpoints' own key names."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__()
        self.conv = CausalConv3d(*args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def _pad_time(x: torch.Tensor, frames: int, fill: str) -> torch.Tensor:
    """``frames`` frames at each end of the clip, zeros or copies of the edge frames."""
    if frames == 0:
        return x
    if fill == "zeros":
        return F.pad(x, (0, 0, 0, 0, frames, frames))
    return torch.cat([x[:, :, :1].expand(-1, -1, frames, -1, -1), x, x[:, :, -1:].expand(-1, -1, frames, -1, -1)], 2)


def _one_dnn_serves(x: torch.Tensor) -> bool:
    """Whether a CPU float32 conv should go to oneDNN directly.

    For batch 1 and kernels of at most 3, torch sends a 3-D conv whose
    ``C * T * H`` is below 20480 to its native path, which builds an im2col
    buffer 27x the input and runs 5-10x slower. Narrow models and spatial tiles
    land there on every call; oneDNN computes the same conv without the buffer.
    """
    return x.device.type == "cpu" and x.dtype == torch.float32 and torch.backends.mkldnn.is_available() \
        and torch.backends.mkldnn.enabled
