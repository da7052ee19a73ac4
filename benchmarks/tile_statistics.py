"""Tiles of the families whose GroupNorms take each step's statistics over the whole frame: how close to the
untiled decode, and at what cost, for each way of gathering those statistics over the tiles.

``statistics_passes`` None gathers them norm by norm when decoding, one trial pass cut short at each norm in the
tiles (as any number above the norms' count does); 1 (an encode's default) estimates them in one trial pass
(every norm after the first normalises with partial sums); 0 gathers nothing (each tile sees the sums of the
tiles before it and its own). Each family is tests/oracle.py's reduced width with random weights, decoded untiled and with 128 px tiles at the default 64 px overlap on a 192 px frame
(2 x 2 tiles), the same process alternating the settings (2 threads, the fastest of ``--repeats``).

    python benchmarks/tile_statistics.py [--repeats 2] [--families "CogVideoX,Kandinsky 6"] [--encode]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(os.path.dirname(HERE), "tests")]
from decode_vs_diffusers import import_framestream  # noqa: E402

import_framestream()
from framestream.vae_core import build_vae, decode, encode  # noqa: E402
from framestream.vae_core.quality import psnr  # noqa: E402
import oracle  # noqa: E402

SIZE, TILE = 192, 128
# name: (the weights, the latent [C, T] (T None: per-frame latents, 4 frames), pixel frames to encode)
FAMILIES = {
    "CogVideoX": (lambda: oracle.diffusers_cogvideox().state_dict(), (16, 3), 9),
    "Kandinsky 6": (lambda: oracle.diffusers_kandinsky().state_dict(), (16, 5), 9),
    "SeedVR2": (oracle.seedvr2_weights, (16, 2), 5),
    "image VAE (SD)": (lambda: oracle.diffusers_kl(oracle.SD).state_dict(), (4, None), 4),
}
# more passes than the norms gather every norm exactly, decoding (the default) and encoding (where 1 is)
PASSES = {"norm by norm (decode's default)": 1000, "one estimating pass (1; encode's default)": 1, "none (0)": 0}


def timed(run, repeats: int) -> tuple[torch.Tensor, float]:
    best, out = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        out = run()
        best = min(best, time.perf_counter() - started)
    return out, best


def family_rows(name: str, repeats: int, direction: str) -> None:
    weights, (channels, latents), frames = FAMILIES[name]
    vae = build_vae(weights()).requires_grad_(False)
    side = SIZE // vae.spatial_ratio
    shape = (1, channels, latents, side, side) if latents else (4, channels, side, side)
    z = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    x = torch.rand(frames, SIZE, SIZE, 3, generator=torch.Generator().manual_seed(1))

    def run(**options):
        return decode(vae, z, **options) if direction == "decode" else encode(vae, x, **options)

    with torch.no_grad():
        run(tile=TILE)  # warm-up: kernels, the plan's probe
        whole, whole_s = timed(run, repeats)
        peak = 1.0 if direction == "decode" else whole.abs().max().item()
        for label, passes in PASSES.items():
            tiled, seconds = timed(lambda: run(tile=TILE, statistics_passes=passes), repeats)
            print(f"| {name} | {direction} | {label} | {psnr(tiled, whole, peak):.1f} dB | {seconds:.2f} | "
                  f"{seconds / whole_s:.1f}x |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--encode", action="store_true", help="encodes too")
    args = parser.parse_args()
    torch.set_num_threads(2)
    print(f"| family | direction | statistics in tiles | tiled vs untiled ({SIZE}x{SIZE}, {TILE} px tiles, 64 px "
          "overlap) | tiled s | vs untiled |")
    print("|---|---|---|---:|---:|---:|")
    for name in args.families.split(","):
        for direction in ("decode", "encode") if args.encode else ("decode",):
            family_rows(name, args.repeats, direction)


if __name__ == "__main__":
    main()
