"""Flat memory in the number of frames: a batch of image latents decoded straight into an mp4 (CPU).

A reduced-width SD-style image VAE (random weights, widths 32-64, 8x, 4
channels) decodes ``[N, 4, 64, 64]`` latents to N frames of 512x512 through
:class:`VideoFileSink`, one frame per step. Each run is its own process (peak
RSS cannot be reset), see :mod:`measured_child`. The latent itself is input
held in memory (64 KiB a frame) and is reported apart; the host's IMAGE of the
same frames would hold 3 MiB a frame. Usage::

    python benchmarks/image_frames.py              # 40 and 320 frames
    python benchmarks/image_frames.py 100 2000     # any frame counts (about 1 s a frame on 2 busy cores)
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE]
from decode_vs_diffusers import import_framestream  # noqa: E402
from measured_child import run_child  # noqa: E402

import_framestream()
from framestream.vae_core import build_vae  # noqa: E402
from framestream.vae_core.io.video import VideoFileSink  # noqa: E402
from framestream.vae_core.streaming import engine  # noqa: E402
from framestream.vae_core.streaming.runtime import peak_rss_bytes, reset_peak_rss  # noqa: E402

MiB = 2**20
SIZE = 512
WIDTHS = (32, 32, 32, 64)  # reduced from the real SD VAE's 128-512, for CPU run times


def reduced_sd_vae():
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    four = ("DownEncoderBlock2D",) * 4, ("UpDecoderBlock2D",) * 4
    ref = AutoencoderKL(block_out_channels=WIDTHS, layers_per_block=1, latent_channels=4, down_block_types=four[0],
                        up_block_types=four[1])
    return build_vae(ref.state_dict()).requires_grad_(False)


def child(frames: int) -> None:
    torch.set_num_threads(2)
    vae = reduced_sd_vae()
    latent = torch.randn(frames, 4, SIZE // 8, SIZE // 8, generator=torch.Generator().manual_seed(0))
    with tempfile.TemporaryDirectory() as folder:
        engine.decode(vae, latent[:1], sink=VideoFileSink(os.path.join(folder, "warm.mp4"), 16))  # kernels, encoder
        base = reset_peak_rss()
        started = time.perf_counter()
        sink = VideoFileSink(os.path.join(folder, "out.mp4"), 16)
        engine.decode(vae, latent, sink=sink)
        seconds = time.perf_counter() - started
        written = sink.frames
    print(json.dumps({"peak": peak_rss_bytes(), "extra": peak_rss_bytes() - base, "seconds": seconds,
                      "frames": written, "latent": latent.nbytes}))


def main(counts: list[int]) -> None:
    print(f"| decode -> mp4, SD-style VAE widths {WIDTHS}, {SIZE}x{SIZE} | peak RSS | extra over warm model | "
          "latent (input) | host IMAGE would hold | time |")
    print("|---|---:|---:|---:|---:|---:|")
    results = {}
    for frames in counts:
        r = results[frames] = run_child(__file__, str(frames))
        assert r["frames"] == frames
        image = frames * SIZE * SIZE * 3 * 4
        print(f"| {frames} frames | {r['peak'] / MiB:.0f} MiB | {r['extra'] / MiB:.0f} MiB | "
              f"{r['latent'] / MiB:.1f} MiB | {image / MiB:.0f} MiB | {r['seconds']:.0f} s "
              f"({r['seconds'] / frames:.2f} s/frame) |", flush=True)
    low, high = min(counts), max(counts)
    print(f"\npeak RSS ratio {high} / {low} frames: {results[high]['peak'] / results[low]['peak']:.3f}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["child"]:
        child(int(sys.argv[2]))
    else:
        main([int(n) for n in sys.argv[1:]] or [40, 320])
