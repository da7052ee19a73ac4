"""Decode to an mp4 against the decode alone: the video encoder on its own thread, or in the decode's (CPU).

Each run is a child process (alternating, medians of ``--repeats``) decoding the same latent with a
full-width Wan 2.1 VAE (random weights) into a sink that keeps nothing, into an H.264 file encoded on a
thread beside the decode (``VideoFileSink``'s default), or into one encoded between the decode's steps
(``background=False``). Also beside a fixed competing load (``--busy``: one single-threaded busy loop)::

    python benchmarks/writer_overlap.py                 # 256x256, 33 frames
    python benchmarks/writer_overlap.py --size 512 --busy
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from decode_vs_diffusers import import_framestream  # noqa: E402
from measured_child import run_child  # noqa: E402

MODES = ("alone", "file, encoder thread", "file, in the decode's thread")


def child(mode: str, size: int, frames: int) -> None:
    import_framestream()
    import torch

    from framestream.vae_core import decode
    from framestream.vae_core.io.video import VideoFileSink
    from framestream.vae_core.models.wan.model import WanConfig, WanVAE
    from framestream.vae_core.streaming.sinks import CallbackSink

    torch.manual_seed(0)
    vae = WanVAE(WanConfig()).eval().requires_grad_(False)
    with torch.no_grad():
        for param in vae.parameters():
            param.copy_(0.05 * torch.randn_like(param))
    z = torch.randn(1, 16, 1 + (frames - 1) // 4, size // 8, size // 8, generator=torch.Generator().manual_seed(1))
    with tempfile.TemporaryDirectory() as folder:
        if mode == MODES[0]:
            sink = CallbackSink(lambda *chunk: None)
        else:
            sink = VideoFileSink(os.path.join(folder, "out.mp4"), 16, background=mode == MODES[1])
        began = time.perf_counter()
        decode(vae, z, sink=sink)
        seconds = time.perf_counter() - began
    print(json.dumps({"seconds": seconds}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--frames", type=int, default=33)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--busy", action="store_true", help="beside one single-threaded busy loop")
    args = parser.parse_args()
    load = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if args.busy else None
    try:
        times = {mode: [] for mode in MODES}
        for _ in range(args.repeats):
            for mode in MODES:
                times[mode].append(run_child(__file__, mode, str(args.size), str(args.frames))["seconds"])
    finally:
        if load is not None:
            load.kill()
    alone = statistics.median(times[MODES[0]])
    print(f"| Wan 2.1 full width, {args.frames} frames at {args.size}x{args.size}"
          f"{', beside a busy loop' if args.busy else ''} | s (median of {args.repeats}) | vs the decode alone |")
    print("|---|---:|---:|")
    for mode in MODES:
        seconds = statistics.median(times[mode])
        print(f"| {mode} | {seconds:.2f} | {seconds / alone:.3f} |")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        main()
