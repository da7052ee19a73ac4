"""One prepared GPU benchmark: peak VRAM, time and agreement of FrameStream's decode vs the host's and diffusers'.

Random full-width weights in bf16: Wan 2.1 at 81 frames of 832x480 and 1280x720, LTX-Video (0.9.0) and
HunyuanVideo at 720p. For each clip:

* FrameStream untiled, tiled (512 px tiles, 64 px overlap), with the carries in host RAM, and compiled
  (``compile_stages``: a first run that compiles, a second that does not; not in ``--smoke``); untiled also
  with its frames copied to ordinary memory and handed on at once, against the pinned buffers on a side
  stream handed on after the next step is queued (``outbound.py``);
* the host's algorithm (``comfy.ldm.wan.vae``): the whole latent on the device, decoded one latent frame at a
  time through the same layers with their cache, each output concatenated onto the clip so far, then the
  whole clip clamped and copied to the CPU; for LTX-Video and HunyuanVideo the whole clip in one call;
* diffusers' own ``decode`` of the same weights.

Peak VRAM is ``torch.cuda.max_memory_allocated`` minus what was allocated before the run (weights, latent);
frames always end on the CPU in float32. Each result is printed as one JSON line as soon as it exists, so a
run stopped by a time limit still reports what it finished; ``--out FILE`` also writes them all.

    python benchmarks/gpu.py                 # on a CUDA machine, about 5 minutes on one large GPU
    python benchmarks/gpu.py --smoke         # the same code paths on the CPU at tiny sizes (a test runs it)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE]
from decode_vs_diffusers import import_framestream  # noqa: E402

import_framestream()
from framestream.vae_core import build_vae  # noqa: E402
from framestream.vae_core.streaming import engine, outbound, stream  # noqa: E402
from framestream.vae_core.streaming.compiled import compile_seconds, compile_stages  # noqa: E402
from framestream.vae_core.streaming.sinks import CallbackSink  # noqa: E402
from framestream.vae_core.streaming.state import StreamState  # noqa: E402


@dataclass(frozen=True)
class Clip:
    family: str
    frames: int
    width: int
    height: int


FULL = [Clip("wan", 81, 832, 480), Clip("wan", 81, 1280, 720), Clip("ltx", 121, 1280, 704),
        Clip("hunyuan", 61, 1280, 720)]
SMOKE = [Clip("wan", 5, 64, 48), Clip("ltx", 9, 128, 64), Clip("hunyuan", 5, 48, 32)]


def reference_model(family: str, smoke: bool):
    """diffusers' model at full width (reduced in ``--smoke``), seeded random weights."""
    torch.manual_seed(0)
    if family == "wan":
        from diffusers import AutoencoderKLWan

        return AutoencoderKLWan(base_dim=8 if smoke else 96, z_dim=16)
    if family == "ltx":
        from diffusers import AutoencoderKLLTXVideo

        widths = (8, 16, 32, 32) if smoke else (128, 256, 512, 512)
        return AutoencoderKLLTXVideo(block_out_channels=widths, decoder_block_out_channels=widths)
    from diffusers import AutoencoderKLHunyuanVideo

    return AutoencoderKLHunyuanVideo(block_out_channels=(32, 32, 64, 64) if smoke else (128, 256, 512, 512))


def latent_for(vae, clip: Clip) -> torch.Tensor:
    r = vae.spatial_ratio
    frames = vae.latent_frames(clip.frames)
    return torch.randn(1, vae.latent_channels, frames, clip.height // r, clip.width // r,
                       generator=torch.Generator().manual_seed(1))


def framestream_decode(vae, z: torch.Tensor, **settings) -> torch.Tensor:
    frames = []
    engine.decode(vae, z, sink=CallbackSink(lambda batch, start, chunk: frames.append(chunk)), **settings)
    return torch.cat(frames)


class AtOnce(outbound.Outbound):
    """Frames copied to ordinary host memory in the decode's thread and handed on at once: the way before
    outbound.py's pinned buffers on a side stream, to compare against."""

    def __init__(self, device: torch.device) -> None:
        super().__init__(torch.device("cpu"))


def framestream_at_once(vae, z: torch.Tensor) -> torch.Tensor:
    default, stream.Outbound = stream.Outbound, AtOnce
    try:
        return framestream_decode(vae, z)
    finally:
        stream.Outbound = default


def host_decode(vae, z: torch.Tensor) -> torch.Tensor:
    """The host's way: everything on the device, Wan's decoder fed one latent frame at a time with each output
    concatenated onto the clip so far (the others in one call); then clamped and copied to the CPU."""
    z = z.to(vae.weight_device, vae.weight_dtype)
    if not vae.streaming.causal or vae.norms.decoder != "position":  # the host decodes these in one call
        out = vae.decode_chunk(z)
    else:
        state, out = StreamState(), None
        with state.active():
            for i in range(z.shape[2]):
                chunk = vae.decode_chunk(z[:, :, i : i + 1])
                state.carries.commit()
                out = chunk if out is None else torch.cat([out, chunk], dim=2)
    return ((out.float() + 1) / 2).clamp(0, 1)[0].permute(1, 2, 3, 0).cpu()


def diffusers_decode(ref, z: torch.Tensor, family: str) -> torch.Tensor:
    param = next(ref.parameters())
    z = z.to(param.device, param.dtype)
    if family == "hunyuan":
        ref.use_framewise_decoding = False
    out = ref.decode(z).sample
    return ((out.float() + 1) / 2).clamp(0, 1)[0].permute(1, 2, 3, 0).cpu()


def measure(device: torch.device, run) -> tuple[torch.Tensor | None, dict]:
    """Runs ``run()`` once; its frames (or None when it ran out of memory), seconds and peak beyond the start."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    started = time.perf_counter()
    try:
        frames = run()
    except torch.cuda.OutOfMemoryError:
        return None, {"error": "out of memory"}
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    figures = {"seconds": round(time.perf_counter() - started, 3)}
    if device.type == "cuda":
        figures["peak_gib_beyond_start"] = round((torch.cuda.max_memory_allocated(device) - before) / 2**30, 3)
    return frames, figures


def bench_clip(clip: Clip, device: torch.device, dtype: torch.dtype, smoke: bool, report) -> None:
    ref = reference_model(clip.family, smoke).eval().requires_grad_(False)
    ours = build_vae({k: v.clone() for k, v in ref.state_dict().items()}).to(device, dtype)
    z = latent_for(ours, clip)
    r = ours.spatial_ratio
    tile, overlap = (max(2 * r, 32), r) if smoke else (512, 64)
    runs = {
        "framestream untiled": lambda: framestream_decode(ours, z),
        "framestream untiled, frames leave at once (no pinned side stream)": lambda: framestream_at_once(ours, z),
        "framestream tiled": lambda: framestream_decode(ours, z, tile=tile, overlap=overlap),
        "framestream carries in host RAM": lambda: framestream_decode(ours, z, carries="cpu"),
        "host algorithm": lambda: host_decode(ours, z),
    }
    if not smoke:  # last of ours: compile_stages changes the model in place (on the CPU: benchmarks/compile_steps.py)
        runs["framestream compiled, first run (compiling)"] = lambda: framestream_decode(compile_stages(ours), z)
        runs["framestream compiled"] = lambda: framestream_decode(ours, z)
    results = {}
    with torch.no_grad():
        framestream_decode(ours, z[:, :, :2])  # warm-up: kernels chosen, carries probed
        for name, run in runs.items():
            results[name], figures = measure(device, run)
            report({"clip": clip.__dict__, "run": name, **figures})
        ours = runs = None  # the GPU memory back for diffusers' turn
        ref = ref.to(device, dtype)
        results["diffusers"], figures = measure(device, lambda: diffusers_decode(ref, z, clip.family))
        report({"clip": clip.__dict__, "run": "diffusers", **figures})
    if "framestream compiled" in results:
        report({"clip": clip.__dict__, "run": "framestream compiled", "compile_seconds": compile_seconds()})
    base = results["framestream untiled"]
    for name, frames in results.items():
        if frames is not None and base is not None and name != "framestream untiled":
            report({"clip": clip.__dict__, "run": name, "max_abs_diff_vs_framestream_untiled":
                    round((frames - base).abs().max().item(), 5)})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, reduced widths, on the CPU when there is "
                                                              "no GPU (checks the code paths in under a minute)")
    parser.add_argument("--only", choices=("wan", "ltx", "hunyuan"), help="one family only")
    parser.add_argument("--out", help="also write every result line to this JSON file")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available() and not args.smoke:
        print("benchmarks/gpu.py: no CUDA GPU here (this torch build sees none); run it on a GPU machine, or "
              "with --smoke to check its code paths on the CPU", file=sys.stderr)
        return 1
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    results = []

    def report(line: dict) -> None:
        results.append(line)
        print(json.dumps(line), flush=True)

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    report({"device": name, "dtype": str(dtype), "torch": torch.__version__})
    for clip in SMOKE if args.smoke else FULL:
        if args.only in (None, clip.family):
            bench_clip(clip, device, dtype, args.smoke, report)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
