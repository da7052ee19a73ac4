"""Decode time and peak memory: FrameStream's streaming decode vs diffusers' AutoencoderKLWan.decode.

Both decode the same latents with the same seeded random weights (the Wan 2.1
architecture; ``--dim 96`` is the real width). Every measurement runs in its own
process so that peak memory is that run's own: on the CPU the OS's peak RSS,
on CUDA ``torch.cuda.max_memory_allocated``. "Extra" is the peak minus the
memory held just before decoding (weights and latent), so it is what the
decode itself needed; the output's own size is shown beside it. On the CPU,
memory is measured in a second run with ``MALLOC_MMAP_THRESHOLD_`` fixed, so
glibc returns every freed tensor to the OS and the RSS peak is the peak of live
memory, not of allocator caching (that setting slows allocation, so the time
comes from a run with the default allocator).

    python benchmarks/decode_vs_diffusers.py                      # reduced width, CPU, 9..81 frames
    python benchmarks/decode_vs_diffusers.py --dim 96 --size 64   # the real widths
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def import_framestream():
    """The checkout as the package ``framestream`` (whatever the folder is called)."""
    if "framestream" not in sys.modules:
        spec = importlib.util.spec_from_file_location("framestream", os.path.join(ROOT, "__init__.py"),
                                                      submodule_search_locations=[ROOT])
        module = importlib.util.module_from_spec(spec)
        sys.modules["framestream"] = module
        spec.loader.exec_module(module)


def host_version(folder: str) -> str:
    """The version a ComfyUI checkout says it is (for benchmarks that run the host's own modules), or "?"."""
    try:
        with open(os.path.join(folder, "comfyui_version.py")) as f:
            return f.read().split('"')[1]
    except (OSError, IndexError):
        return "?"


def peak_bytes(device) -> int:
    import torch

    from framestream.vae_core.streaming.runtime import peak_rss_bytes

    return torch.cuda.max_memory_allocated(device) if device.type == "cuda" else peak_rss_bytes()


def current_bytes(device) -> int:
    import torch

    if device.type == "cuda":
        return torch.cuda.memory_allocated(device)
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def worker(args) -> dict:
    """One decode in this process; prints its figures as JSON."""
    import torch
    from diffusers import AutoencoderKLWan

    import_framestream()
    from framestream.vae_core.streaming import engine
    from framestream.vae_core import build_wan
    from framestream.vae_core.streaming.runtime import resolve_device

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    torch.manual_seed(0)
    ref = AutoencoderKLWan(base_dim=args.dim, z_dim=16).eval().requires_grad_(False)
    latent_hw = args.size // 8
    z = torch.randn(1, 16, args.latent_frames, latent_hw, latent_hw, generator=torch.Generator().manual_seed(1))
    if args.worker == "diffusers":
        model = ref.to(device)
        z = z.to(device)
    else:
        model = build_wan(ref.state_dict()).to(device)
        del ref
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
    before = current_bytes(device)
    started = time.perf_counter()
    with torch.inference_mode():
        if args.worker == "diffusers":
            out = model.decode(z).sample
        else:
            out = engine.decode(model, z, frames_per_step=args.frames_per_step)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "extra_bytes": peak_bytes(device) - before, "output_bytes": out.numel() * 4,
            "frames": int(out.shape[0] if args.worker == "framestream" else out.shape[2])}


def run_worker(args, impl: str, latent_frames: int, env: dict) -> dict:
    command = [sys.executable, __file__, "--worker", impl, "--latent-frames", str(latent_frames), "--dim", str(args.dim),
               "--size", str(args.size), "--device", args.device, "--threads", str(args.threads),
               "--frames-per-step", str(args.frames_per_step)]
    done = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_one(args, impl: str, latent_frames: int) -> dict:
    """Time from a default run; on the CPU, memory from a run whose allocator returns freed memory at once."""
    timed = run_worker(args, impl, latent_frames, dict(os.environ))
    if args.device != "cpu":
        return timed
    measured = run_worker(args, impl, latent_frames, {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"})
    return {**timed, "extra_bytes": measured["extra_bytes"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=32, help="Wan 2.1 base width (96 is the real model)")
    parser.add_argument("--size", type=int, default=128, help="frame size in pixels (square)")
    parser.add_argument("--lengths", type=int, nargs="+", default=[3, 6, 11, 21], help="latent frames per run")
    parser.add_argument("--frames-per-step", type=int, default=None, help="FrameStream's step (default: its default)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--worker", choices=["framestream", "diffusers"], help=argparse.SUPPRESS)
    parser.add_argument("--latent-frames", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.frames_per_step is None:
        import_framestream()
        from framestream.vae_core.streaming.engine import DEFAULT_FRAMES_PER_STEP

        args.frames_per_step = DEFAULT_FRAMES_PER_STEP
    if args.worker:
        print(json.dumps(worker(args)))
        return

    mib = 2**20
    print(f"Wan 2.1 architecture, base width {args.dim}, {args.size}x{args.size} px, device {args.device}, "
          f"{args.threads} threads, FrameStream {args.frames_per_step} latent frames per step")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print()
    print("| frames | diffusers s | FrameStream s | speed-up | diffusers extra MiB | FrameStream extra MiB | output MiB |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for length in args.lengths:
        theirs, ours = run_one(args, "diffusers", length), run_one(args, "framestream", length)
        assert theirs["frames"] == ours["frames"]
        print(f"| {ours['frames']} | {theirs['seconds']:.2f} | {ours['seconds']:.2f} | "
              f"{theirs['seconds'] / ours['seconds']:.2f}x | {theirs['extra_bytes'] / mib:.0f} | "
              f"{ours['extra_bytes'] / mib:.0f} | {ours['output_bytes'] / mib:.0f} |", flush=True)


if __name__ == "__main__":
    main()
