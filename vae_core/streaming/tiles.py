"""Where the tiles of a frame go, and how their overlaps are blended.

Tiles are laid out on the latent grid, so every tile maps to whole pixels at
every stage. Along each axis they are spread evenly, at least ``overlap`` apart
from their neighbours' edges and never skipped, whatever the sizes. Overlaps
are cross-faded with linear ramps that sum to one between two tiles; the
engine still divides by the summed weights, so three-way overlaps (overlap
of half a tile or more) and corners stay seam-free.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import FrameStreamError
from .frames import fade_in
from .window import Window

DEFAULT_OVERLAP_PX = 64


def spans(length: int, tile: int, overlap: int) -> list[tuple[int, int]]:
    """``[start, stop)`` intervals of at most ``tile`` covering ``[0, length)``, neighbours overlapping >= ``overlap``."""
    if tile >= length:
        return [(0, length)]
    if overlap >= tile:
        raise FrameStreamError(f"tile overlap ({overlap}) must be smaller than the tile ({tile}), on the latent grid")
    count = math.ceil((length - overlap) / (tile - overlap))
    starts = [round(i * (length - tile) / (count - 1)) for i in range(count)]
    return [(start, start + tile) for start in starts]


def owned_spans(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Splits every overlap at its middle, so each grid position belongs to exactly one tile."""
    cuts = [(nxt[0] + cur[1]) // 2 for cur, nxt in zip(intervals, intervals[1:])]
    edges = [intervals[0][0], *cuts, intervals[-1][1]]
    return list(zip(edges[:-1], edges[1:]))


@dataclass(frozen=True)
class Layout:
    """The tiles of one frame: windows on the latent grid plus the grid-cell size they were made with."""

    windows: tuple[Window, ...]
    tile: tuple[int, int]  # (height, width) asked for, in grid cells
    overlap: int

    @property
    def whole_frame(self) -> bool:
        return len(self.windows) == 1


def layout(height: int, width: int, tile: int | None, overlap: int) -> Layout:
    """Tiles of ``tile`` x ``tile`` grid cells (None: the whole frame) over a ``height`` x ``width`` grid."""
    tile_h, tile_w = (height, width) if tile is None else (min(tile, height), min(tile, width))
    rows, cols = spans(height, tile_h, overlap), spans(width, tile_w, overlap)
    owned_rows, owned_cols = owned_spans(rows), owned_spans(cols)
    windows = tuple(
        Window((r0, c0, r1 - r0, c1 - c0), (o0, p0, o1 - o0, p1 - p0), (height, width))
        for (r0, r1), (o0, o1) in zip(rows, owned_rows)
        for (c0, c1), (p0, p1) in zip(cols, owned_cols)
    )
    return Layout(windows, (tile_h, tile_w), overlap)


def ramp(start: int, stop: int, intervals: list[tuple[int, int]], scale: int) -> torch.Tensor:
    """Weights along one axis for the interval ``[start, stop)`` (grid units) at ``scale`` pixels per cell.

    Rises over the overlap with the previous interval and falls over the one
    with the next (:func:`frames.fade_in`): two overlapping ramps sum to 1.
    """
    weight = torch.ones((stop - start) * scale)
    before = [stop_ for start_, stop_ in intervals if start_ < start < stop_]
    after = [start_ for start_, stop_ in intervals if start < start_ < stop]
    if before:
        n = (max(before) - start) * scale
        weight[:n] = fade_in(n)
    if after:
        n = (stop - min(after)) * scale
        weight[-n:] = torch.minimum(weight[-n:], fade_in(n).flip(0))
    return weight


def blend_weights(window: Window, windows: tuple[Window, ...], scale: int) -> torch.Tensor:
    """``[H, W]`` weights of one tile at ``scale`` pixels per grid cell (outer product of two ramps)."""
    top, left, height, width = window.box
    rows = sorted({(w.box[0], w.box[0] + w.box[2]) for w in windows})
    cols = sorted({(w.box[1], w.box[1] + w.box[3]) for w in windows})
    return ramp(top, top + height, rows, scale)[:, None] * ramp(left, left + width, cols, scale)[None, :]
