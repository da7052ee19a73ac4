"""Text guidance combined with LVDM's unconditional (known-frame) guidance, on denoised outputs.

With ``D(text, frames)`` the model's denoised prediction::

    out = D(neg, known) + cfg * (D(pos, known) - D(neg, known)) + w * (D(pos, known) - D(pos, none))

The first two terms are the usual text CFG with the known frames given to
both; the last pushes away from what the model makes without any known frame.
At ``cfg = 1`` this is exactly LVDM's ``(1 + w) * D(known) - w * D(none)``.
LVDM writes it for noise predictions; the weights sum to 1, so the same
combination of denoised outputs is the same guidance for any parameterisation
in which the denoised output is affine in the model output (eps, v, flow).
Three model calls per step; ``w = 0`` needs only the first two.
"""

from __future__ import annotations

import torch

from ..errors import FrameStreamError


def text_guided(positive: torch.Tensor, negative: torch.Tensor, cfg: float) -> torch.Tensor:
    return negative + cfg * (positive - negative)


def add_frame_guidance(guided: torch.Tensor, positive_known: torch.Tensor, positive_free: torch.Tensor | None,
                       frame_guidance: float) -> torch.Tensor:
    """``guided`` (text CFG, by this module or by the host's own CFG function) plus the known-frame term."""
    if frame_guidance == 0.0:
        return guided
    if positive_free is None:
        raise FrameStreamError("frame guidance needs the prediction without known frames")
    return guided + frame_guidance * (positive_known - positive_free)


def combine(positive_known: torch.Tensor, negative_known: torch.Tensor, positive_free: torch.Tensor | None,
            cfg: float, frame_guidance: float) -> torch.Tensor:
    """The guided prediction; ``positive_free`` may be None when ``frame_guidance`` is 0."""
    guided = text_guided(positive_known, negative_known, cfg)
    return add_frame_guidance(guided, positive_known, positive_free, frame_guidance)
