"""Text guidance combined with LVDM's unconditional (known-frame) guidance, on denoised outputs.

With ``D(text, frames)`` the model's denoised prediction::

    out = D(neg, known) + cfg * (D(pos, known) - D(neg, known)) + w * (D(pos, known) - D(pos, none))

The first two terms are the usual text CFG with the known frames given to
both; the last pushes away from what the model makes without any known frame.
At ``cfg = 1`` this is exactly LVDM's ``(1 + w) * D(known) - w * D(none)``
(the same linear combination it applies to noise predictions). Three model
calls per step; ``w = 0`` needs only the first two.
"""

from __future__ import annotations

import torch

from .errors import FrameStreamError


def combine(positive_known: torch.Tensor, negative_known: torch.Tensor, positive_free: torch.Tensor | None,
            cfg: float, frame_guidance: float) -> torch.Tensor:
    """The guided prediction; ``positive_free`` may be None when ``frame_guidance`` is 0."""
    out = negative_known + cfg * (positive_known - negative_known)
    if frame_guidance == 0.0:
        return out
    if positive_free is None:
        raise FrameStreamError("frame guidance needs the prediction without known frames")
    return out + frame_guidance * (positive_known - positive_free)
