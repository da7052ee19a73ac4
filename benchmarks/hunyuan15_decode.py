"""HunyuanVideo 1.5 VAE: FrameStream vs diffusers' AutoencoderKLHunyuanVideo15 on the same random weights (CPU).

Weights as in tests/test_hunyuan15.py (N(0, 0.7 / sqrt(fan-in)), gains and biases N(0, 0.3)). Usage::

    python benchmarks/hunyuan15_decode.py                # every part
    python benchmarks/hunyuan15_decode.py exactness      # max |difference| vs diffusers' one-call decode / encode
    python benchmarks/hunyuan15_decode.py tiling         # tiled vs untiled, beside diffusers' own tiled decode
    python benchmarks/hunyuan15_decode.py memory         # 9 vs 129 frames to an mp4; the attention's carry
    python benchmarks/hunyuan15_decode.py plan           # memory.plan_decode's estimate vs the measured peak
    python benchmarks/hunyuan15_decode.py speed          # the CLI vs a diffusers script, whole processes
    COMFYUI_DIR=... COMFYUI_PYTHON=... python benchmarks/hunyuan15_decode.py host   # the host's own modules
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
sys.path[:0] = [HERE, os.path.join(os.path.dirname(HERE), "tests")]
from decode_vs_diffusers import host_version, import_framestream  # noqa: E402
from measured_child import run_child  # noqa: E402

import_framestream()
from framestream.vae_core import build_vae  # noqa: E402
from framestream.vae_core.io.video import VideoFileSink  # noqa: E402
from framestream.vae_core.models.hunyuan15 import layers  # noqa: E402
from framestream.vae_core.quality import psnr  # noqa: E402
from framestream.vae_core.streaming import engine, memory  # noqa: E402
from framestream.vae_core.streaming.runtime import peak_rss_bytes, reset_peak_rss  # noqa: E402
from framestream.vae_core.streaming.settings import Settings  # noqa: E402
from framestream.vae_core.streaming.sinks import CallbackSink  # noqa: E402
from framestream.vae_core.streaming.state import StreamState  # noqa: E402
from framestream.vae_core.streaming.tiles import DEFAULT_OVERLAP_PX  # noqa: E402
from oracle import HV15_SMALL as SMALL, diffusers_hv15  # noqa: E402

MiB = 2**20
# the speed comparison's width: the release's depth (2 resnets a block, 3 in the decoder) at a quarter of its width
QUARTER = dict(block_out_channels=(32, 64, 128, 256, 256), layers_per_block=2)
WIDTHS = {"32-256": QUARTER, "16-64": SMALL}


def models(config=SMALL, seed=0):
    ref = diffusers_hv15(config, seed)
    return ref, build_vae(ref.state_dict())


def latent(t: int, size: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(1, 32, t, size // 16, size // 16, generator=torch.Generator().manual_seed(seed))


def as_frames(video: torch.Tensor) -> torch.Tensor:
    return ((video + 1) / 2).clamp(0, 1)[0].permute(1, 2, 3, 0)


@torch.no_grad()
def raw_streamed(vae, z, per_step) -> torch.Tensor:
    """The engine's steps on the raw decoder output (the engine hands sinks clamped frames)."""
    state, chunks = StreamState(expected_frames=z.shape[2]), []
    with state.active():
        for start in range(0, z.shape[2], per_step):
            chunks.append(vae.decode_chunk(z[:, :, start : start + per_step]))
            state.carries.commit()
    return torch.cat(chunks, dim=2)


def exactness() -> None:
    ref, ours = models()
    z = latent(7, 64)
    with torch.no_grad():
        expected = ref.decode(z).sample
    print("| HunyuanVideo 1.5, widths 16-64, 25x64x64 | check | max abs diff | relative to peak |")
    print("|---|---|---:|---:|")
    peak = expected.abs().max().item()
    for per_step in (1, 2, 3, 7):
        diff = (raw_streamed(ours, z, per_step) - expected).abs().max().item()
        print(f"| raw decoder output | decode, {per_step} latent frames per step | {diff:.1e} | {diff / peak:.1e} |")
    for per_step in (1, 2, 3):
        diff = (engine.decode(ours, z, frames_per_step=per_step) - as_frames(expected)).abs().max().item()
        print(f"| frames in [0, 1] (engine.decode) | decode, {per_step} latent frames per step | {diff:.1e} | |")
    frames = torch.rand(25, 64, 64, 3, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        mean = ref.encode(frames.permute(3, 0, 1, 2)[None] * 2 - 1).latent_dist.mode()
    for per_step in (1, 2):
        diff = (engine.encode(ours, frames, latents_per_step=per_step) - mean).abs().max().item()
        print(f"| latent mean (engine.encode) | encode, {per_step} latent frames per step | {diff:.1e} | "
              f"{diff / mean.abs().max().item():.1e} |", flush=True)


def tiling() -> None:
    """2x2 grids at the default overlap; diffusers tiles its whole decoder on the same grid and blend width."""
    print("| widths 16-64, 5 frames | frame | tiles | PSNR vs untiled, dB | max abs diff |")
    print("|---|---|---|---:|---:|")
    for seed in (0, 1, 2):
        ref, ours = models(seed=seed)
        for size in (256, 320):
            z = latent(2, size, seed=10 + seed)
            tile = (size + DEFAULT_OVERLAP_PX) // 2
            whole = engine.decode(ours, z)
            tiled = engine.decode(ours, z, tile=tile)
            print(f"| FrameStream, weights seed {seed} | {size}x{size} | 2x2 of {tile} px, overlap "
                  f"{DEFAULT_OVERLAP_PX} | {psnr(tiled, whole):.1f} | {(tiled - whole).abs().max().item():.3f} |",
                  flush=True)
            # diffusers tiles its whole decoder: 2x2 tiles every half frame, 64 px wider than that, blended over 64
            theirs_tile, stride = size // 2 + 64, size // 32
            cells, factor = theirs_tile // 16, 64 / theirs_tile
            assert int(cells * (1 - factor)) == stride and int(theirs_tile * factor) == 64  # its own arithmetic
            with torch.no_grad():
                untiled = as_frames(ref.decode(z).sample)
                ref.enable_tiling(theirs_tile, theirs_tile, cells, cells, factor)
                theirs = as_frames(ref.decode(z).sample)
                ref.use_tiling = False
            print(f"| diffusers `enable_tiling`, same weights | {size}x{size} | 2x2 of {theirs_tile} px, blend "
                  f"{int(theirs_tile * factor)} | {psnr(theirs, untiled):.1f} | "
                  f"{(theirs - untiled).abs().max().item():.3f} |", flush=True)


def child(kind: str, kw: dict) -> None:
    torch.set_num_threads(2)
    _, vae = models(seed=kw.get("seed", 0))
    size, frames = kw["size"], kw["latents"]
    z = latent(frames, size)
    kv = []  # the attention's keys and values as the last step saw them
    real = layers.growing_carry

    def recording(*args, **kwargs):
        kv[:] = [real(*args, **kwargs)]
        return kv[0]

    layers.growing_carry = recording
    engine.decode(vae, z[:, :, :2, :2, :2])  # warm up: kernels, thread pools, the plan's probe
    base = reset_peak_rss()
    started = time.perf_counter()
    settings = Settings(tile=kw.get("tile"))
    with tempfile.TemporaryDirectory() as folder:
        sink = VideoFileSink(os.path.join(folder, "out.mp4"), 24) if kind == "file" \
            else CallbackSink(lambda *chunk: None)
        engine.decode(vae, z, sink=sink, settings=settings)
    seconds = time.perf_counter() - started
    estimate = memory.plan_decode(vae, z.shape, settings, sink=sink).estimate  # a file's: with its encoder
    print(json.dumps({"extra": peak_rss_bytes() - base, "peak": peak_rss_bytes(), "seconds": seconds,
                      "estimate": estimate.total, "growing": estimate.growing,
                      "kv_per_frame": kv[-1].nbytes // frames, "kv_shape": list(kv[-1].shape)}))


def _child(kind: str, **kw) -> dict:
    return run_child(__file__, kind, json.dumps(kw))


def kv_bytes() -> None:
    """The attention's carry, read off a stream: 2 x C x h x w x 4 bytes per latent frame."""
    _, ours = models()
    state, z = StreamState(expected_frames=4), latent(4, 256)
    c, h, w = ours.cfg.widths[-1], 16, 16
    with state.active(), torch.no_grad():
        for step in range(4):
            ours.decode_chunk(z[:, :, step : step + 1])
            state.carries.commit()
            print(f"after latent frame {step + 1}: StreamState.growing_bytes() = {state.carries.growing_bytes()} "
                  f"(2 x {c} x {h} x {w} x 4 x {step + 1} = {2 * c * h * w * 4 * (step + 1)})")


def memory_() -> None:
    print("| decode -> mp4 (h264), widths 16-64, 256x256 | peak RSS | extra over warm model | attention carry | "
          "extra less the carry | time |")
    print("|---|---:|---:|---:|---:|---:|")
    results = {}
    for latents in (3, 33):
        r = results[latents] = _child("file", size=256, latents=latents)
        carry = r["kv_per_frame"] * latents
        print(f"| {1 + 4 * (latents - 1)} frames | {r['peak'] / MiB:.0f} MiB | {r['extra'] / MiB:.1f} MiB | "
              f"{carry / MiB:.2f} MiB | {(r['extra'] - carry) / MiB:.1f} MiB | {r['seconds']:.1f} s |", flush=True)
    short, long = ((results[n]["extra"] - results[n]["kv_per_frame"] * n) for n in (3, 33))
    print(f"\nextra less the attention carry, 129 / 9 frames: {long / short:.3f}; carry per latent frame "
          f"{results[33]['kv_per_frame']} bytes (2 x 64 x 16 x 16 x 4 = {2 * 64 * 16 * 16 * 4})\n")
    kv_bytes()


def plan() -> None:
    print("| widths 16-64, 3 latent frames | tiles | estimate | of which attention carry | measured extra RSS | "
          "measured / estimate |")
    print("|---|---|---:|---:|---:|---:|")
    for size, tile in ((256, None), (384, None), (512, None), (512, 288)):
        r = _child("plan", size=size, latents=3, tile=tile)
        print(f"| {size}x{size} | {tile or 'none'} | {r['estimate'] / MiB:.0f} MiB | {r['growing'] / MiB:.2f} MiB | "
              f"{r['extra'] / MiB:.0f} MiB | {r['extra'] / r['estimate']:.2f} |", flush=True)


def diffusers_child(folder: str, width: str) -> None:
    """What a diffusers user runs: load the same file, decode in one call, write the same mp4 with the same writer."""
    from diffusers import AutoencoderKLHunyuanVideo15
    from safetensors.torch import load_file

    torch.set_num_threads(2)
    with torch.device("meta"):
        ref = AutoencoderKLHunyuanVideo15(**WIDTHS[width])
    ref.load_state_dict(load_file(os.path.join(folder, "vae.safetensors")), assign=True)
    z = load_file(os.path.join(folder, "latent.safetensors"))["latent"]
    with torch.no_grad():
        frames = as_frames(ref.eval().decode(z).sample)
    sink = VideoFileSink(os.path.join(folder, "diffusers.mp4"), 24)
    sink.start((1, *frames.shape))
    sink.write(0, 0, frames)
    sink.result()


def speed() -> None:
    for width in WIDTHS:
        _speed(width)


def _speed(width: str) -> None:
    from safetensors.torch import save_file

    ref, _ = models(WIDTHS[width])
    z = latent(3, 256, seed=4)  # 9 frames of 256x256
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    with tempfile.TemporaryDirectory() as folder:
        save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, os.path.join(folder, "vae.safetensors"))
        save_file({"latent": z}, os.path.join(folder, "latent.safetensors"))
        commands = {
            "FrameStream CLI": [sys.executable, "-m", "framestream", "decode", os.path.join(folder, "vae.safetensors"),
                                os.path.join(folder, "latent.safetensors"), "-o", os.path.join(folder, "ours.mp4"),
                                "-q", "--fps", "24"],
            "diffusers script": [sys.executable, __file__, "diffusers_child", folder, width],
        }
        times = {name: [] for name in commands}
        for _ in range(3):  # alternating, so that a busy moment of the machine hits both
            for name, command in commands.items():
                started = time.perf_counter()
                subprocess.run(command, check=True, env=env, capture_output=True)
                times[name].append(time.perf_counter() - started)
    print(f"| decode 9x256x256 -> mp4, widths {width}, whole processes (start, imports, loading, decoding, "
          "writing) | runs | median |")
    print("|---|---|---:|")
    for name, values in times.items():
        print(f"| {name} | {', '.join(f'{v:.1f}' for v in values)} s | {statistics.median(values):.1f} s |")
    ratio = statistics.median(times["FrameStream CLI"]) / statistics.median(times["diffusers script"])
    print(f"\nFrameStream / diffusers: {ratio:.2f}x\n")


def host() -> None:
    """The host's comfy.ldm.hunyuan_video.vae_refiner modules on our original-layout file, against diffusers."""
    from safetensors.torch import save_file

    from framestream.vae_core.models.hunyuan15.checkpoints import diffusers_to_original

    folder, python = os.environ.get("COMFYUI_DIR"), os.environ.get("COMFYUI_PYTHON", sys.executable)
    if not folder:
        print("set COMFYUI_DIR (and COMFYUI_PYTHON) to a ComfyUI checkout")
        return
    ref, ours = models()
    z, frames = latent(3, 64, seed=5), torch.rand(9, 64, 64, 3, generator=torch.Generator().manual_seed(6))
    with tempfile.TemporaryDirectory() as tmp:
        save_file({k: v.contiguous() for k, v in diffusers_to_original(ref.state_dict()).items()},
                  os.path.join(tmp, "original.safetensors"))
        with torch.no_grad():
            pixels = frames.permute(3, 0, 1, 2)[None].contiguous() * 2 - 1
            io = {"z": z, "x": pixels, "decoded": ref.decode(z).sample, "decoded_1": ref.decode(z[:, :, :1]).sample,
                  "mean": ref.encode(pixels).latent_dist.mode(), "ours": engine.decode(ours, z)}
            save_file({k: v.contiguous() for k, v in io.items()}, os.path.join(tmp, "io.safetensors"))
        out = subprocess.run([python, __file__, "host_child", folder, tmp], capture_output=True, text=True)
    print(out.stdout or out.stderr[-3000:])


def host_child(folder: str, tmp: str) -> None:
    """Runs in the host's Python: its modules, called in the order its newest Decoder / Encoder forward calls them
    (0.3.64's forward also packs the HunyuanImage refiner's 64-channel latents, which HunyuanVideo 1.5 does not)."""
    import torch.nn.functional as F
    from safetensors.torch import load_file

    sys.argv = [sys.argv[0], "--cpu"]
    sys.path.insert(0, folder)
    import comfy.options

    comfy.options.enable_args_parsing()
    from comfy.ldm.hunyuan_video import vae_refiner

    torch.set_num_threads(2)
    config = dict(in_channels=3, out_channels=3, z_channels=32, block_out_channels=list(SMALL["block_out_channels"]),
                  num_res_blocks=SMALL["layers_per_block"], ffactor_spatial=16, ffactor_temporal=4)
    decoder, encoder = vae_refiner.Decoder(**config).eval(), vae_refiner.Encoder(**config).eval()
    weights, io = load_file(os.path.join(tmp, "original.safetensors")), load_file(os.path.join(tmp, "io.safetensors"))
    report = []
    for part, module in (("decoder.", decoder), ("encoder.", encoder)):
        missing, unexpected = module.load_state_dict({k[len(part):]: v for k, v in weights.items()
                                                      if k.startswith(part)}, strict=False)
        report.append(f"{part[:-1]}: {len(module.state_dict())} tensors, missing {missing}, unexpected {unexpected}")

    def decode(z):
        x = decoder.conv_in(z) + z.repeat_interleave(decoder.block_out_channels[0] // decoder.z_channels, 1)
        x = decoder.mid.block_2(decoder.mid.attn_1(decoder.mid.block_1(x)))
        for stage in decoder.up:
            for block in stage.block:
                x = block(x)
            if hasattr(stage, "upsample"):
                x = stage.upsample(x)
        return decoder.conv_out(F.silu(decoder.norm_out(x)))

    def encode(x):
        for stage in [None, *encoder.down]:
            if stage is None:
                x = encoder.conv_in(x)
                continue
            for block in stage.block:
                x = block(x)
            if hasattr(stage, "downsample"):
                x = stage.downsample(x)
        x = encoder.mid.block_2(encoder.mid.attn_1(encoder.mid.block_1(x)))
        b, c, t, h, w = x.shape
        skip = x.view(b, 2 * encoder.z_channels, -1, t, h, w).mean(2)
        return (encoder.conv_out(F.silu(encoder.norm_out(x))) + skip)[:, : encoder.z_channels]

    def causal(q, k, v):  # the reference's mask, in the host's attention call (its q, k, v are [B, C, T, H, W])
        b, c, t, h, w = q.shape
        frame = torch.arange(t).repeat_interleave(h * w)
        tokens = [a.flatten(2).transpose(1, 2)[:, None] for a in (q, k, v)]
        out = F.scaled_dot_product_attention(*tokens, attn_mask=frame[None, :] <= frame[:, None])
        return out[:, 0].transpose(1, 2).reshape(q.shape)

    with torch.no_grad():
        rows = [("decode, 1 latent frame", decode(io["z"][:, :, :1]), io["decoded_1"]),
                ("decode, 3 latent frames", decode(io["z"]), io["decoded"]),
                ("encode, 9 frames (mean)", encode(io["x"]), io["mean"])]
        real = (decoder.mid.attn_1.optimized_attention, encoder.mid.attn_1.optimized_attention)
        decoder.mid.attn_1.optimized_attention = encoder.mid.attn_1.optimized_attention = causal
        rows += [("decode, 3 latent frames, the host's attention given the causal mask", decode(io["z"]),
                  io["decoded"]),
                 ("encode, 9 frames, the same", encode(io["x"]), io["mean"])]
        decoder.mid.attn_1.optimized_attention, encoder.mid.attn_1.optimized_attention = real
    print("\n".join(report) + "\n")
    print(f"| widths 16-64, 64x64, host ComfyUI {host_version(folder)} | max abs vs diffusers |")
    print("|---|---:|")
    for name, got, expected in rows:
        print(f"| {name} | {(got - expected).abs().max().item():.2e} |")
    frames = ((decode(io["z"]) + 1) / 2).clamp(0, 1)[0].permute(1, 2, 3, 0)
    print(f"| FrameStream decode vs the host's, 3 latent frames (frames in [0, 1]) | "
          f"{(io['ours'] - frames).abs().max().item():.2e} |")


if __name__ == "__main__":
    if sys.argv[1:2] == ["child"]:
        child(sys.argv[2], json.loads(sys.argv[3]))
    elif sys.argv[1:2] == ["diffusers_child"]:
        diffusers_child(sys.argv[2], sys.argv[3])
    elif sys.argv[1:2] == ["host_child"]:
        host_child(sys.argv[2], sys.argv[3])
    else:
        torch.set_num_threads(2)
        parts = {"exactness": exactness, "tiling": tiling, "memory": memory_, "plan": plan, "speed": speed,
                 "host": host}
        for name in sys.argv[1:] or list(parts):
            print(f"\n## {name}\n")
            parts[name]()
