"""Tiling quality, tiling cost, flat memory in video length, and the memory plan against measurement (CPU).

Every measurement that reads peak memory runs in its own process (peak RSS
cannot be reset), with glibc's mmap threshold fixed so freed blocks go back to
the OS as they would on a long-running host. Usage::

    python benchmarks/tiling_and_memory.py            # everything, a markdown table per part
    python benchmarks/tiling_and_memory.py quality    # one part: quality | cost | length | plan | budget
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(os.path.dirname(HERE), "tests")]
from decode_vs_diffusers import import_framestream  # noqa: E402
from measured_child import run_child  # noqa: E402
from oracle import diffusers_wan  # noqa: E402

fs = import_framestream()
from framestream.vae_core.streaming import engine  # noqa: E402
from framestream.vae_core import build_wan  # noqa: E402
from framestream.vae_core.demo import demo_vae, fixture_vae, moving_shapes  # noqa: E402
from framestream.vae_core.streaming import memory  # noqa: E402
from framestream.vae_core.streaming.estimate import estimate  # noqa: E402
from framestream.vae_core.streaming.memory import PLANNED_SHARE, request_for  # noqa: E402
from framestream.vae_core.quality import psnr  # noqa: E402
from framestream.vae_core.streaming.runtime import peak_rss_bytes, reset_peak_rss  # noqa: E402
from framestream.vae_core.streaming.tiles import DEFAULT_OVERLAP_PX, layout  # noqa: E402
from framestream.vae_core.io.video import VideoFileSink  # noqa: E402

MiB = 2**20


def band_mask(size: int, lines: set[int], band: int = 8) -> torch.Tensor:
    """Pixels within ``band`` of any of the vertical or horizontal ``lines``."""
    near = torch.zeros(size, dtype=torch.bool)
    for line in lines:
        near[max(0, line - band) : line + band] = True
    return near[:, None] | near[None, :]


def our_seams(size: int, tile_px: int, ratio: int) -> set[int]:
    """Where two of our tiles' owned parts meet: the middle of each overlap."""
    tiles = layout(size // ratio, size // ratio, tile_px // ratio, -(-DEFAULT_OVERLAP_PX // ratio))
    edges = {edge for w in tiles.windows for edge in (w.owned[0], w.owned[0] + w.owned[2])}
    return {edge * ratio for edge in edges if 0 < edge < size // ratio}


def _row(name: str, size: int, frames: int, tiles: str, tiled: torch.Tensor, whole: torch.Tensor, seams) -> None:
    print(f"| {name} | {frames}x{size}x{size} | {tiles} | {psnr(tiled, whole):.1f} | "
          f"{psnr(tiled[:, seams], whole[:, seams]):.1f} | {(tiled - whole).abs().max().item():.3f} |", flush=True)


def _as_frames(video: torch.Tensor) -> torch.Tensor:
    """diffusers' ``[1, 3, T, H, W]`` in [-1, 1] as our ``[T, H, W, 3]`` in [0, 1]."""
    return video[0].add(1).div(2).clamp(0, 1).permute(1, 2, 3, 0)


def quality() -> None:
    """Ours on the trained fixture and on random full-width weights; diffusers' tiled decode on the same weights."""
    print("| model | frame | tiles | PSNR tiled vs untiled, dB | seam bands (±8 px), dB | max abs diff |")
    print("|---|---|---|---:|---:|---:|")
    reference = diffusers_wan(dict(base_dim=96, z_dim=16))
    cases = [("trained fixture (Wan 2.1 arch., dim 12)", fixture_vae(), 256, 9),
             ("random Wan 2.1, full width 96", build_wan(reference.state_dict()), 256, 5)]
    for name, vae, size, frames in cases:
        latent = engine.encode(vae, moving_shapes(frames, size, size))
        whole = engine.decode(vae, latent)
        tile = (size + DEFAULT_OVERLAP_PX) // 2  # a 2x2 grid at the default overlap
        tiled = engine.decode(vae, latent, tile=tile)
        _row(f"FrameStream, {name}", size, frames, f"2x2 of {tile} px, overlap {DEFAULT_OVERLAP_PX}", tiled, whole,
             band_mask(size, our_seams(size, tile, vae.spatial_ratio)))
    # diffusers tiles the whole decoder from the latent: 2x2 tiles of 192 px every 128 px (64 px blended)
    with torch.no_grad():
        whole = _as_frames(reference.decode(latent).sample)
        reference.enable_tiling(192, 192, 128, 128)
        tiled = _as_frames(reference.decode(latent).sample)
    _row("diffusers 0.42 `enable_tiling`, same random weights", size, frames, "2x2 of 192 px, blend 64", tiled, whole,
         band_mask(size, {160}))


def cost() -> None:
    """Untiled vs a forced 2x2 grid at 512x512, interleaved, best of ``repeats``."""
    print("| model | frame | untiled | 2x2 tiles (288 px, overlap 64) | tiled / untiled |")
    print("|---|---|---:|---:|---:|")
    size = 512
    tile = (size + DEFAULT_OVERLAP_PX) // 2
    full_width = build_wan(diffusers_wan(dict(base_dim=96, z_dim=16)).state_dict())
    cases = [("Wan 2.1 arch., dim 16", demo_vae(dim=16), 9, 3), ("random Wan 2.1, full width 96", full_width, 5, 2)]
    for name, vae, frames, repeats in cases:
        shape = (1, 16, 1 + (frames - 1) // 4, size // 8, size // 8)
        latent = torch.randn(shape, generator=torch.Generator().manual_seed(0))
        timings = {"untiled": [], "tiled": []}
        for _ in range(repeats):
            for label, options in (("untiled", {}), ("tiled", {"tile": tile})):
                started = time.perf_counter()
                engine.decode(vae, latent, **options)
                timings[label].append(time.perf_counter() - started)
        best = {k: min(v) for k, v in timings.items()}
        print(f"| {name} | {frames}x{size}x{size} | {best['untiled']:.1f} s | {best['tiled']:.1f} s | "
              f"{best['tiled'] / best['untiled']:.2f} |", flush=True)


def _child(kind: str, **kw) -> dict:
    return run_child(__file__, kind, json.dumps(kw))


def child(kind: str, kw: dict) -> None:
    torch.set_num_threads(2)
    vae = demo_vae(dim=kw.get("dim", 16))
    size = kw["size"]
    latent = torch.randn(1, 16, kw["latents"], size // 8, size // 8, generator=torch.Generator().manual_seed(0))
    engine.decode(vae, latent[:, :, :2, :2, :2])  # warm up: kernels, thread pools
    base = reset_peak_rss()
    started = time.perf_counter()
    if kind == "file":
        with tempfile.TemporaryDirectory() as folder:
            engine.decode(vae, latent, sink=VideoFileSink(os.path.join(folder, "out.mp4"), 16))
    else:
        engine.decode(vae, latent, tile=kw.get("tile"), budget=kw.get("budget"))
    seconds = time.perf_counter() - started
    tile = kw.get("tile")
    if tile == "auto":  # the tile the engine chose, for the estimate it was chosen by
        tile = memory.plan(vae, size, size, 1, DEFAULT_OVERLAP_PX, kw["budget"]).tile_px
    print(json.dumps({"extra": peak_rss_bytes() - base, "peak": peak_rss_bytes(), "seconds": seconds, "tile": tile,
                      "estimate": estimate(request_for(vae, "decode", height=size, width=size, per_step=1,
                                                                 tile_px=tile)).total}))


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


def budget() -> None:
    """A budget that forces tiles: the planner's choice, and the peak it really reached."""
    vae = demo_vae(dim=16)
    limit = int(estimate(request_for(vae, "decode", height=512, width=512, per_step=1, tile_px=256)).total
                / PLANNED_SHARE)  # one that calls for 256 px tiles
    r = _child("plan", size=512, latents=3, tile="auto", budget=limit)
    verdict = "under" if r["extra"] <= limit else "OVER"
    print(f"budget {limit / MiB:.0f} MiB at 512x512: auto tile {r['tile']} px, estimate {r['estimate'] / MiB:.0f} "
          f"MiB, measured extra {r['extra'] / MiB:.0f} MiB ({verdict} the budget; the weights are in the baseline)")


if __name__ == "__main__":
    if sys.argv[1:2] == ["child"]:
        child(sys.argv[2], json.loads(sys.argv[3]))
    else:
        torch.set_num_threads(2)
        parts = {"quality": quality, "cost": cost, "length": length, "plan": plan, "budget": budget}
        for name in sys.argv[1:] or list(parts):
            print(f"\n## {name}\n")
            parts[name]()
