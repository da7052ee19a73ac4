"""LTX-2 VAE: exactness, tiling, memory, plan and speed against diffusers' AutoencoderKLLTX2Video (CPU).

The model has 2.0's decoder depth (five resnets a level: its halos are the release's, 11 + 11 latent frames) at
reduced widths (256 -> 32 channels, an eighth of the release), a reduced encoder, and random weights shared with
diffusers'. Every memory figure is a child process's own peak RSS over its warm model; every timing a whole
process. Usage::

    python benchmarks/ltx2_decode.py                # every part
    python benchmarks/ltx2_decode.py exactness      # max abs error vs diffusers, decode and encode, step sizes
    python benchmarks/ltx2_decode.py tiling         # tiled vs untiled PSNR beside diffusers' enable_tiling
    python benchmarks/ltx2_decode.py memory         # peak RSS extra, 9 vs 129 frames (and more) to an mp4
    python benchmarks/ltx2_decode.py plan           # memory.plan_decode's estimate vs the measured peak
    python benchmarks/ltx2_decode.py speed          # the framestream CLI vs a diffusers script, alternating
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
sys.path[:0] = [HERE]
from decode_vs_diffusers import import_framestream  # noqa: E402
from measured_child import run_child  # noqa: E402

import_framestream()
from framestream.vae_core import build_vae  # noqa: E402
from framestream.vae_core.io.video import VideoFileSink  # noqa: E402
from framestream.vae_core.quality import psnr  # noqa: E402
from framestream.vae_core.streaming import engine, memory  # noqa: E402
from framestream.vae_core.streaming.runtime import peak_rss_bytes, reset_peak_rss  # noqa: E402
from framestream.vae_core.streaming.settings import Settings  # noqa: E402
from framestream.vae_core.streaming.sinks import CallbackSink  # noqa: E402
from framestream.vae_core.streaming.tiles import DEFAULT_OVERLAP_PX  # noqa: E402

MiB = 2**20
CONFIG = dict(block_out_channels=(32, 64, 128, 128), layers_per_block=(1, 1, 1, 1, 1),
              decoder_block_out_channels=(64, 128, 256), decoder_layers_per_block=(5, 5, 5, 5),
              spatial_compression_ratio=32, temporal_compression_ratio=8, decoder_causal=False)
CONDITIONED_23 = dict(CONFIG, decoder_block_out_channels=(64, 128, 128, 256), decoder_layers_per_block=(4, 6, 4, 2, 2),
                      decoder_spatio_temporal_scaling=(True,) * 4, decoder_inject_noise=(False,) * 5,
                      upsample_type=("spatiotemporal", "spatiotemporal", "temporal", "spatial"),
                      upsample_residual=(False,) * 4, upsample_factor=(2, 2, 1, 2), timestep_conditioning=True,
                      decoder_spatial_padding_mode="zeros")
CAUSAL = {"config": json.dumps({"vae": {"causal_decoder": True}})}


def reference(config=CONFIG, scale=0.02, seed=0):
    """diffusers' model with every parameter random (uniform, standard deviation ``scale``)."""
    from diffusers import AutoencoderKLLTX2Video

    with torch.device("meta"):
        model = AutoencoderKLLTX2Video(**config)
    model = model.to_empty(device="cpu").eval().requires_grad_(False)
    gen = torch.Generator().manual_seed(seed)
    for param in model.parameters():
        param.uniform_(-scale * 3**0.5, scale * 3**0.5, generator=gen)
    model.latents_mean.zero_()
    model.latents_std.fill_(1.0)
    return model


def as_frames(video: torch.Tensor) -> torch.Tensor:
    return ((video + 1) / 2).clamp(0, 1)[0].permute(1, 2, 3, 0)


def latent(frames: int, size: int, seed: int = 1) -> torch.Tensor:
    shape = (1, 128, 1 + (frames - 1) // 8, size // 32, size // 32)
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def exactness() -> None:
    torch.set_num_threads(2)
    print("| model | check | steps | max abs error |")
    print("|---|---|---|---:|")
    z = latent(121, 64)  # 16 latent frames
    video = torch.rand(49, 64, 64, 3, generator=torch.Generator().manual_seed(2))
    for name, config, t in (("2.0 depth, widths 256-32", CONFIG, None), ("2.3 shape, timestep", CONDITIONED_23, 0.05)):
        ref = reference(config, scale=0.15)
        temb = None if t is None else torch.tensor([t])
        with torch.no_grad():
            whole = as_frames(ref.decode(z, temb=temb).sample)
            causal = as_frames(ref.decode(z, temb=temb, causal=True).sample)
            encoded = ref.encode(video.permute(3, 0, 1, 2)[None] * 2 - 1).latent_dist.mode()
        ours = build_vae(ref.state_dict()).configure(decode_timestep=t)
        for per_step in (1, 4, 16):
            steps = []
            got = engine.decode(ours, z, frames_per_step=per_step, progress=lambda done, *_: steps.append(done))
            print(f"| {name} | decode, 121 frames, delayed stream (delay {ours.streaming.delay:g} latent frames) | "
                  f"{per_step} latent frames a step, {steps[-1]} steps | {(got - whole).abs().max().item():.1e} |",
                  flush=True)
        streamed = build_vae(ref.state_dict(), metadata=CAUSAL).configure(decode_timestep=t)
        for per_step in (1, 2, 5):
            got = engine.decode(streamed, z, frames_per_step=per_step)
            print(f"| {name} | decode, causal decoder (`causal_decoder`) | {per_step} latent frames a step | "
                  f"{(got - causal).abs().max().item():.1e} |", flush=True)
        for per_step in (1, 2):
            got = engine.encode(ours, video, latents_per_step=per_step)
            print(f"| {name} | encode 49 frames vs posterior mode | {per_step} latent frames a step | "
                  f"{(got - encoded).abs().max().item():.1e} |", flush=True)


def tiling() -> None:
    """2x2 tiles at the default overlap on 512x512 (FrameStream, from the first upsampler) beside diffusers'
    enable_tiling at the same grid (its whole decoder per tile, 288 px tiles every 224 px: 64 px blended)."""
    torch.set_num_threads(2)
    size, tile = 512, (512 + DEFAULT_OVERLAP_PX) // 2
    z = latent(9, size, seed=3)
    print(f"| weights | FrameStream 2x2 of {tile} px, overlap {DEFAULT_OVERLAP_PX} | diffusers `enable_tiling` "
          f"{tile} px every {tile - DEFAULT_OVERLAP_PX} px |")
    print("|---|---:|---:|")
    for label, scale in (("random, std 0.02", 0.02), ("random, std 0.01", 0.01)):
        ref = reference(scale=scale)
        ours = build_vae(ref.state_dict())
        whole = engine.decode(ours, z)
        ours_tiled = engine.decode(ours, z, tile=tile)
        with torch.no_grad():
            theirs_whole = as_frames(ref.decode(z).sample)
            ref.enable_tiling(tile_sample_min_height=tile, tile_sample_min_width=tile,
                              tile_sample_stride_height=tile - DEFAULT_OVERLAP_PX,
                              tile_sample_stride_width=tile - DEFAULT_OVERLAP_PX)
            theirs_tiled = as_frames(ref.decode(z).sample)
        print(f"| {label} | {psnr(ours_tiled, whole):.1f} dB | {psnr(theirs_tiled, theirs_whole):.1f} dB |", flush=True)
        wider = (f"{overlap} px: {psnr(engine.decode(ours, z, tile=(size + overlap) // 2, overlap=overlap), whole):.1f} dB"
                 for overlap in (128, 192, 256))
        print(f"|   FrameStream, 2x2 tiles with wider overlaps | {', '.join(wider)} | |", flush=True)


def child(kind: str, options: dict) -> None:
    """One measured decode in this process (see :func:`measured_child.run_child`)."""
    torch.set_num_threads(2)
    ref = reference()
    ours = build_vae(ref.state_dict(), metadata=CAUSAL if options.get("causal") else None)
    del ref
    z = latent(options["frames"], options["size"])
    settings = Settings(tile=options.get("tile"))
    engine.decode(ours, z[:, :, :2, :2, :2])  # warm up: kernels, thread pools
    base = reset_peak_rss()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        sink = VideoFileSink(os.path.join(folder, "out.mp4"), 24) if options.get("sink", "mp4") == "mp4" \
            else CallbackSink(lambda *chunk: None)  # frames streamed away: the engine's memory alone
        engine.decode(ours, z, sink=sink, settings=settings)
    work = memory.plan_decode(ours, z.shape, settings, sink=sink)  # a file's: with its encoder
    print(json.dumps({"extra": peak_rss_bytes() - base, "seconds": time.perf_counter() - started,
                      "estimate": work.estimate.total, "steps": len(work.steps), "per_step": work.per_step}))


def _child(**options) -> dict:
    return run_child(__file__, "child", json.dumps(options))


def memory_part() -> None:
    """Peak RSS against length, writing an mp4 and streaming the frames away (the engine alone: x264's own
    buffers grow until its look-ahead is full, about 50 frames, and at 256 px take 30-60 MiB)."""
    print("| decode, 256x256 | sink | frames | steps (latent frames) | extra peak RSS | time |")
    print("|---|---|---:|---|---:|---:|")
    for label, causal in (("release (delayed stream)", False), ("causal decoder (streams)", True)):
        for sink in ("mp4", "none"):
            results = {}
            for frames in (9, 129, 257):
                r = results[frames] = _child(frames=frames, size=256, causal=causal, sink=sink)
                print(f"| {label} | {sink} | {frames} | {r['steps']} of up to {r['per_step']} | "
                      f"{r['extra'] / MiB:.0f} MiB | {r['seconds']:.1f} s |", flush=True)
            print(f"| {label} | {sink} | 129 / 9, 257 / 129 | | {results[129]['extra'] / results[9]['extra']:.2f}, "
                  f"{results[257]['extra'] / results[129]['extra']:.2f} | |")


def plan_part() -> None:
    print("| decode -> mp4 | tiles | estimate | measured extra RSS | measured / estimate |")
    print("|---|---|---:|---:|---:|")
    for label, options in (("release, 9 frames, 512 px", dict(frames=9, size=512)),
                           ("release, 9 frames, 512 px", dict(frames=9, size=512, tile=288)),
                           ("release, 33 frames, 256 px", dict(frames=33, size=256)),
                           ("release, 129 frames, 256 px", dict(frames=129, size=256)),
                           ("release, 257 frames, 256 px", dict(frames=257, size=256)),
                           ("release, 257 frames, 256 px", dict(frames=257, size=256, tile=160)),
                           ("causal, 17 frames, 512 px", dict(frames=17, size=512, causal=True)),
                           ("causal, 17 frames, 512 px", dict(frames=17, size=512, causal=True, tile=288))):
        r = _child(**options)
        print(f"| {label} | {options.get('tile') or 'none'} | {r['estimate'] / MiB:.0f} MiB | "
              f"{r['extra'] / MiB:.0f} MiB | {r['extra'] / r['estimate']:.2f} |", flush=True)


DIFFUSERS_SCRIPT = """
import sys, time, av, torch
from diffusers import AutoencoderKLLTX2Video
from safetensors.torch import load_file
torch.set_num_threads(2)
config, weights, latent_path, out = sys.argv[1:5]
import json
with torch.device("meta"):
    vae = AutoencoderKLLTX2Video(**json.loads(config))
vae.load_state_dict(load_file(weights), assign=True)
vae.eval()
z = load_file(latent_path)["latent"]
with torch.no_grad():
    video = vae.decode(z).sample
frames = ((video[0].permute(1, 2, 3, 0) + 1) / 2).clamp(0, 1).mul(255).add(0.5).to(torch.uint8).numpy()
container = av.open(out, "w")
stream = container.add_stream("libx264", rate=24, options={"crf": "19"})
stream.pix_fmt, stream.width, stream.height = "yuv420p", frames.shape[2], frames.shape[1]
for image in frames:
    container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
container.mux(stream.encode())
container.close()
"""


def speed() -> None:
    """Whole processes (imports, loading, decode, mp4), alternating, best of two."""
    from safetensors.torch import save_file

    root = os.path.dirname(HERE)
    env = {**os.environ, "OMP_NUM_THREADS": "2", "PYTHONPATH": os.path.dirname(root)}
    print("| decode -> mp4 | diffusers script | `framestream decode` | FrameStream / diffusers |")
    print("|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as folder:
        ref = reference()
        weights = os.path.join(folder, "ltx2_vae.safetensors")
        save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, weights)
        script = os.path.join(folder, "diffusers_decode.py")
        with open(script, "w") as f:
            f.write(DIFFUSERS_SCRIPT)
        for frames, size in ((33, 256), (129, 128), (257, 128)):
            path = os.path.join(folder, "latent.safetensors")
            save_file({"latent": latent(frames, size).contiguous()}, path)
            commands = {
                "diffusers": [sys.executable, script, json.dumps(CONFIG), weights, path, os.path.join(folder, "d.mp4")],
                "framestream": [sys.executable, "-m", "framestream", "decode", weights, path, "-o",
                                os.path.join(folder, "f.mp4"), "--ltx-latents", "raw", "--device", "cpu", "-q"],
            }
            best = {name: float("inf") for name in commands}
            for _ in range(2):
                for name, command in commands.items():
                    started = time.perf_counter()
                    subprocess.run(command, env=env, check=True, capture_output=True, cwd=folder)
                    best[name] = min(best[name], time.perf_counter() - started)
            print(f"| {frames} frames, {size}x{size} | {best['diffusers']:.1f} s | {best['framestream']:.1f} s | "
                  f"{best['framestream'] / best['diffusers']:.2f} |", flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["child"]:
        child(sys.argv[2], json.loads(sys.argv[3]))
    else:
        parts = {"exactness": exactness, "tiling": tiling, "memory": memory_part, "plan": plan_part, "speed": speed}
        for name in sys.argv[1:] or list(parts):
            print(f"\n## {name}\n")
            parts[name]()
