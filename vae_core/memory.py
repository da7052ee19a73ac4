"""How much memory a decode or encode needs, and the largest tile that fits a budget.

Peak memory of a streamed step is modelled in three parts:

* the causal carries, for the whole frame, twice while a step runs (see
  :mod:`stream`); measured once per model by streaming two latent frames
  through it on a one-cell grid, since carries scale exactly with frame area;
* one tile's activations at the finest stage, which dominate:
  ``LIVE_AT_FINEST`` tensors of the finest width over the step's pixel frames
  and the tile's pixels (the constant is fitted and checked in
  ``benchmarks/memory_plan.py``);
* the step's blended output in fp32, and the weights (not part of a budget).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .model import CausalVideoVAE
from .stream import StreamState

LIVE_AT_FINEST = 6.0
MIN_TILE_PX = 128


@dataclass(frozen=True)
class Estimate:
    carries: int
    activations: int
    output: int

    @property
    def total(self) -> int:
        return self.carries + self.activations + self.output


@torch.no_grad()
def carry_bytes_per_cell(vae: CausalVideoVAE, direction: str = "decode") -> int:
    """Bytes of causal carry per latent pixel, in the model's dtype (probed once, cached on the model)."""
    cache = vae.__dict__.setdefault("_framestream_carry_per_cell", {})
    if direction not in cache:
        state = StreamState()
        device, dtype = vae.weight_device, vae.weight_dtype
        with state.active():
            if direction == "decode":
                for _ in range(2):
                    vae.decode_chunk(torch.zeros(1, vae.latent_channels, 1, 1, 1, device=device, dtype=dtype))
                    state.commit()
            else:
                r, s = vae.temporal_ratio, vae.spatial_ratio
                for frames in (1, r):
                    vae.encode_chunk(torch.zeros(1, 3, frames, s, s, device=device, dtype=dtype))
                    state.commit()
        cache[direction] = state.carry_bytes()
    return cache[direction]


def estimate(vae: CausalVideoVAE, height: int, width: int, per_step: int, tile_px: int | None,
             direction: str = "decode") -> Estimate:
    """Peak bytes beyond the weights for frames of ``height`` x ``width`` px, ``per_step`` latent frames a step."""
    r = vae.spatial_ratio
    itemsize = vae.weight_dtype.itemsize
    cells = (height // r) * (width // r)
    carries = 2 * carry_bytes_per_cell(vae, direction) * cells
    tile_h, tile_w = (height, width) if tile_px is None else (min(tile_px, height), min(tile_px, width))
    frames = vae.temporal_ratio * per_step
    width_at_finest = vae.finest_width if direction == "decode" else vae.encoder_finest_width
    activations = int(LIVE_AT_FINEST * width_at_finest * frames * tile_h * tile_w * itemsize)
    output = 2 * 3 * frames * height * width * 4 if direction == "decode" else 0
    return Estimate(carries, activations, output)


def auto_tile(vae: CausalVideoVAE, height: int, width: int, per_step: int, overlap_px: int,
              budget: int | None, direction: str = "decode") -> int | None:
    """The largest square tile (px, a multiple of the latent pixel) whose estimate fits ``budget``.

    None when the whole frame fits; the smallest tile when nothing fits (the
    engine then still shrinks tiles if a step runs out of memory).
    """
    budget = free_bytes(vae.weight_device) if budget is None else budget
    if estimate(vae, height, width, per_step, None, direction).total <= budget:
        return None
    r = vae.spatial_ratio
    smallest = max(MIN_TILE_PX, 2 * math.ceil(overlap_px / r) * r + r)
    tile = max(height, width) // r * r
    while tile > smallest and estimate(vae, height, width, per_step, tile, direction).total > budget:
        tile -= r
    return max(tile, smallest)


def free_bytes(device: torch.device) -> int:
    """Memory free for work on ``device``: the GPU's free plus the caching allocator's spare, or RAM available."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    try:
        with open("/proc/meminfo") as info:
            fields = dict(line.split(":", 1) for line in info)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return 8 * 2**30  # no /proc (macOS, Windows): assume a modest machine
