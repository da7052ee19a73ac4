"""LTX-Video decode: FrameStream's delayed stream vs the whole clip vs diffusers' framewise decode (CPU).

The model is diffusers' AutoencoderKLLTXVideo with 0.9.0's depth (4, 3, 3, 3, 4 resnets) at reduced widths
and its default random initialisation; ours shares its weights. Usage::

    python benchmarks/ltx_decode.py            # both parts
    python benchmarks/ltx_decode.py error      # error vs the whole-clip decode
    python benchmarks/ltx_decode.py memory     # time and peak RSS against video length
    python benchmarks/ltx_decode.py noise      # 0.9.1's decoder noise: tiles with one field vs fresh per call
    python benchmarks/ltx_decode.py cost       # time per latent frame, 8 vs 40 latent frames at 256x256
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
WIDTHS = (16, 32, 64, 64)


def models():
    from diffusers import AutoencoderKLLTXVideo

    torch.manual_seed(0)
    ref = AutoencoderKLLTXVideo(block_out_channels=WIDTHS, decoder_block_out_channels=WIDTHS).eval()
    return ref, build_vae(ref.state_dict())


def as_frames(video: torch.Tensor) -> torch.Tensor:
    return ((video + 1) / 2).clamp(0, 1)[0].permute(1, 2, 3, 0)


def error() -> None:
    ref, ours = models()
    latent = torch.randn(1, 128, 16, 4, 4, generator=torch.Generator().manual_seed(1))  # 121 frames, 128x128
    with torch.no_grad():
        whole = as_frames(ref.decode(latent).sample)
        ref.use_framewise_decoding = True
        framewise = as_frames(ref.decode(latent).sample)
    shared, upsampling = ours.decoder_reach()
    print(f"decoder reach: {shared:.2f} latent frames at latent resolution + {upsampling:.2f} in the upsampling "
          f"stages: the delayed stream's output lags its input by {ours.streaming.delay:g} latent frames\n")
    print("| LTX 0.9.0 depth, widths 16-64, 121x128x128 | max error vs whole clip | PSNR |")
    print("|---|---:|---:|")
    rows = [("diffusers use_framewise_decoding", framewise)]
    for per_step in (1, 4):
        rows.append((f"FrameStream delayed stream, {per_step} latent frames a step",
                     engine.decode(ours, latent, frames_per_step=per_step)))
    for name, frames in rows:
        print(f"| {name} | {(frames - whole).abs().max().item():.2e} | {psnr(frames, whole):.1f} dB |", flush=True)


def _child(kind: str, latents: int) -> dict:
    return run_child(__file__, kind, str(latents))


def child(kind: str, latents: int) -> None:
    torch.set_num_threads(2)
    ref, ours = models()
    latent = torch.randn(1, 128, latents, 4, 4, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref.decode(latent[:, :, :2])  # warm up
        engine.decode(ours, latent[:, :, :2])
        base = reset_peak_rss()
        started = time.perf_counter()
        if kind == "framestream":
            engine.decode(ours, latent, sink=CallbackSink(lambda *chunk: None))  # frames streamed away
        else:
            ref.use_framewise_decoding = kind == "framewise"
            ref.decode(latent)
    print(json.dumps({"extra": peak_rss_bytes() - base, "seconds": time.perf_counter() - started}))


def memory() -> None:
    print("| decode, 128x128 | frames | extra peak RSS | time |")
    print("|---|---:|---:|---:|")
    for kind in ("framestream", "whole", "framewise"):
        for latents in (2, 9, 33, 65):
            r = _child(kind, latents)
            print(f"| {kind} | {1 + 8 * (latents - 1)} | {r['extra'] / MiB:.0f} MiB | {r['seconds']:.1f} s |",
                  flush=True)


def cost() -> None:
    """Time per latent frame of a short and a long clip at 256x256 (best of two, frames streamed away), beside
    diffusers' whole-clip call: the delayed stream computes every frame once, so a long clip costs no more per
    latent frame than a short one (the windows it replaced cost 3.1x)."""
    torch.set_num_threads(2)
    ref, ours = models()
    engine.decode(ours, torch.randn(1, 128, 2, 2, 2))  # warm up
    print("| 256x256 | FrameStream | per latent frame | diffusers whole clip |")
    print("|---|---:|---:|---:|")
    per_frame = {}
    for latents in (8, 40):
        latent = torch.randn(1, 128, latents, 8, 8, generator=torch.Generator().manual_seed(1))
        best = float("inf")
        for _ in range(2):
            started = time.perf_counter()
            engine.decode(ours, latent, sink=CallbackSink(lambda *chunk: None))
            best = min(best, time.perf_counter() - started)
        with torch.no_grad():
            started = time.perf_counter()
            ref.decode(latent)
            whole = time.perf_counter() - started
        per_frame[latents] = best / latents
        print(f"| {latents} latent frames | {best:.2f} s | {best / latents:.3f} s | {whole:.2f} s |", flush=True)
    print(f"\nper latent frame, 40 / 8: {per_frame[40] / per_frame[8]:.2f}")


def noise() -> None:
    """0.9.1's noisy decoder (diffusers' default init, whose noise scales start at zero, so they are drawn
    here at two sizes): tiled decode vs whole frame, with the fields shared by the tiles (FrameStream) or
    drawn afresh on every call (what diffusers and the host do), emulated by patching the noise source."""
    from diffusers import AutoencoderKLLTXVideo

    from framestream.vae_core.models.ltx.noise import SpatialNoise

    torch.manual_seed(0)
    ref = AutoencoderKLLTXVideo(block_out_channels=WIDTHS, decoder_block_out_channels=(16, 32, 64),
                                decoder_layers_per_block=(5, 6, 7, 8), decoder_spatio_temporal_scaling=(True,) * 3,
                                decoder_inject_noise=(True, True, True, False), upsample_residual=(True,) * 3,
                                upsample_factor=(2,) * 3, timestep_conditioning=True).eval()
    ours = build_vae(ref.state_dict())
    ours.decode_timestep = 0.05
    latent = torch.randn(1, 128, 2, 8, 8, generator=torch.Generator().manual_seed(1))  # 9x256x256
    scales = [p for name, p in ours.named_parameters() if "per_channel_scale" in name]
    shared_call = SpatialNoise.__call__
    print("| LTX 0.9.1 decoder (5-8 resnets), widths 16-64, 9x256x256, tiles 192 px / 96 overlap | noise "
          "scale | mean error | max error | PSNR |")
    print("|---|---:|---:|---:|---:|")
    for sigma in (0.1, 1.0):
        gen = torch.Generator().manual_seed(2)
        with torch.no_grad():
            for p in scales:
                p.copy_(sigma * torch.randn(p.shape, generator=gen))
        whole = engine.decode(ours, latent)
        for label, call in (("fields shared by the tiles (FrameStream)", shared_call),
                            ("fields drawn afresh per call", lambda self, i, x: torch.randn(x.shape[-2:]))):
            SpatialNoise.__call__ = call
            tiled = engine.decode(ours, latent, tile=192, overlap=96)
            SpatialNoise.__call__ = shared_call
            diff = (tiled - whole).abs()
            print(f"| {label} | {sigma} | {diff.mean().item():.4f} | {diff.max().item():.3f} | "
                  f"{psnr(tiled, whole):.1f} dB |")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        child(sys.argv[2], int(sys.argv[3]))
    else:
        parts = sys.argv[1:] or ["error", "memory"]
        for part in parts:
            {"error": error, "memory": memory, "noise": noise, "cost": cost}[part]()
            print()
