"""What a video file being written holds in RAM, against the model in ``io/writer_memory.py`` (CPU).

A decode to a file holds the engine's memory plus the encoder's: x264 keeps a
look-ahead of frames and, per frame thread, frames in flight, so what it holds
grows with the frame's pixels and the thread count and stops growing once
those frames are filled. Each figure is one child process's extra peak RSS
(``VmHWM``) while ``VideoFileSink`` alone writes moving textured frames, the
first video of the process, as in a command-line decode (``--warm``: after
one small video, so without the codec's code and tables); the estimate is
what the plan of a decode to that file adds for the writer::

    python benchmarks/writer_memory.py            # the table for docs/memory.md
    python benchmarks/writer_memory.py --quick    # two rows
    python benchmarks/writer_memory.py --warm     # the encoder used once before
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import torch  # noqa: E402

from framestream.vae_core.io.video import VideoFileSink  # noqa: E402
from framestream.vae_core.streaming.runtime import peak_rss_bytes, reset_peak_rss  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from measured_child import run_child  # noqa: E402

MiB = 2**20


def moving_frames(frames: int, height: int, width: int, start: int = 0) -> torch.Tensor:
    """A textured pattern panning by a pixel a frame, so the encoder works as on real footage (not on a still)."""
    y = torch.arange(height, dtype=torch.float32)[:, None]
    x = torch.arange(width, dtype=torch.float32)[None, :]
    out = []
    for t in range(start, start + frames):
        u = x + t
        base = 0.5 + 0.25 * torch.sin(u / 7.0) * torch.cos(y / 5.0) + 0.2 * torch.sin((u + 2 * y) / 2.3)
        out.append(torch.stack((base, base.roll(3, 1), 1 - base), -1))
    return torch.stack(out).clamp(0, 1)


def child(options: dict) -> None:
    torch.set_num_threads(2)
    (height, width), frames = options["size"], options["frames"]
    with tempfile.TemporaryDirectory() as folder:
        if options.get("warm"):  # the encoder used once before: its code and tables already in memory
            warm = VideoFileSink(os.path.join(folder, "warm" + options.get("suffix", ".mp4")), 24,
                                 lossless=options.get("lossless", False))
            warm.start((1, 2, 64, 64, 3))
            warm.write(0, 0, moving_frames(2, 64, 64))
            warm.result()
        sink = VideoFileSink(os.path.join(folder, "out" + options.get("suffix", ".mp4")), 24,
                             lossless=options.get("lossless", False))
        chunk = 4
        pattern = moving_frames(chunk, height, width)  # uniform noise frames: the same figures
        base = reset_peak_rss()
        sink.start((1, frames, height, width, 3))
        for start in range(0, frames, chunk):
            n = min(chunk, frames - start)
            sink.write(0, start, pattern[:n].roll(start, 2))
        sink.result()
        extra = peak_rss_bytes() - base
        estimate = sink.held_bytes(height, width, frames)
    print(json.dumps({"extra": extra, "estimate": estimate}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--warm", action="store_true")
    args = parser.parse_args()
    h264, rgb, vp9 = (".mp4", False), (".mp4", True), (".webm", False)
    cases = [((256, 256), 120, h264), ((512, 512), 120, h264)] if args.quick else [
        *(((128, 128), frames, h264) for frames in (9, 120)),
        *(((256, 256), frames, h264) for frames in (9, 33, 120, 240)),
        *(((512, 512), frames, h264) for frames in (1, 5, 9, 17, 33, 49, 57, 120)),
        ((480, 832), 120, h264), ((720, 1280), 80, h264), ((1080, 1920), 60, h264),
        ((256, 256), 120, rgb), ((512, 512), 9, rgb), ((512, 512), 120, rgb), ((720, 1280), 120, rgb),
        ((256, 256), 9, vp9), ((256, 256), 120, vp9), ((512, 512), 9, vp9), ((512, 512), 120, vp9),
        ((720, 1280), 80, vp9),
    ]
    print("| frames | size | file | estimate | measured extra RSS | measured / estimate |")
    print("|---:|---|---|---:|---:|---:|")
    for (height, width), frames, (suffix, lossless) in cases:
        r = run_child(__file__, json.dumps({"size": [height, width], "frames": frames, "suffix": suffix,
                                            "lossless": lossless, "warm": args.warm}))
        kind = "lossless .mp4" if lossless else suffix
        print(f"| {frames} | {width}x{height} | {kind} | {r['estimate'] / MiB:.1f} MiB | {r['extra'] / MiB:.1f} MiB | "
              f"{r['extra'] / r['estimate']:.2f} |", flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["child"]:
        child(json.loads(sys.argv[2]))
    else:
        main()
