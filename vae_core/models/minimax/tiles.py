"""The release's own spatial tiles (256 px, at least 64 px overlap), which its output is defined over.

The decoder's attention and rotary positions span one tile, so the frames the
release makes are these tiles blended, not a whole-frame decode: the tiles are
part of the model, not a memory option. The layout and the blend are the
reference's (diffusers' ``_split_tiles``/``_stitch_tiles``, the host's
``split_tiles``/``tiled_decode``): tiles of one size whose overlaps are widened
by whole latent pixels, round-robin, until they cover the side exactly; each
tile's top rows are faded in from the raw tile above, then its left columns from
the raw tile to its left (so a corner mixes three tiles, not four).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch


@dataclass(frozen=True)
class Layout:
    """Tiles along one side, in pixels: their starts, their length, and the overlap after each but the last."""

    starts: list[int]
    length: int
    overlaps: list[int]


def split(side: int, tile: int, min_overlap: int, unit: int) -> Layout:
    """The fewest ``tile``-px tiles overlapping by at least ``min_overlap`` that cover ``side`` px, the slack
    spread over the overlaps ``unit`` px (one latent pixel) at a time."""
    if tile >= side:
        return Layout([0], side, [])
    count = math.ceil(side / tile)
    while tile * count - min_overlap * (count - 1) < side:
        count += 1
    overlaps = [min_overlap] * (count - 1)
    for i in range((tile * count - sum(overlaps) - side) // unit):
        overlaps[i % (count - 1)] += unit
    starts = [0]
    for overlap in overlaps:
        starts.append(starts[-1] + tile - overlap)
    return Layout(starts, tile, overlaps)


def fade(earlier: torch.Tensor, later: torch.Tensor, extent: int, dim: int) -> torch.Tensor:
    """``later``, changed in place, with its first ``extent`` entries along ``dim`` faded in over ``earlier``'s
    last: the later side's weight is ``k / extent`` at entry ``k``."""
    extent = min(earlier.shape[dim], later.shape[dim], extent)
    shape = [1] * later.ndim
    shape[dim] = extent
    earlier_weight = (1 - torch.arange(extent, device=later.device, dtype=later.dtype) / extent).view(shape)
    later.narrow(dim, 0, extent).lerp_(earlier.narrow(dim, earlier.shape[dim] - extent, extent), earlier_weight)
    return later


def run_tiled(run: Callable[[int, int, int, int], torch.Tensor], height: int, width: int, tile: int,
              min_overlap: int, unit: int, out_per_px: float) -> torch.Tensor:
    """``run(top, left, rows, cols)`` (a box in pixels) on every tile of a ``height`` x ``width`` px frame,
    blended into one output on the grid ``out_per_px`` times as fine as the pixels (1: pixels, 1/16: latent).

    Holds the output, the raw bottom rows of the tiles above and the raw right columns of the tile to the left.
    """
    rows, cols = split(height, tile, min_overlap, unit), split(width, tile, min_overlap, unit)
    if len(rows.starts) == len(cols.starts) == 1:
        return run(0, 0, height, width)
    scaled = lambda px: round(px * out_per_px)  # noqa: E731
    canvas, above, y = None, [], 0
    for i, top in enumerate(rows.starts):
        below, left_tail, x = [], None, 0
        for j, left in enumerate(cols.starts):
            out = run(top, left, rows.length, cols.length)
            last_row, last_col = i == len(rows.starts) - 1, j == len(cols.starts) - 1
            if not last_row:
                below.append(out[..., -scaled(rows.overlaps[i]) :, :].clone())
            tail = None if last_col else out[..., -scaled(cols.overlaps[j]) :].clone()
            if i > 0:
                out = fade(above[j], out, scaled(rows.overlaps[i - 1]), dim=-2)
            if j > 0:
                out = fade(left_tail, out, scaled(cols.overlaps[j - 1]), dim=-1)
            left_tail = tail
            if not last_row:
                out = out[..., : -scaled(rows.overlaps[i]), :]
            if not last_col:
                out = out[..., : -scaled(cols.overlaps[j])]
            if canvas is None:
                canvas = out.new_empty(*out.shape[:-2], scaled(height), scaled(width))
            canvas[..., y : y + out.shape[-2], x : x + out.shape[-1]] = out
            x += out.shape[-1]
        above, y = below, y + out.shape[-2]
    return canvas
