"""MiniMax H3's video VAE: FrameStream against diffusers' AutoencoderKLMiniMaxH3 with the same random weights (CPU).

The model is tests/oracle.py's reduced width (encoder 32-64 channels, one resnet per level; a decoder of two
blocks, 2 heads of 64), in the release's default tiles (256 px, 64 px overlap) on both sides: diffusers tiles by
default, and FrameStream's model starts with the same tiles. Pixels on diffusers' side are ImageNet-normalised.
Usage::

    python benchmarks/minimax_decode.py            # all parts
    python benchmarks/minimax_decode.py error      # exactness against diffusers' decode and encode
    python benchmarks/minimax_decode.py speed      # time and peak RSS, whole processes, alternating
    python benchmarks/minimax_decode.py memory     # peak RSS at 39 and 141 frames: FrameStream's is flat
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
from framestream.vae_core.streaming.runtime import peak_rss_bytes, reset_peak_rss  # noqa: E402
from framestream.vae_core.streaming.sinks import CallbackSink  # noqa: E402
from oracle import diffusers_minimax, imagenet_to_unit, unit_to_imagenet  # noqa: E402

MiB = 2**20
SPATIAL, CHANNELS = 16, 24


def pair():
    """diffusers' model in its default tiles and FrameStream's from its weights, in the release's default tiles."""
    ref = diffusers_minimax()
    return ref, build_vae({k: v.clone() for k, v in ref.state_dict().items()})


def frames_of(video: torch.Tensor) -> torch.Tensor:
    """diffusers' [1, 3, T, H, W] ImageNet-normalised -> [T, H, W, 3] in [0, 1], as FrameStream gives them."""
    return imagenet_to_unit(video[0]).clamp(0, 1).permute(1, 2, 3, 0)


def diffusers_encode(ref, x: torch.Tensor) -> torch.Tensor:
    return ref.encode(unit_to_imagenet(x.permute(3, 0, 1, 2))[None]).latent_dist.mode()


def latent(frames: int, height: int, width: int) -> torch.Tensor:
    return torch.randn(1, CHANNELS, frames, height // SPATIAL, width // SPATIAL,
                       generator=torch.Generator().manual_seed(1))


def video(frames: int, height: int, width: int) -> torch.Tensor:
    return torch.rand(frames, height, width, 3, generator=torch.Generator().manual_seed(2))


def pixel_frames(latents: int) -> int:
    return 17 * (latents // 5) + 5  # 5k + 2 latent frames


def _row(name: str, got: torch.Tensor, reference: torch.Tensor, peak: float = 1.0) -> None:
    assert got.shape == reference.shape, (got.shape, reference.shape)
    print(f"| {name} | {(got - reference).abs().max().item():.2e} | {psnr(got, reference, peak):.1f} dB |", flush=True)


def error() -> None:
    torch.set_num_threads(2)
    ref, ours = pair()
    height, width = 320, 288  # 20x18 latent pixels: 2x2 of the release's 256 px tiles in every window
    z = latent(12, height, width)  # 39 frames: two decoder windows of 7 latent frames, cross-faded
    with torch.no_grad():
        native = frames_of(ref.decode(z).sample)
    inside = ((native > 0) & (native < 1)).float().mean().item()
    print(f"| MiniMax H3, 12 latent frames at {height}x{width} px (diffusers: {len(native)} frames, std "
          f"{native.std().item():.3f}, {100 * inside:.0f}% of values inside (0, 1)) | max error vs diffusers' decode "
          "| PSNR |")
    print("|---|---:|---:|")
    _row("FrameStream decode", decode(ours, z), native)
    with DecodeStream(ours, frames=12) as stream:
        pushed = [stream.push(z[:, :, i : i + 1]) for i in range(12)] + [stream.flush()]
    _row("FrameStream DecodeStream, one latent frame a push", torch.cat(pushed), native)
    x = video(39, height, width)  # 39 frames: three clips of 17, the last padded; 12 latent frames
    with torch.no_grad():
        encoded = diffusers_encode(ref, x)
    _row(f"FrameStream encode, 39 frames at {height}x{width} (latent {tuple(encoded.shape[2:])}; peak = its "
         "largest value)", encode(ours, x), encoded, encoded.abs().max().item())


def child(kind: str, op: str, latents: int, size: int) -> None:
    torch.set_num_threads(2)
    ref, ours = pair()
    with torch.no_grad():
        if op == "decode":
            z = latent(latents, size, size)
            decode(ours, z[:, :, :7])  # warm up both: one window
            ref.decode(z[:, :, :7])
        else:
            x = video(pixel_frames(latents), size, size)
            encode(ours, x[:5])  # one clip (padded to 17)
            diffusers_encode(ref, x[:5])
        base = reset_peak_rss()
        started = time.perf_counter()
        if op == "decode" and kind == "framestream":
            decode(ours, z, sink=CallbackSink(lambda *chunk: None))  # frames streamed away
        elif op == "decode":
            ref.decode(z)
        elif kind == "framestream":
            encode(ours, x)
        else:
            diffusers_encode(ref, x)
        seconds = time.perf_counter() - started
    peak = peak_rss_bytes()
    print(json.dumps({"peak": peak, "extra": peak - base, "seconds": seconds}))


def _measure(op: str, latents: int, size: int, repeats: int) -> dict:
    runs = {"framestream": [], "diffusers": []}
    for _ in range(repeats):
        for kind in runs:  # alternating whole processes
            runs[kind].append(run_child(__file__, kind, op, str(latents), str(size)))
    return {k: {"seconds": statistics.median(r["seconds"] for r in v), "peak": max(r["peak"] for r in v) / MiB,
                "extra": max(r["extra"] for r in v) / MiB} for k, v in runs.items()}


def speed(repeats: int = 3) -> None:
    print(f"Median of {repeats} whole processes each, alternating; peak RSS: the process's VmHWM (both build both "
          "models); extra: its rise over the RSS just before the call (weights and input held).")
    print()
    print("| op | size | frames | FrameStream s | diffusers s | ratio ours/diffusers | FrameStream peak (extra) "
          "| diffusers peak (extra) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for op, latents, size in (("decode", 12, 128), ("decode", 12, 256), ("encode", 12, 128)):
        m = _measure(op, latents, size, repeats)
        ours, theirs = m["framestream"], m["diffusers"]
        print(f"| {op} | {size}x{size} | {pixel_frames(latents)} | {ours['seconds']:.2f} | {theirs['seconds']:.2f} | "
              f"{ours['seconds'] / theirs['seconds']:.2f} | {ours['peak']:.0f} MiB ({ours['extra']:.0f}) | "
              f"{theirs['peak']:.0f} MiB ({theirs['extra']:.0f}) |", flush=True)


def memory(repeats: int = 1) -> None:
    print("Decode at 256x256 (one tile), FrameStream to a sink that keeps nothing, diffusers returning its video; "
          "peak RSS (VmHWM) and its rise over the RSS just before the call, one process each.")
    print()
    print("| latent frames | frames | FrameStream peak | FrameStream extra | diffusers peak | diffusers extra | "
          "FrameStream s | diffusers s |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for latents in (12, 42):
        m = _measure("decode", latents, 256, repeats)
        ours, theirs = m["framestream"], m["diffusers"]
        print(f"| {latents} | {pixel_frames(latents)} | {ours['peak']:.0f} MiB | {ours['extra']:.0f} MiB | "
              f"{theirs['peak']:.0f} MiB | {theirs['extra']:.0f} MiB | {ours['seconds']:.2f} | "
              f"{theirs['seconds']:.2f} |", flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    else:
        for part in sys.argv[1:] or ["error", "speed", "memory"]:
            {"error": error, "speed": speed, "memory": memory}[part]()
            print()
