"""SeedVR2's VAE: FrameStream against the host's own module (``comfy/ldm/seedvr/vae.py``), the same random weights.

No diffusers class exists, so the host is the reference; run with the host's Python and checkout::

    COMFYUI_DIR=~/ComfyUI COMFYUI_PYTHON=~/ComfyUI/venv/bin/python python benchmarks/seedvr2_decode.py [part ...]

Parts: ``error`` (FrameStream vs the host's decode and encode), ``tiles`` (tiled vs untiled, beside the host's
tiled decode), ``speed`` (decode and encode time and peak RSS, whole processes alternating, 2 threads),
``memory`` (peak RSS as the clip grows, and the plan's estimate). The model
is tests/oracle.py's reduced width (32-96 channels, the release's key set); the host's module is built at that
width by setting its width constant while it is made.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(os.path.dirname(HERE), "tests")]
from decode_vs_diffusers import host_version, import_framestream  # noqa: E402

import_framestream()
from framestream.vae_core import DecodeStream, build_vae, decode, encode  # noqa: E402
from framestream.vae_core.quality import psnr  # noqa: E402
from framestream.vae_core.streaming import memory  # noqa: E402
from framestream.vae_core.streaming.settings import Settings  # noqa: E402
from framestream.vae_core.streaming.traits import NormStatistics  # noqa: E402
from framestream.vae_core.streaming.runtime import peak_rss_bytes, reset_peak_rss  # noqa: E402
from framestream.vae_core.streaming.sinks import CallbackSink  # noqa: E402
from oracle import seedvr2_host_module, seedvr2_weights  # noqa: E402

MiB = 2**20
FOLDER = os.environ.get("COMFYUI_DIR", "")


def host_module(sd: dict):
    """The host's wrapper at the weights' widths, holding copies of them."""
    sys.argv = sys.argv[:1] + ["--cpu"]
    sys.path.insert(0, FOLDER)
    import comfy.options

    comfy.options.enable_args_parsing()
    import comfy.ldm.seedvr.vae as seedvr

    return seedvr2_host_module(seedvr, sd)


def pair():
    sd = seedvr2_weights()
    return host_module(sd), build_vae(dict(sd))


def as_frames(video: torch.Tensor) -> torch.Tensor:
    """The host's ``[1, 3, T, H, W]`` in [-1, 1] as its VAE Decode gives it: ``[T, H, W, 3]`` in [0, 1]."""
    return ((video[0].float() + 1) / 2).clamp(0, 1).permute(1, 2, 3, 0)


def latent(frames: int, size: int) -> torch.Tensor:
    return torch.randn(1, 16, frames, size // 8, size // 8, generator=torch.Generator().manual_seed(1))


def clip(frames: int, size: int) -> torch.Tensor:
    return torch.rand(frames, size, size, 3, generator=torch.Generator().manual_seed(2))


def host_encode(host, frames: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return host.comfy_format_encoded(host.encode(frames.permute(3, 0, 1, 2)[None] * 2 - 1))


def _row(name: str, got: torch.Tensor, reference: torch.Tensor, peak: float = 1.0) -> None:
    print(f"| {name} | {(got - reference).abs().max().item():.2e} | {psnr(got, reference, peak):.1f} dB |", flush=True)


def error() -> None:
    host, ours = pair()
    z = latent(6, 128)
    with torch.no_grad():
        native = as_frames(host.decode(z))
    print(f"| SeedVR2, 6 latent frames (21 frames) at 128x128, ComfyUI {host_version(FOLDER)} | max error vs the "
          "host's VAE decode | PSNR |")
    print("|---|---:|---:|")
    for per_step in (1, 4):
        _row(f"FrameStream decode, {per_step} latent frame(s) a step", decode(ours, z, frames_per_step=per_step),
             native)
    stream = DecodeStream(ours)
    _row("FrameStream DecodeStream, one latent frame a push",
         torch.cat([stream.push(z[:, :, i : i + 1]) for i in range(6)] + [stream.flush()]), native)
    x = clip(21, 128)
    expected = host_encode(host, x)
    _row("FrameStream encode, 21 frames (latent; peak = its largest value)", encode(ours, x), expected,
         expected.abs().max().item())


def tiles() -> None:
    """Neither side can tile exactly: every norm and the attention see the whole frame. FrameStream gathers each
    frame's statistics over its tiles norm by norm (the default), or estimates them in one pass; beside it, each
    tile normalising with its own."""
    host, ours = pair()
    print("| SeedVR2, 2 latent frames (5 frames) | tiles, overlap | FrameStream vs untiled | one estimating pass "
          "| each tile's own statistics | the host's tiled decode vs untiled |")
    print("|---|---|---:|---:|---:|---:|")
    for size, tile, overlap in ((256, 128, 64), (384, 192, 64), (384, 256, 64), (512, 256, 64), (768, 512, 128)):
        z = latent(2, size)
        with torch.no_grad():
            whole = as_frames(host.decode(z))
            tiling = {"enable_tiling": True, "tile_size": (tile, tile), "tile_overlap": (overlap, overlap)}
            host_tiled = as_frames(host.decode(z, seedvr2_tiling=tiling))
        gathered = decode(ours, z, tile=tile, overlap=overlap)
        estimated = decode(ours, z, tile=tile, overlap=overlap, statistics_passes=1)
        ours.norms = NormStatistics("frame")  # this instance only, for one decode
        own = decode(ours, z, tile=tile, overlap=overlap)
        del ours.norms
        print(f"| {size}x{size} | {tile} px, {overlap} px | {psnr(gathered, whole):.1f} dB | "
              f"{psnr(estimated, whole):.1f} dB | {psnr(own, whole):.1f} dB | {psnr(host_tiled, whole):.1f} dB |",
              flush=True)


def child(kind: str, direction: str, frames: int, size: int) -> None:
    """One measured decode or encode in a fresh process; both sides build both models and warm up alike. The
    plan's estimate (untiled, to a sink that keeps nothing) comes with FrameStream's decodes."""
    torch.set_num_threads(2)
    host, ours = pair()
    plan = 0
    if kind == "framestream" and direction == "decode":
        z = latent(1 + (frames - 1) // 4, size)
        settings = Settings(tile="none")
        plan = memory.plan_decode(ours, z.shape, settings, sink=CallbackSink(lambda *chunk: None)).estimate.total
    if direction == "decode":
        z = latent(1 + (frames - 1) // 4, size)
        run = {"framestream": lambda: decode(ours, z, sink=CallbackSink(lambda *chunk: None), tile="none"),
               "host": lambda: host.decode(z)}[kind]
        warm = {"framestream": lambda: decode(ours, z[:, :, :2, :4, :4]), "host": lambda: host.decode(z[:, :, :2, :4, :4])}
    else:
        x = clip(frames, size)
        run = {"framestream": lambda: encode(ours, x, tile="none"), "host": lambda: host_encode(host, x)}[kind]
        warm = {"framestream": lambda: encode(ours, x[:5, :32, :32]), "host": lambda: host_encode(host, x[:5, :32, :32])}
    with torch.no_grad():
        warm[kind]()
        base = reset_peak_rss()
        started = time.perf_counter()
        run()
        seconds = time.perf_counter() - started
    print(json.dumps({"extra": peak_rss_bytes() - base, "seconds": seconds, "plan": plan}))


def _child(*args: str) -> dict:
    """This script again in a fresh process with 2 threads (the host's allocator left as it is: both sides)."""
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    out = subprocess.run([sys.executable, __file__, "child", *args], env=env, capture_output=True, text=True,
                         timeout=3600)
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def speed(repeats: int = 5) -> None:
    print(f"| {'direction'} | size | frames | FrameStream s | host s | ratio | FrameStream extra RSS | host extra RSS |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for direction, frames, size in (("decode", 9, 128), ("decode", 33, 128), ("decode", 9, 256), ("encode", 33, 128),
                                    ("encode", 9, 256)):
        runs = {"framestream": [], "host": []}
        for _ in range(repeats):
            for kind in runs:  # alternating whole processes
                runs[kind].append(_child(kind, direction, str(frames), str(size)))
        ours, theirs = (statistics.median(r["seconds"] for r in runs[k]) for k in ("framestream", "host"))
        extra = {k: max(r["extra"] for r in runs[k]) / MiB for k in runs}
        print(f"| {direction} | {size}x{size} | {frames} | {ours:.2f} | {theirs:.2f} | {ours / theirs:.2f} | "
              f"{extra['framestream']:.0f} MiB | {extra['host']:.0f} MiB |", flush=True)


def memory_in_length() -> None:
    """Peak RSS over the RSS before the call, one process each; the plan's estimate for FrameStream's."""
    print("| decode | frames | FrameStream extra RSS | its plan | host extra RSS |")
    print("|---|---:|---:|---:|---:|")
    for size, frames in ((128, 9), (128, 33), (128, 129), (256, 9), (256, 33)):
        ours, theirs = (_child(kind, "decode", str(frames), str(size)) for kind in ("framestream", "host"))
        print(f"| {size}x{size} | {frames} | {ours['extra'] / MiB:.0f} MiB | {ours['plan'] / MiB:.0f} MiB | "
              f"{theirs['extra'] / MiB:.0f} MiB |", flush=True)


if __name__ == "__main__":
    if not FOLDER:
        sys.exit("set COMFYUI_DIR (and run with its Python) to a ComfyUI 0.33 or later checkout")
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    else:
        for part in sys.argv[1:] or ["error", "tiles", "speed", "memory"]:
            {"error": error, "tiles": tiles, "speed": speed, "memory": memory_in_length}[part]()
            print()
