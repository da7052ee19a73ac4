"""The frames an encode reads: a tensor in memory, or chunks arriving once from a video file.

A file is read frame by frame, so a long input never sits in memory; its
chunks are re-cut into the encoder's step sizes as they arrive. Only frames in
memory can be read twice (for passes that gather GroupNorm statistics first).
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
            self.raw_size = tuple(frames.shape[1:3])  # before check_frames crops it
            self.tensor, self.chunks = check_frames(vae, frames), None
            self.count = self.tensor.shape[0]
            return
        if frame_count is None or frame_count < 1:
            raise FrameStreamError("encoding a stream of frame chunks needs their total frame_count (at least 1)")
        stream = iter(frames)
        first = next(stream, None)
        if first is None:
            raise FrameStreamError("the video holds no frames")
        self.raw_size = tuple(first.shape[1:3])
        self.tensor, self.chunks, self.count = None, itertools.chain([first], stream), frame_count
        check_frames(vae, first[:1])

    @property
    def rereadable(self) -> bool:
        return self.tensor is not None

    @property
    def size(self) -> tuple[int, int]:
        """Height and width after cropping to whole latent pixels."""
        r = self.vae.spatial_ratio
        return self.raw_size[0] // r * r, self.raw_size[1] // r * r

    def groups(self, spans: list[tuple[int, int]]) -> Iterator[torch.Tensor]:
        """The frames of each step, checked and cropped."""
        if self.tensor is not None:
            yield from (self.tensor[start:stop] for start, stop in spans)
            return
        for group in _regroup(self.chunks, [stop - start for start, stop in spans]):
            if tuple(group.shape[1:3]) != self.raw_size:
                raise FrameStreamError(f"frame size changed within the video: {tuple(group.shape[1:3])} after "
                                       f"{self.raw_size}")
            yield check_frames(self.vae, group)


def _regroup(chunks: Iterable[torch.Tensor], sizes: list[int]) -> Iterator[torch.Tensor]:
    """Re-cuts a stream of frame chunks into pieces of exactly ``sizes`` frames (extra frames are ignored)."""
    pending: list[torch.Tensor] = []
    held = 0
    wanted = iter(sizes)
    need = next(wanted, None)
    for chunk in chunks:
        pending.append(chunk)
        held += chunk.shape[0]
        while need is not None and held >= need:
            joined = torch.cat(pending) if len(pending) > 1 else pending[0]
            yield joined[:need]
            rest = joined[need:]
            pending, held = ([rest] if rest.shape[0] else []), rest.shape[0]
            need = next(wanted, None)
        if need is None:
            return
    if need is not None:
        raise FrameStreamError(f"the video ended early: {sum(sizes)} frames were expected")
