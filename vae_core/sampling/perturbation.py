"""LVDM's conditional latent perturbation: known-frame latents get noise of a fixed level before use.

LVDM trains with known latents replaced by ``z_s = sqrt(a_s) * z + sqrt(1 - a_s) * eps``
so the model learns not to copy their artefacts, which is what keeps long
chains from drifting. In the host's sigma terms:

* flow models (Wan; the host's CONST sampling): ``z_s = (1 - sigma) * z + sigma * eps``;
* variance-preserving models (LVDM itself): with ``a_s = 1 / (1 + sigma^2)``,
  ``z_s = (z + sigma * eps) / sqrt(1 + sigma^2)``, the host's EPS sigma scale.

The noise comes from a CPU generator seeded by ``seed``, so a result does not
depend on the device or on anything sampled before.
"""

from __future__ import annotations

import math

import torch

from ..errors import FrameStreamError


def seeded_noise(like: torch.Tensor, seed: int) -> torch.Tensor:
    noise = torch.randn(like.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float32)
    return noise.to(like.device, like.dtype)


def perturb(latent: torch.Tensor, sigma: float, seed: int, known: torch.Tensor | None = None,
            kind: str = "flow") -> torch.Tensor:
    """``latent`` ``[B, C, T, h, w]`` with the frames where ``known`` (``[T]`` bools) is set perturbed to ``sigma``.

    Frames that are not known are returned unchanged; ``known=None`` means all.
    """
    if kind == "flow" and not 0.0 <= sigma <= 1.0:
        raise FrameStreamError(f"a flow model's perturbation sigma must be in [0, 1], got {sigma}")
    if kind == "vp" and sigma < 0.0:
        raise FrameStreamError(f"perturbation sigma must be 0 or more, got {sigma}")
    if kind not in ("flow", "vp"):
        raise FrameStreamError(f"perturbation kind must be 'flow' or 'vp', got {kind!r}")
    if known is not None and (known.dim() != 1 or known.shape[0] != latent.shape[2]):
        raise FrameStreamError(f"known must be one flag per latent frame ({latent.shape[2]}), got {tuple(known.shape)}")
    noise = seeded_noise(latent, seed)
    if kind == "flow":
        noisy = (1.0 - sigma) * latent + sigma * noise
    else:
        noisy = (latent + sigma * noise) / math.sqrt(1.0 + sigma * sigma)
    if known is None:
        return noisy
    return torch.where(known.to(latent.device).view(1, 1, -1, 1, 1), noisy, latent)
