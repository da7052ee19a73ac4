"""Kandinsky 6's video VAE: FrameStream against diffusers' AutoencoderKLKVAEVideo with the same random weights (CPU).

The model is tests/oracle.py's reduced width (32-64 channels, one resnet per level, 32 groups as released).
Usage::

    python benchmarks/kandinsky_decode.py            # all parts
    python benchmarks/kandinsky_decode.py error      # exactness and tiles against diffusers' decode
    python benchmarks/kandinsky_decode.py speed      # time and peak RSS, whole processes, alternating
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(os.path.dirname(HERE), "tests")]
from decode_vs_diffusers import import_framestream  # noqa: E402
from measured_child import run_child  # noqa: E402

import_framestream()
from framestream.vae_core import DecodeStream, build_vae, decode, encode  # noqa: E402
from framestream.vae_core.quality import psnr  # noqa: E402
from framestream.vae_core.streaming import group_norm  # noqa: E402
from framestream.vae_core.streaming.runtime import peak_rss_bytes, reset_peak_rss  # noqa: E402
from framestream.vae_core.streaming.sinks import CallbackSink  # noqa: E402
from helpers import norm_inputs_moments  # noqa: E402
from oracle import diffusers_kandinsky  # noqa: E402

MiB = 2**20


def pair():
    ref = diffusers_kandinsky()
    return ref, build_vae({k: v.clone() for k, v in ref.state_dict().items()})


def as_frames(video: torch.Tensor) -> torch.Tensor:
    return video[0].permute(1, 2, 3, 0).add(1).div(2).clamp(0, 1)


def latent(frames: int, size: int) -> torch.Tensor:
    return torch.randn(1, 16, frames, size // 8, size // 8, generator=torch.Generator().manual_seed(1))


def _row(name: str, got: torch.Tensor, reference: torch.Tensor, peak: float = 1.0) -> None:
    print(f"| {name} | {(got - reference).abs().max().item():.2e} | {psnr(got, reference, peak):.1f} dB |", flush=True)


def error() -> None:
    ref, ours = pair()
    z = latent(10, 64)  # 34 frames: the release's chunks of 5, 4 and 1 latent frames
    print("| Kandinsky 6, 10 latent frames at 64x64 | max error vs diffusers' decode | PSNR |")
    print("|---|---:|---:|")
    with torch.no_grad():
        native = as_frames(ref.decode(z).sample)
    _row("FrameStream decode", decode(ours, z), native)
    stream = DecodeStream(ours, frames=10)
    _row("FrameStream DecodeStream, one latent frame a push", torch.cat(
        [stream.push(z[:, :, i : i + 1]) for i in range(10)] + [stream.flush()]), native)
    x = torch.rand(41, 64, 64, 3, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        encoded = ref.encode(x.permute(3, 0, 1, 2)[None] * 2 - 1).latent_dist.mode()
    _row("FrameStream encode, 41 frames (latent; peak = its largest value)", encode(ours, x), encoded,
         encoded.abs().max().item())
    print()
    z = latent(5, 192)
    whole = decode(ours, z)
    exact = norm_inputs_moments(ours, lambda: ours.decode_chunk(z))
    print("| Kandinsky 6, 17 frames at 192x192 | max error vs the whole frame | PSNR |")
    print("|---|---:|---:|")
    for tile in (128, 96):
        stream = DecodeStream(ours, frames=5, tile=tile, pooling=group_norm.Pooling(frozen=exact))
        _row(f"{tile} px tiles, 64 px overlap, the chunk's own statistics given",
             torch.cat([stream.push(z), stream.flush()]), whole)
        _row(f"{tile} px tiles, 64 px overlap, statistics gathered norm by norm (the default)",
             decode(ours, z, tile=tile), whole)
        _row(f"{tile} px tiles, 64 px overlap, statistics estimated in one pass (`statistics_passes=1`)",
             decode(ours, z, tile=tile, statistics_passes=1), whole)


def child(kind: str, latents: int, size: int) -> None:
    torch.set_num_threads(2)
    ref, ours = pair()
    z = latent(latents, size)
    with torch.no_grad():
        decode(ours, z[:, :, :1])  # warm up both
        ref.decode(z[:, :, :1])
        base = reset_peak_rss()
        started = time.perf_counter()
        if kind == "framestream":
            decode(ours, z, sink=CallbackSink(lambda *chunk: None))  # frames streamed away
        else:
            ref.decode(z)
    print(json.dumps({"extra": peak_rss_bytes() - base, "seconds": time.perf_counter() - started}))


def speed(repeats: int = 3) -> None:
    print("| decode | frames | FrameStream s | diffusers s | ratio | FrameStream extra RSS | diffusers extra RSS |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for latents, size in ((9, 128), (33, 128), (9, 256)):
        runs = {"framestream": [], "diffusers": []}
        for _ in range(repeats):
            for kind in runs:  # alternating whole processes
                runs[kind].append(run_child(__file__, kind, str(latents), str(size)))
        ours, theirs = (statistics.median(r["seconds"] for r in runs[k]) for k in ("framestream", "diffusers"))
        extra = {k: max(r["extra"] for r in runs[k]) / MiB for k in runs}
        print(f"| {size}x{size} | {1 + 4 * (latents - 1)} | {ours:.2f} | {theirs:.2f} | {ours / theirs:.2f} | "
              f"{extra['framestream']:.0f} MiB | {extra['diffusers']:.0f} MiB |", flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        for part in sys.argv[1:] or ["error", "speed"]:
            {"error": error, "speed": speed}[part]()
            print()
