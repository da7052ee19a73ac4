"""The one causal convolution every family streams through.

Families differ only in how they pad: in time, in front with zeros (Wan) or with copies of the first frame
(HunyuanVideo, CogVideoX, LTX-Video's encoder), or at both ends for a decoder that looks ahead (it streams with
a delay); in space with zeros, replicated or reflected edges. The temporal padding is supplied by the stream
(:func:`state.sliding_windows`), so a chunked run equals a whole-clip run. Zeros in space stay inside the conv
(oneDNN pads without a copy); replicated edges are made in the copy that joins the carried frames to the
step's, where F.pad would copy the span a second time (1.5-2.5x less time on those copies).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules.utils import _triple

from .compiled import eager_only
from .state import sliding_windows

TIME_FILLS = ("zeros", "replicate")


class Conv3d(nn.Conv3d):
    """nn.Conv3d that sends small CPU float32 convs to oneDNN (see :func:`_one_dnn_serves`), in any padding mode."""

    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, *,
                      edges_done: bool = False) -> torch.Tensor:
        """``edges_done``: ``x`` comes with its edges already padded as ``padding_mode`` says."""
        if x.shape[2] == 0:  # a step of a delayed stream that has nothing for this layer yet
            return self.empty_output(x)
        padding = self.padding
        if self.padding_mode != "zeros":
            if not edges_done:
                x = F.pad(x, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            padding = (0, 0, 0)
        return conv3d(x, weight, bias, self.stride, padding, self.dilation, self.groups)

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
    at each end: it looks ahead, and streams with a delay of ``padding_t``
    frames. ``spatial_mode`` is nn.Conv3d's ``padding_mode`` for height and
    width. ``frames_per_latent``, its frame rate over the latent's, bounds what
    a look-ahead conv lets out per step (set by the model, e.g. :func:`pace`).
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
        self.frames_per_latent = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernel, stride = self.kernel_size[0], self.stride[0]
        if kernel == 1 and stride == 1:  # frame by frame: nothing to carry
            return super().forward(x)
        edges = self.padding[1:] if self.padding_mode == "replicate" else (0, 0)
        frames = sliding_windows(self, x, kernel, stride, self.time_padding, self.time_fill == "replicate",
                                 back_pad=0 if self.causal else self.time_padding,
                                 frames_per_latent=self.frames_per_latent, edge_pad=edges)
        if frames is None:
            return self.empty_output(x)
        return self._conv_forward(frames, self.weight, self.bias, edges_done=edges != (0, 0))


class NestedCausalConv3d(nn.Module):
    """:class:`CausalConv3d` stored as ``.conv``, as diffusers' and Lightricks' checkpoints nest their causal convs
    (``conv_in.conv.weight``): the same conv, under the checkpoints' own key names."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__()
        self.conv = CausalConv3d(*args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def pace(module: nn.Module, frames_per_latent: int) -> None:
    """Tells every temporal conv in ``module`` that it runs at ``frames_per_latent`` frames per latent frame."""
    for conv in module.modules():
        if isinstance(conv, CausalConv3d):
            conv.frames_per_latent = frames_per_latent


@eager_only  # compiled, a conv would leave oneDNN (see compiled.py)
def conv3d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride, padding, dilation,
           groups: int) -> torch.Tensor:
    """F.conv3d, sent to oneDNN where torch's own choice is slow (:func:`_one_dnn_serves`)."""
    if _one_dnn_serves(x):
        return torch.ops.aten.mkldnn_convolution(x, weight, bias, padding, stride, dilation, groups)
    return F.conv3d(x, weight, bias, stride, padding, dilation, groups)


def _one_dnn_serves(x: torch.Tensor) -> bool:
    """Whether a CPU float32 conv should go to oneDNN directly.

    For batch 1 and kernels of at most 3, torch sends a 3-D conv whose
    ``C * T * H`` is below 20480 to its native path, which builds an im2col
    buffer 27x the input and runs 5-10x slower. Narrow models and spatial tiles
    land there on every call; oneDNN computes the same conv without the buffer.
    """
    return x.device.type == "cpu" and x.dtype == torch.float32 and torch.backends.mkldnn.is_available() \
        and torch.backends.mkldnn.enabled
