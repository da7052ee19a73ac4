"""LTX-2's diffusion decoder (the host's "LTX 2.4" VAE): FrameStream against diffusers'
LTX2VideoDiffusionDecoderModel with the same random weights (CPU).

The model is tests/oracle.py's reduced width (stages 128-16 channels, 16-wide heads, depths 2-2-1-1-2, the release's
11^3 diffusion-stage box), its last layer scaled by OUTPUT_GAIN so that the frames stay inside the clamp to [0, 1]
(with the oracle's weights a third of the values fall outside it, and errors there would not show). Both decode the
raw-space latent with the host's noise (a generator seeded 0); diffusers' frames in [-1, 1] are converted to [0, 1].

diffusers' CPU attention is flex attention without torch.compile: it materialises the whole clip's score matrix
(tokens^2: frames x (size / 4)^2 tokens at the diffusion stage), so its time and memory grow with the square of the
clip; it is run only up to DIFFUSERS_MAX_TOKENS tokens. Usage::

    python benchmarks/ltx24_decode.py            # all parts
    python benchmarks/ltx24_decode.py error      # max abs error against diffusers' decode, several lengths
    python benchmarks/ltx24_decode.py speed      # the framestream CLI vs a diffusers script, whole processes
    python benchmarks/ltx24_decode.py memory     # peak RSS against length: FrameStream's is flat
    python benchmarks/ltx24_decode.py tiles      # FrameStream tiled vs untiled at 256x256 (not exact: the
                                                 # attention reaches ~1000 px)
"""

from __future__ import annotations

import filecmp
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
from decode_vs_diffusers import import_framestream  # noqa: E402
from measured_child import run_child  # noqa: E402

import_framestream()
from framestream.vae_core import DecodeStream, build_vae, decode  # noqa: E402
from framestream.vae_core.io.video import VideoFileSink  # noqa: E402
from framestream.vae_core.quality import psnr  # noqa: E402
from framestream.vae_core.streaming.runtime import peak_rss_bytes, reset_peak_rss  # noqa: E402
from framestream.vae_core.streaming.sinks import CallbackSink  # noqa: E402
from framestream.vae_core.streaming.tiles import DEFAULT_OVERLAP_PX, spans  # noqa: E402
from oracle import diffusers_ltx24, ltx24_metadata  # noqa: E402

MiB = 2**20
CHANNELS, SPATIAL, PATCH = 128, 32, 4
OUTPUT_GAIN = 0.25  # the decoder's last layer scaled: frames' std about 0.25 in [-1, 1], all but a few inside
DIFFUSERS_MAX_TOKENS = 24_000  # the diffusion stage's tokens diffusers is run for (22784 peak at 6.9 GB RSS)


def reference():
    """diffusers' model, tests/oracle.py's weights with the last layer scaled by OUTPUT_GAIN."""
    ref = diffusers_ltx24()
    with torch.no_grad():
        ref.decoder.conv_out.weight.mul_(OUTPUT_GAIN)
        ref.decoder.conv_out.bias.mul_(OUTPUT_GAIN)
    return ref


def pair():
    """diffusers' model and FrameStream's from its weights (the kernels and strides from its config, as a file's
    metadata carries them)."""
    ref = reference()
    return ref, build_vae({k: v.clone() for k, v in ref.state_dict().items()}, metadata=ltx24_metadata(ref))


def latent(latents: int, size: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(1, CHANNELS, latents, size // SPATIAL, size // SPATIAL,
                       generator=torch.Generator().manual_seed(seed))


def pixel_frames(latents: int) -> int:
    return 8 * (latents - 1) + 1


def tokens(latents: int, size: int) -> int:
    """The diffusion stage's tokens for the clip: what diffusers' score matrix is square in."""
    return pixel_frames(latents) * (size // PATCH) ** 2


def diffusers_decode(ref, z: torch.Tensor) -> torch.Tensor:
    """diffusers' frames, [1, 3, T, H, W] in [-1, 1], from the host's noise (a generator seeded 0)."""
    with torch.no_grad():
        return ref.decode(z, generator=torch.Generator().manual_seed(0)).sample


def frames_of(video: torch.Tensor) -> torch.Tensor:
    """diffusers' [1, 3, T, H, W] in [-1, 1] -> [T, H, W, 3] in [0, 1], as FrameStream gives them."""
    return ((video[0] + 1) / 2).clamp(0, 1).permute(1, 2, 3, 0)


def _skip_reason(latents: int, size: int) -> str:
    n = tokens(latents, size)
    return f"not run: {n} tokens, a {n * n * 4 / 2**30:.0f} GB score matrix (> {DIFFUSERS_MAX_TOKENS} tokens)"


def _row(name: str, got: torch.Tensor, reference: torch.Tensor) -> None:
    assert got.shape == reference.shape, (got.shape, reference.shape)
    print(f"| {name} | {(got - reference).abs().max().item():.2e} | {psnr(got, reference):.1f} dB |", flush=True)


def error() -> None:
    torch.set_num_threads(2)
    ref, ours = pair()
    print("Max abs error in [0, 1] pixel units (FrameStream's frames; diffusers' [-1, 1] frames mapped to [0, 1] "
          "and clamped); PSNR over the clip.")
    print()
    print("| clip | check | max error vs diffusers' decode | PSNR |")
    print("|---|---|---:|---:|")
    for latents, size in ((3, 128), (3, 64), (6, 64), (12, 64)):
        z = latent(latents, size)
        label = f"{latents} latent frames ({pixel_frames(latents)} frames) at {size}x{size}"
        if tokens(latents, size) > DIFFUSERS_MAX_TOKENS:
            print(f"| {label} | diffusers {_skip_reason(latents, size)} | | |", flush=True)
            continue
        started = time.perf_counter()
        native = diffusers_decode(ref, z)
        seconds = time.perf_counter() - started
        inside = ((native > -1) & (native < 1)).float().mean().item()
        native = frames_of(native)
        print(f"| {label} | (diffusers: {seconds:.0f} s, std {native.std().item():.3f} in [0, 1], "
              f"{100 * inside:.2f}% of values inside (0, 1)) | | |", flush=True)
        for per_step in (1, 4):
            _row(f"{label} | FrameStream decode, {per_step} latent frame{'s' * (per_step > 1)} a step, untiled",
                 decode(ours, z, frames_per_step=per_step, tile="none"), native)
        with DecodeStream(ours, frames=latents, tile="none") as stream:
            pushed = [stream.push(z[:, :, i : i + 1]) for i in range(latents)] + [stream.flush()]
        _row(f"{label} | FrameStream DecodeStream, one latent frame a push", torch.cat(pushed), native)


def child(kind: str, latents: int, size: int) -> None:
    """One measured decode in this process (see :func:`measured_child.run_child`); both models are built in both
    kinds, and both warm up on a 64x64 clip of 3 latent frames."""
    torch.set_num_threads(2)
    ref, ours = pair()
    z = latent(latents, size)
    if kind == "framestream":
        decode(ours, z[:, :, :3, :2, :2], tile="none")
    else:
        diffusers_decode(ref, z[:, :, :3, :2, :2])
    base = reset_peak_rss()
    started = time.perf_counter()
    if kind == "framestream":
        decode(ours, z, sink=CallbackSink(lambda *chunk: None), frames_per_step=1, tile="none")  # streamed away
    else:
        diffusers_decode(ref, z)
    seconds = time.perf_counter() - started
    peak = peak_rss_bytes()
    print(json.dumps({"peak": peak, "extra": peak - base, "seconds": seconds}))


def memory() -> None:
    print("Untiled decode, FrameStream one latent frame a step to a sink that keeps nothing, diffusers returning its "
          "video; one process each; peak RSS (VmHWM) and its rise over the RSS just before the call (extra). No "
          "times: with glibc's mmap threshold fixed (measured_child) FrameStream's many mid-sized buffers are each "
          "mapped afresh, which slows it several times over (see the speed part).")
    print()
    print("| size | latent frames | frames | FrameStream peak (extra) | diffusers peak (extra) |")
    print("|---|---:|---:|---:|---:|")
    for size, lengths in ((128, (3, 6, 24)), (64, (3, 6, 12))):
        for latents in lengths:
            ours = run_child(__file__, "framestream", str(latents), str(size))
            cells = f"{ours['peak'] / MiB:.0f} MiB ({ours['extra'] / MiB:.0f})"
            if tokens(latents, size) > DIFFUSERS_MAX_TOKENS:
                theirs = _skip_reason(latents, size)
            else:
                r = run_child(__file__, "diffusers", str(latents), str(size))
                theirs = f"{r['peak'] / MiB:.0f} MiB ({r['extra'] / MiB:.0f})"
            print(f"| {size}x{size} | {latents} | {pixel_frames(latents)} | {cells} | {theirs} |", flush=True)


def diffusers_child(folder: str) -> None:
    """What a diffusers user runs: load the same file, decode in one call, write the same mp4 with the same writer."""
    from diffusers import LTX2VideoDiffusionDecoderModel
    from safetensors import safe_open
    from safetensors.torch import load_file

    torch.set_num_threads(2)
    weights = os.path.join(folder, "vae.safetensors")
    with safe_open(weights, "pt") as f:
        config = json.loads(f.metadata()["config"])
    with torch.device("meta"):
        ref = LTX2VideoDiffusionDecoderModel.from_config(config)
    ref.load_state_dict(load_file(weights), assign=True)
    z = load_file(os.path.join(folder, "latent.safetensors"))["latent"]
    frames = frames_of(diffusers_decode(ref.eval(), z))
    sink = VideoFileSink(os.path.join(folder, "diffusers.mp4"), 24)
    sink.start((1, *frames.shape))
    sink.write(0, 0, frames)
    sink.result()


def speed(repeats: int = 3) -> None:
    from safetensors.torch import save_file

    ref = reference()
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    print(f"decode -> mp4 (h264, crf 19), whole processes (start, imports, loading, decoding, writing), {repeats} "
          "each, alternating; FrameStream untiled, one latent frame a step (its CLI's default).")
    print()
    print("| clip | FrameStream CLI runs | median | diffusers script runs | median | FrameStream / diffusers | "
          "same mp4 bytes |")
    print("|---|---|---:|---|---:|---:|---|")
    for latents, size in ((3, 128), (6, 64), (6, 128), (6, 256)):
        label = f"{latents} latent frames ({pixel_frames(latents)} frames) at {size}x{size}"
        with tempfile.TemporaryDirectory() as folder:
            save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, os.path.join(folder, "vae.safetensors"),
                      metadata=ltx24_metadata(ref))
            save_file({"latent": latent(latents, size)}, os.path.join(folder, "latent.safetensors"))
            commands = {
                "FrameStream CLI": [sys.executable, "-m", "framestream", "decode",
                                    os.path.join(folder, "vae.safetensors"), os.path.join(folder, "latent.safetensors"),
                                    "-o", os.path.join(folder, "ours.mp4"),
                                    "--ltx-latents", "raw", "--tile", "none", "--device", "cpu", "-q", "-y",
                                    "--fps", "24"],
                "diffusers script": [sys.executable, __file__, "diffusers_child", folder],
            }
            if tokens(latents, size) > DIFFUSERS_MAX_TOKENS:
                del commands["diffusers script"]
            times = {name: [] for name in commands}
            for _ in range(repeats):  # alternating, so that a busy moment of the machine hits both
                for name, command in commands.items():
                    started = time.perf_counter()
                    out = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
                    times[name].append(time.perf_counter() - started)
                    if out.returncode:
                        raise RuntimeError(f"{name} failed: {out.stderr[-2000:]}")
            same = "" if len(commands) == 1 else \
                "yes" if filecmp.cmp(*(os.path.join(folder, f) for f in ("ours.mp4", "diffusers.mp4")), shallow=False) \
                else "no"
        cells = [f"{', '.join(f'{v:.1f}' for v in values)} s | {statistics.median(values):.1f} s"
                 for values in times.values()]
        if len(cells) == 1:
            cells.append(f"{_skip_reason(latents, size)} | ")
            ratio = ""
        else:
            ratio = f"{statistics.median(times['FrameStream CLI']) / statistics.median(times['diffusers script']):.2f}"
        print(f"| {label} | {' | '.join(cells)} | {ratio} | {same} |", flush=True)


def tiles() -> None:
    torch.set_num_threads(2)
    _, ours = pair()
    size, latents = 256, 6
    z = latent(latents, size, seed=3)
    started = time.perf_counter()
    whole = decode(ours, z, tile="none")
    seconds = time.perf_counter() - started
    print(f"FrameStream tiled vs untiled, {latents} latent frames ({pixel_frames(latents)} frames) at {size}x{size} "
          f"(untiled: {seconds:.1f} s); tiles blended linearly over the overlap.")
    print()
    print("| tile | overlap asked | tiles a side at (px) | PSNR vs untiled | max abs diff ([0, 1]) | time |")
    print("|---:|---:|---|---:|---:|---:|")
    for tile, overlap in ((96, 32), (96, DEFAULT_OVERLAP_PX), (128, DEFAULT_OVERLAP_PX), (160, DEFAULT_OVERLAP_PX),
                          (192, DEFAULT_OVERLAP_PX)):
        layout = ", ".join(f"{SPATIAL * a}-{SPATIAL * b}" for a, b in spans(size // SPATIAL, tile // SPATIAL,
                                                                            overlap // SPATIAL))
        started = time.perf_counter()
        tiled = decode(ours, z, tile=tile, overlap=overlap)
        seconds = time.perf_counter() - started
        print(f"| {tile} px | {overlap} px | {layout} | {psnr(tiled, whole):.1f} dB | "
              f"{(tiled - whole).abs().max().item():.3f} | {seconds:.1f} s |", flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["child"]:
        child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif sys.argv[1:2] == ["diffusers_child"]:
        diffusers_child(sys.argv[2])
    else:
        for part in sys.argv[1:] or ["error", "speed", "memory", "tiles"]:
            {"error": error, "speed": speed, "memory": memory, "tiles": tiles}[part]()
            print()
