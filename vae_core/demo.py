"""An embedded example: a small trained Wan 2.1-architecture VAE and a generated clip, no download.

The fixture (``data/wan21_fixture.safetensors``, made by
``tools/train_fixture_vae.py``) has Wan 2.1's exact layers at reduced width and
was trained on clips like :func:`moving_shapes`, so it really reconstructs them:
tiling quality and the demo are judged on it (random weights make no images).
"""

from __future__ import annotations

import math
import os

import torch

from .models.registry import load_vae
from .models.wan.model import WanConfig, WanVAE


FIXTURE_PATH = os.path.join(os.path.dirname(__file__), "data", "wan21_fixture.safetensors")


def fixture_vae(dtype: torch.dtype = torch.float32) -> WanVAE:
    """The bundled trained fixture (stored in fp16), in ``dtype``, ready for inference."""
    return load_vae(FIXTURE_PATH, torch.device("cpu"), dtype).eval()


def demo_vae(seed: int = 0, dim: int = 16) -> WanVAE:
    """Wan 2.1's exact architecture at reduced width (``dim`` instead of 96)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return WanVAE(WanConfig.wan21(dim)).eval().requires_grad_(False)


def moving_shapes(frames: int = 33, height: int = 128, width: int = 128, seed: int = 0) -> torch.Tensor:
    """A clip of soft coloured discs drifting over a gradient, ``[T, H, W, 3]`` in [0, 1]."""
    gen = torch.Generator().manual_seed(seed)
    ys = torch.linspace(0, 1, height).view(1, height, 1)
    xs = torch.linspace(0, 1, width).view(1, 1, width)
    t = torch.arange(frames, dtype=torch.float32).view(frames, 1, 1) / max(frames - 1, 1)
    clip = torch.stack([0.2 + 0.3 * xs.expand(frames, height, width), 0.25 + 0.3 * ys.expand(frames, height, width),
                        torch.full((frames, height, width), 0.35)], dim=-1)
    for _ in range(4):
        start, speed = torch.rand(2, generator=gen), torch.rand(2, generator=gen) - 0.5
        radius, color = 0.08 + 0.1 * torch.rand(1, generator=gen).item(), torch.rand(3, generator=gen)
        cy = start[0] + speed[0] * t
        cx = start[1] + speed[1] * t + 0.05 * torch.sin(2 * math.pi * t)
        mask = torch.sigmoid((radius - ((ys - cy) ** 2 + (xs - cx) ** 2).sqrt()) * 80).unsqueeze(-1)
        clip = clip * (1 - mask) + color * mask
    return clip.clamp(0, 1)
