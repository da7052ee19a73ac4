"""HunyuanVideo and CogVideoX decode: FrameStream's streamed decode vs the whole clip vs diffusers' own options (CPU).

Both VAEs normalise with GroupNorm over time and space (see README, "Why GroupNorm
does not stream"). Models are diffusers' AutoencoderKLHunyuanVideo /
AutoencoderKLCogVideoX at widths 32-64 with one resnet per block, ours sharing
their weights. Usage::

    python benchmarks/groupnorm_decode.py            # both parts
    python benchmarks/groupnorm_decode.py error      # error vs the whole clip in one decoder call
    python benchmarks/groupnorm_decode.py memory     # time and peak RSS against video length
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

fs = import_framestream()
from framestream.vae_core.streaming import engine  # noqa: E402
from framestream.vae_core import build_vae  # noqa: E402
from framestream.vae_core.quality import psnr  # noqa: E402
from framestream.vae_core.streaming.runtime import peak_rss_bytes, reset_peak_rss  # noqa: E402
from framestream.vae_core.streaming.sinks import CallbackSink  # noqa: E402

MiB = 2**20
CONFIG = dict(block_out_channels=(32, 32, 64, 64), layers_per_block=1)


def hunyuan(weight_scale: float | None = 0.05):
    """``weight_scale``: every parameter drawn from N(0, scale) (a smooth decoder); None: diffusers' default init."""
    from diffusers import AutoencoderKLHunyuanVideo

    torch.manual_seed(0)
    ref = AutoencoderKLHunyuanVideo(**CONFIG).eval()
    if weight_scale is not None:
        with torch.no_grad():
            for param in ref.parameters():
                param.normal_(0, weight_scale)
    return ref, build_vae(ref.state_dict())


def cogvideox():
    from diffusers import AutoencoderKLCogVideoX

    torch.manual_seed(0)
    ref = AutoencoderKLCogVideoX(**CONFIG).eval()
    return ref, build_vae(ref.state_dict())


def as_frames(video: torch.Tensor) -> torch.Tensor:
    return ((video + 1) / 2).clamp(0, 1)[0].permute(1, 2, 3, 0)


def _row(name: str, frames: torch.Tensor, whole: torch.Tensor) -> None:
    print(f"| {name} | {(frames - whole).abs().max().item():.2e} | {psnr(frames, whole):.1f} dB |", flush=True)


def error() -> None:
    latent = torch.randn(1, 16, 9, 8, 8, generator=torch.Generator().manual_seed(1))  # 33 frames, 64x64
    print("| HunyuanVideo, 33x64x64 | max error vs whole clip | PSNR |")
    print("|---|---:|---:|")
    for label, scale in (("N(0, 0.05) weights", 0.05), ("default init", None)):
        ref, ours = hunyuan(scale)
        with torch.no_grad():
            ref.use_framewise_decoding = False
            whole = as_frames(ref.decode(latent).sample)
            ref.use_framewise_decoding = True
            _row(f"{label}: diffusers use_framewise_decoding", as_frames(ref.decode(latent).sample), whole)
            ref.use_framewise_decoding = False
            ref.enable_tiling(tile_sample_min_height=32, tile_sample_min_width=32, tile_sample_stride_height=16,
                              tile_sample_stride_width=16)
            _row(f"{label}: diffusers tiled (32 px tiles, 16 px stride)", as_frames(ref.decode(latent).sample), whole)
        # streamed a latent frame a step: the plan would decode this short clip in one step, the whole clip's result
        for passes in (0, 1, 2):
            _row(f"{label}: FrameStream, {passes} gathering pass(es)",
                 engine.decode(ours, latent, statistics_passes=passes, frames_per_step=1), whole)
        _row(f"{label}: FrameStream, 1 pass, 32 px tiles / 16 px overlap",
             engine.decode(ours, latent, tile=32, overlap=16, frames_per_step=1), whole)
    print()
    ref, ours = cogvideox()
    print("| CogVideoX, 33x64x64 | max error vs diffusers' decode | PSNR |")
    print("|---|---:|---:|")
    with torch.no_grad():
        native = as_frames(ref.decode(latent).sample)
        whole = as_frames(ref.decoder(latent)[0])
        _row("one decoder call over the whole clip (not the model's own cut)", whole, native)
        ref.enable_tiling(tile_sample_min_height=32, tile_sample_min_width=32, tile_overlap_factor_height=0.5,
                          tile_overlap_factor_width=0.5)
        _row("diffusers tiled (32 px tiles, half overlap)", as_frames(ref.decode(latent).sample), native)
    _row("FrameStream streamed", engine.decode(ours, latent), native)
    _row("FrameStream, 32 px tiles / 16 px overlap (step statistics shared)",
         engine.decode(ours, latent, tile=32, overlap=16), native)


def child(model: str, kind: str, latents: int) -> None:
    torch.set_num_threads(2)
    ref, ours = hunyuan() if model == "hunyuan" else cogvideox()
    latent = torch.randn(1, 16, latents, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        engine.decode(ours, latent[:, :, :1])  # warm up
        base = reset_peak_rss()
        started = time.perf_counter()
        if kind == "framestream":
            engine.decode(ours, latent, sink=CallbackSink(lambda *chunk: None))  # frames streamed away
        elif model == "hunyuan":
            ref.use_framewise_decoding = kind == "framewise"
            ref.decode(latent)
        elif kind == "whole":
            ref.decoder(latent)
        else:
            ref.decode(latent)  # CogVideoX's own frame-batched decode
    print(json.dumps({"extra": peak_rss_bytes() - base, "seconds": time.perf_counter() - started}))


def memory() -> None:
    print("| decode, 64x64 | frames | extra peak RSS | time |")
    print("|---|---:|---:|---:|")
    for model in ("hunyuan", "cogvideox"):
        for kind in ("framestream", "whole", "framewise"):
            for latents in (9, 33):
                r = run_child(__file__, model, kind, str(latents))
                print(f"| {model} {kind} | {1 + 4 * (latents - 1)} | {r['extra'] / MiB:.0f} MiB | "
                      f"{r['seconds']:.1f} s |", flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        for part in sys.argv[1:] or ["error", "memory"]:
            {"error": error, "memory": memory}[part]()
            print()
