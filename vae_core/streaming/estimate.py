"""How much memory one step of a decode or encode needs: pure arithmetic over a :class:`Request`.

Peak memory of a streamed step is modelled in parts:

* the causal carries, for the whole frame, once (a step overwrites them in
  place, :mod:`journal`), plus the old values a tiled step keeps aside for its
  later tiles (measured per model: :mod:`probe`). A delayed decoder's carries
  change size while its delay fills and its clip's end flushes out; in tiles,
  the ones that change in a step are held twice until the step ends. On a GPU a
  step copies what it overwrites to host RAM, to re-run it after running out of
  memory; kept in host RAM instead (for 720p Wan 2.1 they are 4 GiB in bf16),
  only the tile at work has its extent on the device. Carries that grow with
  the clip (a causal attention's keys and values) are held once, for the whole
  frame, and counted at the clip's full length;
* one tile's activations at the finest stage, which dominate:
  ``LIVE_AT_FINEST`` tensors of the finest width over the step's pixel frames
  and the tile's pixels (the constant is fitted and checked in
  ``benchmarks/tiling_and_memory.py``; a model may hold more, untiled or in
  a tile: ``live_at_finest``, ``live_in_tiles``);
* the step's blended output in fp32, once, and the weights (not part of a budget);
* on the CPU, what a process's first run at a frame size adds: oneDNN builds
  kernels and scratch buffers for every new convolution shape (0-6 MiB
  over a second run of the same decode, more in tiles, whose edge tiles add
  shapes; ``benchmarks/plan_vs_engine.py``, decodes only). A host that
  decoded the size before holds them already; on a GPU the matching cost
  (cuDNN's workspaces) is not measured yet.

What a sink holds (a video encoder's look-ahead, the frames an in-memory sink keeps) is added by the plan
(:mod:`memory`).
"""

from __future__ import annotations

from dataclasses import dataclass

from .journal import peak_kept_cells
from .tiles import layout

LIVE_AT_FINEST = 6.0
KERNELS_ON_FIRST_USE = 4 * 2**20  # bytes, on the CPU (see the module docstring)


@dataclass(frozen=True, kw_only=True)
class Footprint:
    """All an estimate needs of a model, for one direction: its ratios and activation traits, and what it carries
    per latent pixel (bytes; :mod:`probe` measures them)."""

    spatial_ratio: int
    temporal_ratio: int
    itemsize: int  # bytes per value in the model's dtype
    finest_width: int  # channels per full-resolution pixel at the finest stage
    live_at_finest: float | None  # tensors of the finest width alive in a step (None: LIVE_AT_FINEST)
    live_in_tiles: float | None  # the same in a tile, where it differs (decoders)
    whole_frame_share: float  # the whole-frame stages' activations beyond latent resolution (decoders)
    delayed: bool  # a decoder that streams with a delay
    native_tile_px: int | None = None  # the model tiles its frames itself at this size (see traits.MemoryProfile)
    carries: int  # every fixed-size carry once (a delayed decoder: at its peak over the clip)
    tiled_carries: int  # the part the tiled stages carry
    in_tiles: int | None  # a delayed decoder in tiles: with the carries that change shape in a step held twice
    delayed_tiled: int | None  # a delayed decoder's tiled stages' carries
    growing: int  # what growing carries add per latent frame


@dataclass(frozen=True, kw_only=True)
class Request:
    """A step to estimate: frames of ``height`` x ``width`` px, ``per_step`` latent frames a step, ``length``
    latent frames in all (for carries that grow with the clip), in tiles of ``tile_px`` (None: the whole frame)
    overlapping by ``overlap_px``, the carries in host RAM or not, on a GPU or the CPU."""

    footprint: Footprint
    height: int
    width: int
    per_step: int
    tile_px: int | None = None
    overlap_px: int = 0
    offload_carries: bool = False
    length: int = 0
    on_gpu: bool = False
    decode: bool = True


@dataclass(frozen=True)
class Estimate:
    carries: int
    activations: int
    output: int
    growing: int = 0  # carries that grow with the clip (causal attention's keys and values), at its full length
    offloaded: int = 0  # host RAM beyond the device's total: offloaded carries, a step's backup
    writer: int = 0  # what a sink's video encoder holds
    kernels: int = 0  # the kernels' own buffers, built on first use
    kept: int = 0  # the frames an in-memory sink keeps (the result), in float32
    beside: bool = False  # the writer's and the kept frames are host RAM beside a GPU's work, not in its total
    arriving: int = 0  # a GPU decode's frames on their way out: two steps' worth in pinned host RAM (outbound.py)

    @property
    def total(self) -> int:
        sink = 0 if self.beside else self.writer + self.kept
        return self.carries + self.activations + self.output + self.growing + self.kernels + sink

    @property
    def host(self) -> int:
        """Host RAM the run holds beyond :attr:`total`."""
        return self.offloaded + self.arriving + (self.writer + self.kept if self.beside else 0)


def estimate(request: Request) -> Estimate:
    """Peak device bytes beyond the weights for the step ``request`` describes."""
    model, height, width = request.footprint, request.height, request.width
    r = model.spatial_ratio
    tile_px = request.tile_px
    tile_h, tile_w = (height, width) if tile_px is None else (min(tile_px, height), min(tile_px, width))
    cells = (height // r) * (width // r)
    tile = None if tile_px is None else max(1, tile_px // r)
    # an overlap too wide for the tile is the tiler's error to report, with advice
    overlap = 0 if tile is None else min(-(-request.overlap_px // r), tile - 1)
    tiles = layout(height // r, width // r, tile, overlap)
    if model.native_tile_px is not None:  # activations of one of the model's own tiles at a time
        tile_h, tile_w = min(model.native_tile_px, height), min(model.native_tile_px, width)
    held = model.carries * cells
    backup = held if request.on_gpu else 0  # what a step overwrites, copied to host RAM to undo it
    if not tiles.whole_frame and model.delayed:
        # a carry that changes shape in a step is written to a second copy, adopted when the step ends; the
        # others are overwritten in place, keeping aside what later tiles read
        held = model.in_tiles * cells + model.delayed_tiled * peak_kept_cells(tiles.windows)
    elif not tiles.whole_frame:  # tiles overwrite their carries in place, keeping aside what later tiles read
        held += model.tiled_carries * peak_kept_cells(tiles.windows)
    if request.offload_carries:  # on the device: the tile's extent, read in and written back
        carries, host = 2 * model.carries * (tile_h // r) * (tile_w // r), held + backup
    else:
        carries, host = held, backup
    # one copy, whole frame: a failed step rewrites its own slots; kept in RAM, a step still reads all of it
    growing = model.growing * cells * request.length
    frames = model.temporal_ratio * request.per_step
    if model.delayed:
        frames += 1  # a look-ahead conv lets out one frame more than a step feeds while the clip's end flushes
    live = LIVE_AT_FINEST if model.live_at_finest is None else model.live_at_finest
    in_a_tile = live if tiles.whole_frame or model.live_in_tiles is None else model.live_in_tiles
    activations = in_a_tile * model.finest_width * frames * tile_h * tile_w * model.itemsize
    if model.whole_frame_share:
        # the whole-frame stages peak before the tiles run, and their output stays while they do
        whole = model.whole_frame_share * model.finest_width * frames * height * width * model.itemsize
        activations = max(live * whole, activations + whole)
    # the step's blended frames in fp32, once: the engine lets go of a step's frames before the next step runs
    # (when it kept them, the CPU's peaks held two steps' worth, benchmarks/plan_vs_engine.py)
    output = 3 * frames * height * width * 4 if request.decode else 0
    kernels = 0 if request.on_gpu else KERNELS_ON_FIRST_USE
    return Estimate(carries, int(activations), output, growing, host, kernels=kernels)
