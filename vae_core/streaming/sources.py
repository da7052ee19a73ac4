"""The frames an encode reads: a tensor in memory, or chunks arriving once from a video file.

A file is read frame by frame, so a long input never sits in memory; its chunks are pushed into an
:class:`stream.EncodeStream` as they arrive. Only frames in memory can be read twice (for passes that gather
GroupNorm statistics first).
"""

from __future__ import annotations

import itertools
from typing import Iterable, Iterator

import torch

from ..errors import FrameStreamError
from .inputs import check_frames
from .model import CausalVideoVAE


class FrameSource:
    def __init__(self, vae: CausalVideoVAE, frames: torch.Tensor | Iterable[torch.Tensor],
                 frame_count: int | None = None) -> None:
        self.vae = vae
        if isinstance(frames, torch.Tensor):
            check_frames(vae, frames[:1])  # a bad tensor is refused before any plan (the stream checks it all)
            self.raw_size = tuple(frames.shape[1:3])
            self.tensor, self._chunks, self.count = frames, None, frames.shape[0]
            return
        if frame_count is None or frame_count < 1:
            raise FrameStreamError("encoding a stream of frame chunks needs their total frame_count (at least 1)")
        stream = iter(frames)
        first = next(stream, None)
        if first is None:
            raise FrameStreamError("the video holds no frames")
        check_frames(vae, first[:1])
        self.raw_size = tuple(first.shape[1:3])
        self.tensor, self._chunks, self.count = None, itertools.chain([first], stream), frame_count

    @property
    def rereadable(self) -> bool:
        return self.tensor is not None

    @property
    def size(self) -> tuple[int, int]:
        """Height and width after cropping to whole latent pixels."""
        r = self.vae.spatial_ratio
        return self.raw_size[0] // r * r, self.raw_size[1] // r * r

    def chunks(self) -> Iterator[tuple[torch.Tensor, bool]]:
        """The frames as they come, each chunk with whether it is the last: ``count`` frames in all (a file's
        frames beyond its header's count are left out)."""
        if self.tensor is not None:
            yield self.tensor, True
            return
        if self._chunks is None:
            raise FrameStreamError("a video read from a file can be encoded once; read it again to encode it again")
        chunks, self._chunks = self._chunks, None
        seen = 0
        for chunk in chunks:
            if tuple(chunk.shape[1:3]) != self.raw_size:
                raise FrameStreamError(f"frame size changed within the video: {tuple(chunk.shape[1:3])} after "
                                       f"{self.raw_size}")
            chunk = chunk[: self.count - seen]
            seen += chunk.shape[0]
            yield chunk, seen == self.count
            if seen == self.count:
                return
        raise FrameStreamError(f"the video ended early: {self.count} frames were expected, {seen} came")
