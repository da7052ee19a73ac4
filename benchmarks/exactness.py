"""Streamed FrameStream vs diffusers' AutoencoderKLWan on the same random weights: max |difference| and PSNR.

Decode is compared on raw decoder output (before any clamp) for several
frames-per-step; encode on the latent mean for several latents-per-step.

    python benchmarks/exactness.py
"""

from __future__ import annotations

import math
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
from decode_vs_diffusers import import_framestream  # noqa: E402
from oracle import WAN21_SMALL, WAN22_SMALL, diffusers_decode_raw, diffusers_wan  # noqa: E402

import_framestream()
from framestream.vae_core.streaming import engine  # noqa: E402
from framestream.vae_core import build_wan  # noqa: E402
from framestream.vae_core.streaming.state import StreamState  # noqa: E402

CASES = [
    ("Wan 2.1, width 8", WAN21_SMALL, (7, 4, 6)),
    ("Wan 2.2, width 8/12", WAN22_SMALL, (7, 3, 4)),
    ("Wan 2.1, full width 96", dict(base_dim=96, z_dim=16), (5, 2, 3)),
]


def psnr(a: torch.Tensor, b: torch.Tensor, peak: float) -> float:
    mse = (a - b).pow(2).mean().item()
    return math.inf if mse == 0 else 10 * math.log10(peak**2 / mse)


@torch.inference_mode()
def raw_streamed_decode(vae, z, per_step) -> torch.Tensor:
    """The engine's chunking, keeping the raw decoder output (the engine itself hands sinks clamped frames)."""
    state, chunks = StreamState(), []
    with state.active():
        for start in range(0, z.shape[2], per_step):
            chunks.append(vae.decode_chunk(z[:, :, start : start + per_step]))
            state.carries.commit()
    return torch.cat(chunks, dim=2)


def main() -> None:
    torch.set_num_threads(2)
    print("| model | check | max abs diff | PSNR dB |")
    print("|---|---|---:|---:|")
    for name, config, (t, h, w) in CASES:
        ref = diffusers_wan(config)
        ours = build_wan(ref.state_dict())
        z = torch.randn(1, ours.latent_channels, t, h, w, generator=torch.Generator().manual_seed(0))
        expected = diffusers_decode_raw(ref, z)
        for per_step in (1, 2, 4, t):
            got = raw_streamed_decode(ours, z, per_step)
            print(f"| {name} | decode, {per_step} latent frames per step | {(got - expected).abs().max().item():.1e} |"
                  f" {psnr(got, expected, expected.abs().max().item()):.1f} |", flush=True)
        r = ours.spatial_ratio
        frames = torch.rand(4 * t - 3, h * r, w * r, 3, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            expected_latent = ref.encode(frames.permute(3, 0, 1, 2).unsqueeze(0) * 2 - 1).latent_dist.mode()
        for per_step in (1, 2):
            got = engine.encode(ours, frames, latents_per_step=per_step)
            peak = expected_latent.abs().max().item()
            print(f"| {name} | encode, {per_step} latent frames per step | "
                  f"{(got - expected_latent).abs().max().item():.1e} | {psnr(got, expected_latent, peak):.1f} |", flush=True)


if __name__ == "__main__":
    main()
