"""Stable Video Diffusion VAE decode: FrameStream's windows vs diffusers' one-call and chunked decodes (CPU).

The model is diffusers' AutoencoderKLTemporalDecoder at the release's depth (four levels, two resnets a
level: a temporal reach of 25 + 4 frames) with reduced widths and its default random initialisation; ours
shares its weights. diffusers' pipeline decodes ``decode_chunk_size`` frames per call, each chunk on its own.
Usage::

    python benchmarks/svd_decode.py            # both parts
    python benchmarks/svd_decode.py error      # error vs the one-call decode
    python benchmarks/svd_decode.py memory     # time and peak RSS against video length
"""

from __future__ import annotations

import json
import os
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE]
from decode_vs_diffusers import import_framestream  # noqa: E402
from measured_child import run_child  # noqa: E402

import_framestream()
from framestream.vae_core import build_vae, decode  # noqa: E402
from framestream.vae_core.quality import psnr  # noqa: E402
from framestream.vae_core.streaming.runtime import peak_rss_bytes, reset_peak_rss  # noqa: E402
from framestream.vae_core.streaming.sinks import CallbackSink  # noqa: E402

MiB = 2**20
WIDTHS = (32, 64, 128, 128)


def models():
    from diffusers import AutoencoderKLTemporalDecoder

    torch.manual_seed(0)
    ref = AutoencoderKLTemporalDecoder(block_out_channels=WIDTHS, down_block_types=("DownEncoderBlock2D",) * 4,
                                       layers_per_block=2).eval()
    return ref, build_vae(ref.state_dict())


def diffusers_frames(ref, latent: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
    """One call, or the pipeline's ``decode_chunk_size`` frames per call; frames ``[T, H, W, 3]`` in [0, 1]."""
    with torch.no_grad():
        parts = [ref.decode(part, num_frames=part.shape[0]).sample for part in latent.split(chunk or len(latent))]
    return ((torch.cat(parts) + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1)


def error() -> None:
    torch.set_num_threads(2)
    ref, ours = models()
    latent = torch.randn(64, 4, 8, 8, generator=torch.Generator().manual_seed(1))  # 64 frames, 64x64
    whole = diffusers_frames(ref, latent)
    print(f"halos {ours.streaming.shared_halo} (latent resolution) + {ours.streaming.halo} frames, cores of "
          f"{ours.streaming.core}: {len(range(0, 64, ours.streaming.core))} windows\n")
    print("| SVD depth, widths 32-128, 64x64x64 | max error vs one call | PSNR |")
    print("|---|---:|---:|")
    rows = [(f"diffusers, decode_chunk_size {chunk}", diffusers_frames(ref, latent, chunk)) for chunk in (8, 14, 25)]
    rows += [(f"FrameStream windows, {p} gathering pass{'es' if p != 1 else ''}",
              decode(ours, latent, statistics_passes=p)) for p in (0, 1, 2, 3)]
    for name, frames in rows:
        print(f"| {name} | {(frames - whole).abs().max().item():.2e} | {psnr(frames, whole):.1f} dB |", flush=True)


def child(kind: str, frames: int) -> None:
    torch.set_num_threads(2)
    ref, ours = models()
    latent = torch.randn(frames, 4, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref.decode(latent[:2], num_frames=2)  # warm up
        decode(ours, latent[:2])
        base = reset_peak_rss()
        started = time.perf_counter()
        if kind == "framestream":
            decode(ours, latent, sink=CallbackSink(lambda *chunk: None))  # frames streamed away
        else:
            diffusers_frames(ref, latent, 8 if kind == "chunks of 8" else None)
    print(json.dumps({"extra": peak_rss_bytes() - base, "seconds": time.perf_counter() - started}))


def memory() -> None:
    print("| decode, 128x128 | frames | extra peak RSS | time |")
    print("|---|---:|---:|---:|")
    for kind in ("framestream", "one call", "chunks of 8"):
        for frames in (25, 100, 200):
            r = run_child(__file__, kind, str(frames))
            print(f"| {kind} | {frames} | {r['extra'] / MiB:.0f} MiB | {r['seconds']:.1f} s |", flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        child(sys.argv[2], int(sys.argv[3]))
    else:
        for part in sys.argv[1:] or ["error", "memory"]:
            {"error": error, "memory": memory}[part]()
            print()
