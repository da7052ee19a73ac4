"""A tiled decode in one process against the same decode spread over N processes with torchrun (CPU, gloo).

Each run is the whole command (``python -m framestream decode``, or ``torchrun --nproc-per-node N -m
framestream decode``), alternating, best of ``--repeats``; the machine's cores are split evenly between the
processes (OMP_NUM_THREADS), so every run has the same cores. Also reports the decode time the command
prints (start-up and loading excluded). Usage::

    python benchmarks/distributed_decode.py [--ranks 1,2] [--size 256] [--tile 128] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE]
from decode_vs_diffusers import import_framestream  # noqa: E402

import_framestream()
from framestream.vae_core.demo import demo_vae  # noqa: E402


def command(ranks: int, args, folder: str) -> list[str]:
    decode = ["-m", "framestream", "decode", os.path.join(folder, "vae.safetensors"), os.path.join(folder, "z.latent"),
              "--tile", str(args.tile), "--device", "cpu", "-q", "-o", os.path.join(folder, f"out{ranks}.mp4")]
    if ranks == 1:
        return [sys.executable, *decode]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(ranks), *decode]


def run(ranks: int, args, folder: str) -> tuple[float, float]:
    threads = max(1, (os.cpu_count() or 1) // ranks)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    started = time.perf_counter()
    done = subprocess.run(command(ranks, args, folder), env=env, capture_output=True, text=True, cwd=folder)
    wall = time.perf_counter() - started
    if done.returncode:
        raise RuntimeError(done.stderr[-2000:])
    decode = float(re.search(r" in ([0-9.]+) s ", done.stdout).group(1))
    return wall, decode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ranks", default="1,2", help="process counts to compare, comma-separated")
    parser.add_argument("--size", type=int, default=256, help="frame size in px")
    parser.add_argument("--latents", type=int, default=3, help="latent frames")
    parser.add_argument("--dim", type=int, default=32, help="Wan 2.1 base width (96 is the release)")
    parser.add_argument("--tile", type=int, default=128, help="tile size in px (at least N tiles are needed)")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    counts = [int(n) for n in args.ranks.split(",")]
    with tempfile.TemporaryDirectory() as folder:
        vae = demo_vae(dim=args.dim)
        save_file({k: v.contiguous() for k, v in vae.state_dict().items()}, os.path.join(folder, "vae.safetensors"))
        z = torch.randn(16, args.latents, args.size // 8, args.size // 8, generator=torch.Generator().manual_seed(0))
        save_file({"latent_tensor": z}, os.path.join(folder, "z.latent"))
        best = {n: (float("inf"), float("inf")) for n in counts}
        for _ in range(args.repeats):
            for n in counts:
                wall, decode = run(n, args, folder)
                best[n] = (min(best[n][0], wall), min(best[n][1], decode))
    print(f"Wan 2.1 layers at width {args.dim}, {args.latents} latent frames, {args.size}x{args.size}, tiles of "
          f"{args.tile} px, {os.cpu_count()} CPUs shared evenly, best of {args.repeats}\n")
    print("| processes | threads each | command | decode | decode speed-up |")
    print("|---:|---:|---:|---:|---:|")
    for n in counts:
        wall, decode = best[n]
        print(f"| {n} | {max(1, (os.cpu_count() or 1) // n)} | {wall:.1f} s | {decode:.1f} s | "
              f"{best[counts[0]][1] / decode:.2f}x |")


if __name__ == "__main__":
    main()
