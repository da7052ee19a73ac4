"""Consecutive segments of one video, decoded separately, written as one video without repeated frames.

Each segment of a batch is decoded with its own causal cache (a segment's
first latent frame is an image latent and must start a fresh stream), and
neighbouring segments share ``overlap`` frames: keyframe segments share their
boundary keyframe (overlap 1). The shared frames are taken from the earlier
segment, or cross-faded linearly from it into the later one.

It is a sink in front of another sink, so it streams: only the earlier
segment's last ``overlap`` frames are held back until the next segment arrives.
"""

from __future__ import annotations

import torch

from ..errors import FrameStreamError
from .frames import fade_in
from . import sinks
from .sinks import Sink


def stitched_length(segments: int, frames: int, overlap: int) -> int:
    return segments * (frames - overlap) + overlap


class StitchSink:
    def __init__(self, inner: Sink, overlap: int, crossfade: bool = False) -> None:
        self.inner, self.overlap, self.crossfade = inner, overlap, crossfade
        self.segments = self.frames = 0
        self.held: torch.Tensor | None = None  # the earlier segment's last `overlap` frames

    def start(self, shape: tuple[int, ...]) -> None:
        self.segments, self.frames = shape[:2]
        if not 0 <= self.overlap <= self.frames // 2:
            raise FrameStreamError(f"segment overlap is {self.overlap} frames; with {self.frames}-frame segments it "
                                   f"must be 0 to {self.frames // 2}")
        self.inner.start((1, stitched_length(self.segments, self.frames, self.overlap), *shape[2:]))

    def write(self, segment: int, start: int, chunk: torch.Tensor) -> None:
        stride = self.frames - self.overlap
        head_end = self.overlap if segment > 0 else 0  # frames shared with the previous segment
        tail_start = stride if segment < self.segments - 1 else self.frames  # frames shared with the next one
        for lo, hi in ((0, head_end), (head_end, tail_start), (tail_start, self.frames)):
            lo, hi = max(lo, start), min(hi, start + chunk.shape[0])
            if lo >= hi:
                continue
            part = chunk[lo - start : hi - start]
            if hi <= head_end:
                part = self._shared(part, lo)
            elif lo >= tail_start:
                self._hold(part, lo - tail_start)
                continue
            self.inner.write(0, segment * stride + lo, part)

    def _hold(self, part: torch.Tensor, offset: int) -> None:
        if self.held is None or offset == 0:
            self.held = torch.empty(self.overlap, *part.shape[1:], dtype=part.dtype)
        self.held[offset : offset + part.shape[0]] = part

    def _shared(self, later: torch.Tensor, offset: int) -> torch.Tensor:
        earlier = self.held[offset : offset + later.shape[0]]
        if not self.crossfade:
            return earlier
        # weight of the later segment rises from 1/(overlap+1) to overlap/(overlap+1) across the shared frames
        weight = fade_in(self.overlap, offset, later.shape[0]).view(-1, *([1] * (later.dim() - 1)))
        return (earlier * (1 - weight) + later * weight).to(later.dtype)

    def held_bytes(self, height: int, width: int, frames: int) -> int:
        """What the sink behind holds (see ``memory.plan_decode``); it gets a few shared frames fewer, which only
        lowers what an encoder holds."""
        return sinks.held_bytes(self.inner, height, width, frames)

    def kept_bytes(self, height: int, width: int, frames: int) -> int:
        return sinks.kept_bytes(self.inner, height, width, frames)

    def result(self):
        return self.inner.result()

    def abort(self) -> None:
        abort = getattr(self.inner, "abort", None)
        if abort is not None:
            abort()
