"""One step's high-resolution part, run tile by tile and blended, with smaller tiles after running out of memory.

The tiles of a step share one :class:`state.StreamState`: each reads its own
extent of every carry and writes back the part it owns (:mod:`state`). A step
that runs out of memory is dropped (its writes were pending) and re-run with
tiles half the size, then with the carries in host RAM, so no work is lost (on a
GPU; a CPU run keeps no copy of what a step overwrote, see :mod:`journal`).
"""

from __future__ import annotations

from typing import Callable

import torch

from ..errors import FrameStreamError
from . import memory
from .group_norm import Gathered, Pooling
from .model import CausalVideoVAE
from .runtime import release_cached_memory
from .settings import Retry
from .state import StreamState
from .tiles import blend_weights, layout


class Tiler:
    """Runs one step's high-resolution part tile by tile and blends the tiles, shrinking them after an OOM."""

    def __init__(self, vae: CausalVideoVAE, grid: tuple[int, int], plan: memory.Plan, overlap_px: int,
                 on_retry: Retry, cache_device: torch.device | str | None = None,
                 statistics_passes: int | None = None) -> None:
        tile_px, r = plan.tile_px, vae.spatial_ratio
        if overlap_px < 0:
            raise FrameStreamError(f"tile overlap must be 0 or more pixels, got {overlap_px}")
        memory.check_tile(vae, tile_px)
        self.grid, self.on_retry = grid, on_retry
        # where carries live: the compute device (None) unless asked, planned or forced by running out of memory
        if cache_device is None and plan.offload_carries:
            cache_device = "cpu"
        self.cache_device = torch.device(cache_device) if cache_device is not None else None
        self.on_gpu = vae.weight_device.type != "cpu"
        overlap = -(-overlap_px // r)  # whole latent pixels, rounded up
        if tile_px is not None and overlap >= tile_px // r:
            raise FrameStreamError(
                f"tile overlap {overlap_px} px must be smaller than the tile ({tile_px} px); try an overlap of "
                f"{tile_px // 4} px or less"
            )
        tile = None if tile_px is None or tile_px // r >= max(grid) else tile_px // r
        self.layout = layout(*grid, tile, overlap)
        self._sums: dict[int, torch.Tensor] = {}
        # per-step GroupNorm statistics in tiles (:meth:`steps._Step._gather`): the trial passes allowed (None: as
        # many as exactness takes), and how many norms the tiles hold (known after the first step)
        self.statistics_passes = statistics_passes
        self.norms_in_tiles: int | None = None

    @property
    def may_offload(self) -> bool:
        """Whether running out of memory may still move the carries to host RAM."""
        return self.on_gpu and self.cache_device is None

    def new_state(self, expected_frames: int | None = None, pace: tuple[int, int] | None = None,
                  pooling: Pooling | None = None) -> StreamState:
        # on a GPU a step keeps what it overwrites in host RAM, to re-run it after running out of memory; a CPU
        # run cannot recover from a failed allocation, so it keeps nothing
        return StreamState(self.cache_device, expected_frames, pace, rollback_to="cpu" if self.on_gpu else None,
                           pooling=pooling)

    @property
    def can_shrink(self) -> bool:
        return self._smaller() < max(self.layout.tile)

    def _smaller(self) -> int:
        """Half the tile, never below overlap + 1 cells."""
        return max(max(self.layout.tile) // 2, self.layout.overlap + 1)

    def shrink(self) -> bool:
        """Halves the tiles; False when they cannot get smaller."""
        if not self.can_shrink:
            return False
        self.layout = layout(*self.grid, self._smaller(), self.layout.overlap)
        self._sums.clear()
        return True

    def tile_px(self, r: int) -> str:
        return "whole frame" if self.layout.whole_frame else f"{self.layout.tile[0] * r}x{self.layout.tile[1] * r} px tiles"

    def shared(self, state: StreamState, fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """The step's whole-frame part, ``fn(x)`` (one process runs it and shares it: :mod:`distributed`)."""
        return fn(x)

    def run(self, state: StreamState, fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
            in_scale: int, out_scale: int) -> torch.Tensor:
        """``fn`` over every tile of ``x`` (``in_scale`` px per grid cell), blended at ``out_scale``, in fp32."""
        if self.layout.whole_frame:
            return fn(x).float()
        out = self.blend(state, fn, x, in_scale, out_scale, range(len(self.layout.windows)))
        return out.div_(self._weight_sum(out_scale, out.device))

    def blend(self, state: StreamState, fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, in_scale: int,
              out_scale: int, tiles: range) -> torch.Tensor:
        """The weighted sum of ``fn`` over the layout's ``tiles`` (indices), each weighted by its blend ramp."""
        windows: list = self.layout.windows
        out, gathered = None, False
        for k, i in enumerate(tiles):
            window = windows[i]
            try:
                with state.tile(window, tuple(windows[j] for j in tiles[k + 1 :])):
                    y = fn(x[(..., *window.region(in_scale, window.box))])
            except Gathered:  # a pass that gathers one norm's statistics: the tile has given its share
                gathered = True
                continue
            weights = blend_weights(window, windows, out_scale).to(y.device)
            if out is None:
                out = y.new_zeros(*y.shape[:3], self.grid[0] * out_scale, self.grid[1] * out_scale, dtype=torch.float32)
            out[(..., *window.region(out_scale, window.box))].addcmul_(y.float(), weights)
            del y
        if gathered:
            raise Gathered
        return out

    def _weight_sum(self, scale: int, device: torch.device) -> torch.Tensor:
        if scale not in self._sums:
            total = torch.zeros(self.grid[0] * scale, self.grid[1] * scale)
            for window in self.layout.windows:
                total[window.region(scale, window.box)] += blend_weights(window, self.layout.windows, scale)
            self._sums[scale] = total
        return self._sums[scale].to(device)

    def can_recover(self, state: StreamState) -> bool:
        """Whether a step of ``state`` that ran out of memory can be undone and re-run with less."""
        return state.carries.can_roll_back and (self.can_shrink or self.may_offload)

    def recover(self, state: StreamState, describe: str) -> None:
        """After a step ran out of memory (and :meth:`can_recover`): undoes its writes, then halves the tiles, or
        else moves the carries to host RAM, for the step to be re-run."""
        state.carries.rollback()
        failed = self.tile_px(1)
        if self.shrink():
            change = f"smaller tiles ({failed} -> {self.layout.tile} latent px)"
        else:
            self.cache_device = torch.device("cpu")
            state.carries.offload(self.cache_device)
            change = "the causal carries moved to host RAM"
        release_cached_memory()
        self.on_retry(f"out of memory in {describe}; retrying it with {change}")
