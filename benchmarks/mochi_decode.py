"""Mochi VAE: FrameStream against diffusers' AutoencoderKLMochi on shared seeded random weights (CPU).

The model has the release's depths (3, 3, 4, 6, 3 resnets) at reduced widths (32-128, the release's 64-384 /
128-768), every parameter drawn from N(0, 0.09) so decoded frames stay mostly inside [-1, 1]. Usage::

    python benchmarks/mochi_decode.py                 # every part below
    python benchmarks/mochi_decode.py exactness       # one part: exactness | tiling | memory | plan | speed
    COMFYUI_DIR=~/ComfyUI COMFYUI_PYTHON=~/ComfyUI/venv/bin/python python benchmarks/mochi_decode.py host
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [HERE, os.path.join(ROOT, "tests")]
from decode_vs_diffusers import host_version, import_framestream  # noqa: E402
from measured_child import run_child  # noqa: E402

import_framestream()
from framestream.vae_core import build_vae  # noqa: E402
from framestream.vae_core.io.video import VideoFileSink  # noqa: E402
from framestream.vae_core.quality import psnr  # noqa: E402
from framestream.vae_core.streaming import engine, memory  # noqa: E402
from framestream.vae_core.streaming.runtime import peak_rss_bytes, reset_peak_rss  # noqa: E402
from framestream.vae_core.streaming.settings import Settings  # noqa: E402
from framestream.vae_core.streaming.sinks import CallbackSink  # noqa: E402
from framestream.vae_core.streaming.state import StreamState  # noqa: E402
from framestream.vae_core.streaming.traits import NormStatistics  # noqa: E402
from oracle import diffusers_mochi, to_genmo  # noqa: E402

MiB = 2**20
WIDTHS = (32, 64, 96, 128)
CONFIG = dict(encoder_block_out_channels=WIDTHS, decoder_block_out_channels=WIDTHS)
STD = 0.09


def models():
    ref = diffusers_mochi(CONFIG, std=STD)
    return ref, build_vae(ref.state_dict())


def as_frames(video: torch.Tensor) -> torch.Tensor:
    return ((video + 1) / 2).clamp(0, 1)[0].permute(1, 2, 3, 0)


def latent(frames: int, size: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(1, 12, frames, size // 8, size // 8, generator=torch.Generator().manual_seed(seed))


def clip(frames: int, size: int, seed: int = 2) -> torch.Tensor:
    """A moving gradient with noise, [T, H, W, 3] in [0, 1]."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(frames).view(-1, 1, 1, 1)
    y, x = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    base = (torch.stack([x, y, 1 - x], -1)[None] + 0.05 * t).remainder(1.0)
    return (0.8 * base + 0.2 * torch.rand(frames, size, size, 3, generator=gen)).clamp(0, 1)


def _framewise(ref, z: torch.Tensor) -> tuple[str, torch.Tensor | None]:
    """diffusers' own framewise decode (two latent frames a call, its conv caches), then its one-call settings
    back. As released it fails: it switches the convs to zero padding, but their spatial padding was left out
    when they were built for replicate padding. With that padding given back, it runs as it intends."""
    convs = [m for m in ref.modules() if hasattr(m, "const_padding_conv3d")]
    ref._enable_framewise_decoding()
    try:
        with torch.no_grad():
            try:
                ref.decode(z)
                name = "diffusers use_framewise_decoding"
            except RuntimeError as err:
                print(f"diffusers use_framewise_decoding as released: RuntimeError ({str(err)[:60]}...)\n")
                name = "diffusers use_framewise_decoding, its zero spatial padding given back to the convs"
            for conv in convs:
                conv.conv.padding = conv.const_padding_conv3d
            return name, as_frames(ref.decode(z).sample)
    finally:
        ref.use_framewise_decoding = False
        for conv in convs:
            conv.pad_mode, conv.conv.padding = "replicate", (0, 0, 0)


def exactness() -> None:
    ref, ours = models()
    z = latent(8, 64)  # 43 frames of 64x64
    with torch.no_grad():
        whole = as_frames(ref.decode(z).sample)
    print("| decode, 43x64x64 | max abs vs diffusers' one-call decode | PSNR |")
    print("|---|---:|---:|")
    rows = [(f"FrameStream, frames_per_step {n}", engine.decode(ours, z, frames_per_step=n)) for n in (1, 2, 3, 8)]
    rows.append(_framewise(ref, z))
    genmo = engine.decode(ours.drop_first_frames("per_level"), z)
    ours.drop_first_frames("end")
    rows.append(("genmo's / the host's first-frame handling (drop per level)", genmo))
    for name, frames in rows:
        print(f"| {name} | {(frames - whole).abs().max().item():.2e} | {psnr(frames, whole):.1f} dB |", flush=True)
    differ = [i for i in range(whole.shape[0]) if (genmo[i] - whole[i]).abs().max() > 1e-4]
    print(f"\ngenmo's dropping differs from diffusers' in frames {differ[0]}-{differ[-1]} of {whole.shape[0]} "
          f"(max {(genmo - whole).abs().max().item():.3f} in frame 0, in [0, 1] units)\n")
    frames = clip(43, 64)
    with torch.no_grad():
        expected = ref.encode(frames.permute(3, 0, 1, 2)[None] * 2 - 1).latent_dist.mean
    print("| encode, 43x64x64 | max abs vs diffusers' posterior mean | relative |")
    print("|---|---:|---:|")
    scale = expected.abs().max().item()
    for n in (1, 2, 7):
        got = engine.encode(ours, frames, latents_per_step=n)
        error = (got - expected).abs().max().item()
        print(f"| FrameStream, latents_per_step {n} | {error:.2e} | {error / scale:.1e} |", flush=True)
    print("| diffusers framewise encoding | (refused by diffusers: its attention is over time) | |")


def tiling() -> None:
    """Tiles of 256 px, 64 px overlap on a 448x448 frame: diffusers' own grid (tiles every 192 px)."""
    ref, ours = models()
    z = latent(2, 448, seed=3)
    with torch.no_grad():
        whole = as_frames(ref.decode(z).sample)
        ref.enable_tiling(256, 256, 192, 192)
        theirs = as_frames(ref.decode(z).sample)
        frames = clip(7, 448)
        pixels = frames.permute(3, 0, 1, 2)[None] * 2 - 1
        encoded_theirs = ref.encode(pixels).latent_dist.mean
        ref.use_tiling = False
        encoded = ref.encode(pixels).latent_dist.mean
    ours_whole = engine.decode(ours, z)
    print("| 7x448x448, tiles 256 px, overlap 64 px | decode PSNR vs untiled | max abs | encode PSNR vs untiled |")
    print("|---|---:|---:|---:|")
    tiled = engine.decode(ours, z, tile=256, overlap=64)
    ours_encoded = engine.encode(ours, frames, tile=256, overlap=64)
    print(f"| FrameStream (each tile's own per-frame statistics) | {psnr(tiled, ours_whole):.1f} dB | "
          f"{(tiled - ours_whole).abs().max().item():.4f} | {psnr(ours_encoded, encoded):.1f} dB |", flush=True)
    ours.norms = NormStatistics("chunk")  # the engine's per-step pooling, run per frame: two runs of every tiled step
    pooled = engine.decode(ours, z, tile=256, overlap=64)
    pooled_encoded = engine.encode(ours, frames, tile=256, overlap=64)
    ours.norms = NormStatistics("frame")
    print(f"| FrameStream, statistics pooled over the step's tiles (NormStatistics \"chunk\") | "
          f"{psnr(pooled, ours_whole):.1f} dB | {(pooled - ours_whole).abs().max().item():.4f} | "
          f"{psnr(pooled_encoded, encoded):.1f} dB |")
    print(f"| diffusers enable_tiling(256, 256, 192, 192) | {psnr(theirs, whole):.1f} dB | "
          f"{(theirs - whole).abs().max().item():.4f} | {psnr(encoded_theirs, encoded):.1f} dB |")
    print(f"\n(untiled FrameStream vs untiled diffusers: max abs {(ours_whole - whole).abs().max().item():.1e}; "
          "latent PSNR with a peak of 1)")


def child(kind: str, kw: dict) -> None:
    torch.set_num_threads(2)
    _, vae = models()
    if kind == "encode":
        return encode_child(vae, kw)
    z = latent(kw["latents"], kw["size"])
    engine.decode(vae, z[:, :, :2, :2, :2])  # warm up: kernels, thread pools
    base = reset_peak_rss()
    settings = Settings(tile=kw.get("tile"), frames_per_step=kw.get("per_step", 1))
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        sink = VideoFileSink(os.path.join(folder, "out.mp4"), 30) if kind == "file" \
            else CallbackSink(lambda *chunk: None)
        engine.decode(vae, z, sink=sink, settings=settings)
    seconds = time.perf_counter() - started
    planned = memory.plan_decode(vae, z.shape, settings, sink=sink).estimate.total  # a file's: with its encoder
    print(json.dumps({"extra": peak_rss_bytes() - base, "peak": peak_rss_bytes(), "seconds": seconds,
                      "estimate": planned}))


def encode_child(vae, kw: dict) -> None:
    frames = clip(6 * kw["latents"] - 5, kw["size"])
    engine.encode(vae, frames[:7, :16, :16])  # warm up
    base = reset_peak_rss()
    settings = Settings(tile=kw.get("tile"), latents_per_step=kw.get("per_step", 1))
    started = time.perf_counter()
    engine.encode(vae, frames, settings=settings)
    seconds = time.perf_counter() - started
    planned = memory.plan_encode(vae, frames.shape[0], kw["size"], kw["size"], settings).estimate
    cells = (kw["size"] // 8) ** 2
    rated = planned.total - planned.growing + cells * _growing_per_cell(vae, kw["latents"])
    print(json.dumps({"extra": peak_rss_bytes() - base, "peak": peak_rss_bytes(), "seconds": seconds,
                      "estimate": planned.total, "growing": planned.growing, "rated": rated}))


def _growing_per_cell(vae, latents: int) -> float:
    """The encoder's attention carry per latent pixel after ``latents`` latent frames, from what its first step
    and one later step add (the plan's probe averages the two, but the levels keep 6, 3 and 1 frames per later
    latent frame and one each for the first)."""
    state = StreamState(expected_frames=latents)
    sizes = []
    with torch.no_grad(), state.active():
        for frames in (1, 6):
            vae.encode_chunk(torch.zeros(1, 3, frames, 16, 16))
            state.carries.commit()
            sizes.append(state.carries.growing_bytes() / 4)
    return sizes[0] + (sizes[1] - sizes[0]) * (latents - 1)


def _child(kind: str, **kw) -> dict:
    return run_child(__file__, kind, json.dumps(kw))


def memory_part() -> None:
    print("| decode -> mp4, 128x128 | latent frames | peak RSS | extra over the warm model | time |")
    print("|---|---:|---:|---:|---:|")
    results = {}
    for latents in (2, 22):
        r = results[latents] = _child("file", size=128, latents=latents)
        print(f"| {6 * latents - 5} frames | {latents} | {r['peak'] / MiB:.0f} MiB | {r['extra'] / MiB:.0f} MiB | "
              f"{r['seconds']:.1f} s |", flush=True)
    print(f"\nextra peak RSS 127 / 7 frames: {results[22]['extra'] / results[2]['extra']:.3f}; peak RSS "
          f"{results[22]['peak'] / results[2]['peak']:.3f}")


def plan_part() -> None:
    print("| decode, 3 latent frames | tiles | plan estimate | measured extra RSS | measured / estimate |")
    print("|---|---|---:|---:|---:|")
    for size, tile, per_step in ((128, None, 1), (192, None, 1), (256, None, 1), (256, 128, 1), (192, None, 2)):
        r = _child("plan", size=size, latents=3, tile=tile, per_step=per_step)
        print(f"| {size}x{size}{', 2 latent frames a step' if per_step > 1 else ''} | {tile or 'none'} | "
              f"{r['estimate'] / MiB:.0f} MiB | {r['extra'] / MiB:.0f} MiB | {r['extra'] / r['estimate']:.2f} |",
              flush=True)
    print("\n| encode | tiles | plan estimate (attention carry) | measured extra RSS | measured / estimate | "
          "with the carry's rate from a later step: estimate, measured / estimate |")
    print("|---|---|---:|---:|---:|---:|")
    for size, latents, tile in ((128, 3, None), (128, 9, None), (192, 9, None), (192, 9, 128)):
        r = _child("encode", size=size, latents=latents, tile=tile)
        print(f"| {6 * latents - 5}x{size}x{size} | {tile or 'none'} | {r['estimate'] / MiB:.0f} MiB "
              f"({r['growing'] / MiB:.0f}) | {r['extra'] / MiB:.0f} MiB | {r['extra'] / r['estimate']:.2f} | "
              f"{r['rated'] / MiB:.0f} MiB, {r['extra'] / r['rated']:.2f} |", flush=True)


def diffusers_child(folder: str) -> None:
    """What the speed part times for diffusers: one process that loads the weights and the latent, decodes in
    one call and writes the same mp4 with the same writer."""
    from diffusers import AutoencoderKLMochi
    from safetensors.torch import load_file

    with torch.device("meta"):
        ref = AutoencoderKLMochi(**CONFIG)
    ref.load_state_dict(load_file(os.path.join(folder, "vae.safetensors")), assign=True)
    z = load_file(os.path.join(folder, "latent.safetensors"))["latent"]
    with torch.no_grad():
        frames = as_frames(ref.eval().decode(z).sample)
    sink = VideoFileSink(os.path.join(folder, "diffusers.mp4"), 16)
    sink.start((1, *frames.shape))
    sink.write(0, 0, frames)
    sink.result()


def speed() -> None:
    """Whole processes, alternating, so that a busy moment of the (shared) machine hits both. With one thread
    and with two: on a two-core machine that other work also uses, two threads spend much of their time
    waiting for each other at every parallel region, and FrameStream's steps have more, smaller ones."""
    from safetensors.torch import save_file

    ref, _ = models()
    z = latent(4, 160, seed=4)  # 19 frames of 160x160
    with tempfile.TemporaryDirectory() as folder:
        save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, os.path.join(folder, "vae.safetensors"))
        save_file({"latent": z}, os.path.join(folder, "latent.safetensors"))
        commands = {
            "FrameStream CLI": [sys.executable, "-m", "framestream", "decode", os.path.join(folder, "vae.safetensors"),
                                os.path.join(folder, "latent.safetensors"), "-o", os.path.join(folder, "ours.mp4"),
                                "-q"],
            "diffusers script": [sys.executable, __file__, "diffusers_child", folder],
        }
        print("| decode 19x160x160 -> mp4, whole processes (start, imports, loading, decoding, writing) | threads | "
              "runs | median |")
        print("|---|---:|---|---:|")
        for threads in (1, 2):
            env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
            times = {name: [] for name in commands}
            for _ in range(3):
                for name, command in commands.items():
                    started = time.perf_counter()
                    subprocess.run(command, check=True, env=env, capture_output=True)
                    times[name].append(time.perf_counter() - started)
            for name, values in times.items():
                print(f"| {name} | {threads} | {', '.join(f'{v:.1f}' for v in values)} s | "
                      f"{statistics.median(values):.1f} s |", flush=True)
            ratio = statistics.median(times["FrameStream CLI"]) / statistics.median(times["diffusers script"])
            print(f"| FrameStream / diffusers | {threads} | | {ratio:.2f}x |", flush=True)


def host() -> None:
    """The host's own modules (comfy/ldm/genmo/vae/model.py) against diffusers and FrameStream."""
    folder = os.environ.get("COMFYUI_DIR")
    if not folder:
        print("set COMFYUI_DIR (and COMFYUI_PYTHON) to a ComfyUI checkout")
        return
    python = os.environ.get("COMFYUI_PYTHON", sys.executable)
    out = subprocess.run([python, __file__, "host_child", folder], capture_output=True, text=True, check=True)
    print(out.stdout)


def host_child(folder: str) -> None:
    sys.argv = [sys.argv[0], "--cpu"]
    sys.path.insert(0, folder)
    import comfy.options

    comfy.options.enable_args_parsing()
    from comfy.ldm.genmo.vae import model as genmo

    torch.set_num_threads(2)
    ref, ours = models()
    ch, layers = WIDTHS, [3, 3, 4, 6, 3]
    decoder = genmo.Decoder(out_channels=3, base_channels=ch[0], channel_multipliers=[c // ch[0] for c in ch],
                            temporal_expansions=[1, 2, 3], spatial_expansions=[2, 2, 2], num_res_blocks=layers,
                            latent_dim=12, has_attention=[False] * 5, padding_mode="replicate", output_norm=False,
                            nonlinearity="silu", output_nonlinearity="silu", causal=True)
    encoder = genmo.Encoder(in_channels=15, base_channels=ch[0], channel_multipliers=[c // ch[0] for c in ch],
                            num_res_blocks=layers, latent_dim=12, temporal_reductions=[1, 2, 3],
                            spatial_reductions=[2, 2, 2], prune_bottlenecks=[False] * 5,
                            has_attentions=[False, True, True, True, True], affine=True, bias=True,
                            input_is_conv_1x1=True, padding_mode="replicate")
    weights = to_genmo(ref.state_dict())
    for part, module in (("decoder.", decoder), ("encoder.", encoder)):
        module.load_state_dict({k[len(part):]: v for k, v in weights.items() if k.startswith(part)})
        module.eval()
    z = latent(8, 64)
    frames = clip(43, 64)
    pixels = frames.permute(3, 0, 1, 2)[None] * 2 - 1
    with torch.no_grad():
        host_frames, diffusers_frames = as_frames(decoder(z.clone())), as_frames(ref.decode(z).sample)
        host_mean, diffusers_mean = encoder(pixels.clone()).mean, ref.encode(pixels).latent_dist.mean
    genmo_way = engine.decode(ours.drop_first_frames("per_level"), z)
    ours.drop_first_frames("end")
    per_frame = (host_frames - diffusers_frames).abs().amax(dim=(1, 2, 3))
    last = max(i for i, v in enumerate(per_frame.tolist()) if v > 1e-4)
    print("| 43x64x64, the host's modules | decode: max abs vs diffusers | encode: max abs vs diffusers |")
    print("|---|---:|---:|")
    print(f"| host (ComfyUI {host_version(folder)}) | {per_frame.max().item():.3f} (frames 0-{last} differ) | "
          f"{(host_mean - diffusers_mean).abs().max().item():.2e} (mean scale "
          f"{diffusers_mean.abs().max().item():.2f}) |")
    print(f"| FrameStream, genmo's frame dropping, vs host | {(genmo_way - host_frames).abs().max().item():.1e} | |")
    print("\nper-frame max abs, host vs diffusers: " + ", ".join(f"{v:.3f}" for v in per_frame[: last + 1].tolist()))


if __name__ == "__main__":
    if sys.argv[1:2] == ["child"]:
        child(sys.argv[2], json.loads(sys.argv[3]))
    elif sys.argv[1:2] == ["diffusers_child"]:
        diffusers_child(sys.argv[2])  # threads: OMP_NUM_THREADS, as the CLI's
    elif sys.argv[1:2] == ["host_child"]:
        host_child(sys.argv[2])
    else:
        torch.set_num_threads(2)
        parts = {"exactness": exactness, "tiling": tiling, "memory": memory_part, "plan": plan_part, "speed": speed,
                 "host": host}
        for name in sys.argv[1:] or [p for p in parts if p != "host"]:
            print(f"\n## {name}\n", flush=True)
            parts[name]()
