"""A spatial tile as the carries see it: the box it computes and the part of it it owns."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Window:
    """A spatial tile in units of the step's coarsest grid (latent pixels).

    ``box`` is what the tile computes and ``owned`` the part of it whose carry
    it writes back; owned parts of a layout partition the frame. Both are
    ``(top, left, height, width)``; ``frame`` is the whole grid ``(height, width)``.
    A layer whose input is ``s`` times finer than the grid scales all three by ``s``.
    """

    box: tuple[int, int, int, int]
    owned: tuple[int, int, int, int]
    frame: tuple[int, int]

    def scale_of(self, x: torch.Tensor) -> int:
        return x.shape[-2] // self.box[2]

    def region(self, s: int, part: tuple[int, int, int, int], relative: bool = False) -> tuple[slice, slice]:
        top, left, height, width = part
        if relative:
            top, left = top - self.box[0], left - self.box[1]
        return slice(top * s, (top + height) * s), slice(left * s, (left + width) * s)
