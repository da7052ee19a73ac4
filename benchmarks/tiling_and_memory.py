"""Tiling quality, tiling cost, flat memory in video length, and the memory plan against measurement (CPU).

Every measurement that reads peak memory runs in its own process (peak RSS
cannot be reset), with glibc's mmap threshold fixed so freed blocks go back to
the OS as they would on a long-running host. Usage::

    python benchmarks/tiling_and_memory.py            # everything, a markdown table per part
    python benchmarks/tiling_and_memory.py quality    # one part: quality | cost | length | plan
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from decode_vs_diffusers import import_framestream  # noqa: E402

fs = import_framestream()
from framestream.vae_core import engine  # noqa: E402
from framestream.vae_core.demo import demo_vae, fixture_vae, moving_shapes  # noqa: E402
from framestream.vae_core.memory import estimate  # noqa: E402
from framestream.vae_core.quality import psnr  # noqa: E402
from framestream.vae_core.runtime import peak_rss_bytes  # noqa: E402
from framestream.vae_core.tiles import DEFAULT_OVERLAP_PX, layout  # noqa: E402
from framestream.vae_core.video import VideoFileSink  # noqa: E402
from framestream.vae_core.wan import WanConfig, WanVAE  # noqa: E402

MiB = 2**20


def seam_mask(height: int, width: int, tile_px: int, ratio: int, band: int = 8) -> torch.Tensor:
    """Pixels within ``band`` of a line where two tiles' owned parts meet."""
    tiles = layout(height // ratio, width // ratio, tile_px // ratio, -(-DEFAULT_OVERLAP_PX // ratio))
    mask = torch.zeros(height, width, dtype=torch.bool)
    for w in tiles.windows:
        top, left, h, w_ = (v * ratio for v in w.owned)
        for row in (top, top + h):
            if 0 < row < height:
                mask[max(0, row - band) : row + band] = True
        for col in (left, left + w_):
            if 0 < col < width:
                mask[:, max(0, col - band) : col + band] = True
    return mask


def quality() -> None:
    print("| model | frame | tiles | PSNR tiled vs untiled, dB | seam bands (±8 px), dB | max abs diff |")
    print("|---|---|---|---:|---:|---:|")
    cases = [("trained fixture (Wan 2.1 arch., dim 12)", fixture_vae(), 256, 9),
             ("random Wan 2.1, full width 96", WanVAE(WanConfig.wan21()).eval().requires_grad_(False), 256, 5)]
    for name, vae, size, frames in cases:
        latent = engine.encode(vae, moving_shapes(frames, size, size))
        whole = engine.decode(vae, latent)
        tile = (size + DEFAULT_OVERLAP_PX) // 2  # a 2x2 grid at the default overlap
        tiled = engine.decode(vae, latent, tile=tile)
        seams = seam_mask(size, size, tile, vae.spatial_ratio)
        print(f"| {name} | {frames}x{size}x{size} | 2x2 of {tile} px, overlap {DEFAULT_OVERLAP_PX} | "
              f"{psnr(tiled, whole):.1f} | {psnr(tiled[:, seams], whole[:, seams]):.1f} | "
              f"{(tiled - whole).abs().max().item():.3f} |", flush=True)


def cost() -> None:
    vae = demo_vae(dim=16)
    size, frames = 512, 9
    latent = engine.encode(vae, moving_shapes(5, size, size))[:, :, :1].repeat(1, 1, 1 + (frames - 1) // 4, 1, 1)
    tile = (size + DEFAULT_OVERLAP_PX) // 2
    timings = {"untiled": [], "2x2 tiles": []}
    for _ in range(3):  # interleaved, best of three
        for label, options in (("untiled", {}), ("2x2 tiles", {"tile": tile})):
            started = time.perf_counter()
            engine.decode(vae, latent, **options)
            timings[label].append(time.perf_counter() - started)
    best = {k: min(v) for k, v in timings.items()}
    print(f"| decode {frames}x{size}x{size}, Wan 2.1 arch. dim 16 | untiled {best['untiled']:.2f} s | "
          f"2x2 of {tile} px {best['2x2 tiles']:.2f} s | ratio {best['2x2 tiles'] / best['untiled']:.2f} |")


def _child(kind: str, **kw) -> dict:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072", "OMP_NUM_THREADS": "2"}
    out = subprocess.run([sys.executable, __file__, "child", kind, json.dumps(kw)], env=env, capture_output=True,
                         text=True, timeout=3600)
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def child(kind: str, kw: dict) -> None:
    torch.set_num_threads(2)
    vae = demo_vae(dim=kw.get("dim", 16))
    size = kw["size"]
    latent = torch.randn(1, 16, kw["latents"], size // 8, size // 8, generator=torch.Generator().manual_seed(0))
    engine.decode(vae, latent[:, :, :2, :2, :2])  # warm up: kernels, thread pools
    base = peak_rss_bytes()
    started = time.perf_counter()
    if kind == "file":
        with tempfile.TemporaryDirectory() as folder:
            engine.decode(vae, latent, sink=VideoFileSink(os.path.join(folder, "out.mp4"), 16))
    else:
        engine.decode(vae, latent, tile=kw.get("tile"), budget=kw.get("budget"))
    print(json.dumps({"extra": peak_rss_bytes() - base, "peak": peak_rss_bytes(), "seconds": time.perf_counter() - started,
                      "estimate": estimate(vae, size, size, 1, kw.get("tile")).total}))


def length() -> None:
    print("| decode -> mp4, Wan 2.1 arch. dim 16, 256x256 | peak RSS | extra over warm model | time |")
    print("|---|---:|---:|---:|")
    results = {}
    for latents in (3, 33):
        r = results[latents] = _child("file", size=256, latents=latents)
        print(f"| {1 + 4 * (latents - 1)} frames | {r['peak'] / MiB:.0f} MiB | {r['extra'] / MiB:.0f} MiB | "
              f"{r['seconds']:.1f} s |", flush=True)
    print(f"\npeak RSS ratio 129 / 9 frames: {results[33]['peak'] / results[3]['peak']:.3f}")


def plan() -> None:
    print("| frame | tiles | estimate | measured extra RSS | measured / estimate |")
    print("|---|---|---:|---:|---:|")
    for size, tile in ((256, None), (384, None), (512, None), (512, 192), (512, 320)):
        r = _child("plan", size=size, latents=3, tile=tile)
        print(f"| {size}x{size} | {tile or 'none'} | {r['estimate'] / MiB:.0f} MiB | {r['extra'] / MiB:.0f} MiB | "
              f"{r['extra'] / r['estimate']:.2f} |", flush=True)
    vae = demo_vae(dim=16)
    budget = estimate(vae, 512, 512, 1, 256).total
    r = _child("plan", size=512, latents=3, tile="auto", budget=budget)
    print(f"\nbudget {budget / MiB:.0f} MiB at 512x512 (auto tiles): measured extra {r['extra'] / MiB:.0f} MiB "
          f"({'under' if r['extra'] <= budget else 'OVER'} the budget; weights are in the warm baseline)")


if __name__ == "__main__":
    if sys.argv[1:2] == ["child"]:
        child(sys.argv[2], json.loads(sys.argv[3]))
    else:
        torch.set_num_threads(2)
        parts = {"quality": quality, "cost": cost, "length": length, "plan": plan}
        for name in sys.argv[1:] or list(parts):
            print(f"\n## {name}\n")
            parts[name]()
