"""What a video encoder holds in RAM while a file is written, so a decode's plan can count it.

x264 (preset medium, which is what an unset preset means) keeps a look-ahead
of about 40 frames plus its reference and B-frames, each with half-pixel
planes, so what it holds grows by a few bytes per pixel with every frame
until about 50 frames are in, then stays. VP9 allocates most of its 25-frame
lag up front; lossless x264 (qp 0, no rate control) keeps no look-ahead.
Slice threads (``VideoFileSink`` asks for them) add no frames in flight, so
none of this depends on the number of cores. Frames are handed to the encoder
one at a time, so nothing else in the writer grows with a decode's step.
The fixed part includes what the first video a process writes brings in (the
codec libraries' code and tables, about 19 MiB), as a command-line decode
does; a host that has written a video before holds that already.

Fitted to the peak RSS of ``VideoFileSink`` alone (``benchmarks/writer_memory.py``,
docs/memory.md#writing-a-video-file) on x86-64 Linux with PyAV 18 (FFmpeg 8,
libx264 ABI 165, libvpx ABI 12), 128x128 to 1920x1080 and 1 to 240 frames:
within 5 % from 256x256 up once the look-ahead is full, above what was
measured for shorter clips and smaller frames.
"""

from __future__ import annotations

from dataclasses import dataclass

MiB = 2**20


@dataclass(frozen=True)
class EncoderMemory:
    fixed: int  # bytes, whatever the frame size (the codec's code and tables included)
    first_frame: float  # bytes per pixel held from the first frame on
    per_frame: float  # bytes per pixel added by each frame written ...
    most: float  # ... until the look-ahead is full: bytes per pixel at most

    def held_bytes(self, pixels: int, frames: int) -> int:
        return int(self.fixed + pixels * min(self.most, self.first_frame + self.per_frame * frames))


H264 = EncoderMemory(fixed=28 * MiB, first_frame=29.0, per_frame=4.2, most=250.0)  # yuv420p, crf
H264_RGB = EncoderMemory(fixed=22 * MiB, first_frame=152.0, per_frame=0.0, most=152.0)  # lossless, qp 0: no look-ahead
VP9 = EncoderMemory(fixed=40 * MiB, first_frame=180.0, per_frame=1.0, most=208.0)
