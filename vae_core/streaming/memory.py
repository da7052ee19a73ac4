"""A run's plan: its steps, tiles and where its carries live, the peak it will reach, the largest tile that fits.

:func:`plan_decode` and :func:`plan_encode` decide everything a run will hold before it starts (temporal
windows, tiles, where carries live) from one :class:`settings.Settings`; the engine runs that plan, and the
nodes ask the host for exactly the room it needs. A step's own memory is :mod:`estimate`'s (over the model's
:mod:`probe`); the plan adds what the sink holds:

* for a decode written straight to a file, what the sink's encoder holds in
  RAM (its look-ahead; the sink's ``held_bytes``), which on a GPU is host RAM;
* for a decode kept in memory (no sink, a :class:`sinks.FrameSink`, a node's
  IMAGE output), every frame in float32 (the sink's ``kept_bytes``): the term
  that grows with the clip's length, in RAM (host RAM on a GPU). Tiles cannot
  shrink it: a budget it does not fit is refused with the advice to write a
  video file instead.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable

import torch

from ..errors import FrameStreamError
from . import sinks, step_size, temporal
from .estimate import Estimate, Request, estimate
from .model import CausalVideoVAE
from .probe import footprint
from .settings import Settings
from .tiles import spans

MIN_TILE_PX = 128
# the smallest tile, in latent cells, a plan narrows the overlap for when nothing larger fits a budget
SMALLEST_TILE_CELLS = 4
# the estimate lands within a few percent of measured peaks (benchmarks/tiling_and_memory.py, "plan");
# tiles are planned against this share of a budget so that the budget itself holds
PLANNED_SHARE = 0.9


def request_for(vae: CausalVideoVAE, direction: str, *, height: int, width: int, per_step: int, length: int = 0,
                device: torch.device | None = None, **step) -> Request:
    """The :class:`estimate.Request` for a step of ``vae`` (measuring its carries the first time); ``step``:
    ``tile_px``, ``overlap_px``, ``offload_carries``."""
    device = vae.weight_device if device is None else device
    return Request(footprint=footprint(vae, direction, length or None), height=height, width=width,
                   per_step=per_step, length=length, on_gpu=device.type != "cpu", decode=direction == "decode",
                   **step)


@dataclass(frozen=True)
class Plan:
    tile_px: int | None  # None: the whole frame
    offload_carries: bool  # keep the causal carries in host RAM
    overlap_px: int | None = None  # narrowed to fit tiles smaller than the overlap asked allows; None: as asked

    def overlap(self, asked: int) -> int:
        """The overlap the tiles run with: the narrowed one, or the one ``asked``."""
        return asked if self.overlap_px is None else self.overlap_px


def check_tile(vae: CausalVideoVAE, tile_px: int | None) -> None:
    """One error for a tile size the model cannot take: smaller than one latent pixel, or any for a model that
    tiles its frames itself."""
    native = vae.memory_profile.native_tile_px
    if tile_px is not None and native is not None:
        raise FrameStreamError(f"the {vae.family} tiles its frames itself ({native} px tiles, as released: its "
                               f"frames are those tiles blended), so a tile size of {tile_px} px does not apply; "
                               "leave tiles on 'auto'")
    if tile_px is not None and tile_px < vae.spatial_ratio:
        raise FrameStreamError(f"tile size must be at least {vae.spatial_ratio} px for the {vae.family}, got {tile_px}")


def tiles_for(request: Request, budget: float) -> Plan:
    """The cheapest way to fit ``budget`` bytes: the whole frame, else the largest tiles, else, on a GPU, the same
    with the carries in host RAM (moving them costs transfers every step), else tiles smaller than the overlap
    asked allows, overlapping by a quarter of their size (as a tile given alone is). When nothing fits, the
    smallest of those (with carries in RAM on a GPU); the engine then still reacts to running out of memory."""
    r = request.footprint.spatial_ratio
    smallest = max(MIN_TILE_PX, 2 * math.ceil(request.overlap_px / r) * r + r)
    placements = (False, True) if request.on_gpu else (False,)
    largest = max(request.height, request.width) // r * r
    for offload in placements:
        for tile in [None, *range(largest, smallest - 1, -r)]:
            tried = dataclasses.replace(request, tile_px=tile, offload_carries=offload)
            if estimate(tried).total <= budget:
                return Plan(tile, offload)
    narrower = [(tile, min(request.overlap_px, tile // 4 // r * r))
                for tile in range(min(smallest, largest) - r, SMALLEST_TILE_CELLS * r - 1, -r)]
    for tile, overlap in narrower:
        tried = dataclasses.replace(request, tile_px=tile, overlap_px=overlap, offload_carries=placements[-1])
        if estimate(tried).total <= budget:
            return Plan(tile, placements[-1], overlap)
    if narrower:
        tile, overlap = narrower[-1]
        return Plan(tile, placements[-1], overlap)
    return Plan(smallest, placements[-1])


def plan(vae: CausalVideoVAE, height: int, width: int, per_step: int, overlap_px: int, budget: int | None,
         direction: str = "decode", device: torch.device | None = None, length: int = 0, reserved: int = 0) -> Plan:
    """:func:`tiles_for` a step of ``vae`` and ``budget`` bytes (by default the free memory of ``device``, the
    weights' by default), of which ``reserved`` are taken by something else (a video encoder on the CPU)."""
    device = vae.weight_device if device is None else device
    budget = PLANNED_SHARE * (free_bytes(device) if budget is None else budget) - reserved
    request = request_for(vae, direction, height=height, width=width, per_step=per_step, length=length,
                          device=device, overlap_px=overlap_px)
    return tiles_for(request, budget)


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


@dataclass(frozen=True)
class WorkPlan:
    """A decode's or encode's plan: its steps, its tiles and carries, and the peak it will reach."""

    direction: str
    frame: tuple[int, int]  # pixels
    steps: list  # decode: temporal.TemporalWindow per step; encode: pixel spans [start, stop)
    per_step: int  # latent frames of the widest step (a window with its halos included)
    tiles: Plan
    overlap_px: int
    estimate: Estimate
    output: tuple[int, ...] = ()  # decode: (frames, height, width, 3); encode: the latent's shape
    advance: int = 1  # latent frames a causal step decodes, or an encode step makes after the first

    @property
    def one_piece(self) -> bool:
        """One step on the whole frame: a clip-wide GroupNorm sees the whole clip at once, with no gathering pass."""
        return len(self.steps) == 1 and (self.tiles.tile_px is None or self.tiles.tile_px >= max(self.frame))

    def describe(self, spatial_ratio: int) -> str:
        """One line: steps (or temporal windows), tiles, where carries live, the estimated peak, the output."""
        height, width = self.frame
        tile, r = self.tiles.tile_px, spatial_ratio
        if tile is None or tile >= max(height, width):
            tiles = "the whole frame"
        else:
            rows, cols = (len(spans(side // r, tile // r, -(-self.overlap_px // r))) for side in (height, width))
            tiles = f"{rows}x{cols} tiles of {tile} px overlapping by {self.overlap_px} px"
        carries = f", carries in host RAM ({self.estimate.offloaded / 2**30:.1f} GiB)" \
            if self.tiles.offload_carries else ""
        if self.estimate.growing:
            carries += f", attention carry {self.estimate.growing / 2**20:.0f} MiB at the end"
        output = f" -> {'x'.join(map(str, self.output))}" if self.output else ""
        return (f"{self.direction} {width}x{height}: {self._steps()}, {tiles}{carries}, estimated peak "
                f"{self.estimate.total / 2**20:.0f} MiB beyond the weights{self._sink()}{output}")

    def _sink(self) -> str:
        """What the sink holds: part of the peak on the CPU, host RAM beside a GPU's peak."""
        estimate = self.estimate
        size, holder = (estimate.writer, "the video encoder") if estimate.writer else (estimate.kept, "the frames kept")
        if not size:
            return ""
        mib = f"{size / 2**20:.0f} MiB"
        return f", and {mib} of host RAM for {holder}" if estimate.beside else f" ({holder}: {mib} included)"

    def _steps(self) -> str:
        halos = [max(w.core[0] - w.start, w.stop - w.core[1]) for w in self.steps if hasattr(w, "core")]
        if any(halos):
            cores = max(w.core[1] - w.core[0] for w in self.steps)
            return (f"{len(self.steps)} temporal windows of up to {cores} latent frames with a halo of "
                    f"{max(halos)} each side")
        flushing = sum(1 for w in self.steps if getattr(w, "streamed", False) and w.start == w.stop)
        flush = f" and about {flushing} to flush the decoder's look-ahead" if flushing else ""
        return f"{len(self.steps) - flushing} steps of up to {self.per_step} latent frames{flush}"

    def check_budget(self, settings: Settings) -> "WorkPlan":
        """This plan, or one error when it cannot keep a user's budget: even the smallest tiles with
        ``tile="auto"``, or the whole frame or tiles the user fixed, naming the smallest budget that works. Call
        it only with a budget the user gave: against what is free, the engine does its best and reacts to running
        out of memory."""
        budget = settings.budget
        if budget is None or self.estimate.total <= PLANNED_SHARE * budget:
            return self
        smallest = math.ceil(self.estimate.total / PLANNED_SHARE / 2**30 * 100) / 100
        kept = self.estimate.kept
        advice = f"; or write to a video file, which keeps no frames (these keep {kept / 2**30:.2f} GB)" \
            if kept > PLANNED_SHARE * budget / 2 else ""
        given = f"a memory budget of {budget / 2**30:.3g} GB is too small for this {self.direction} of " \
            f"{self.frame[1]}x{self.frame[0]} px"
        if settings.tile == "auto":
            raise FrameStreamError(f"{given}: even tiles of {self.tiles.tile_px} px need {smallest:.2f} GB; give at "
                                   f"least that{advice}")
        asked = f"tiles of {settings.tile} px" if settings.tiled else "the whole frame (no tiles)"
        raise FrameStreamError(f"{given}: {asked} need {smallest:.2f} GB; give at least that, or let tiles be "
                               f"chosen to fit (tile 'auto'){advice}")


def _tiles(vae: CausalVideoVAE, height: int, width: int, per_step: int, settings: Settings, direction: str,
           device: torch.device | None, length: int, reserved: int = 0) -> Plan:
    offload = settings.carries is not None and torch.device(settings.carries).type == "cpu" \
        and vae.weight_device.type != "cpu"
    if not settings.tiled:
        return Plan(None, offload)
    if vae.memory_profile.native_tile_px is not None and settings.tile == "auto":
        return Plan(None, offload)
    if settings.tile == "auto":
        return plan(vae, height, width, per_step, settings.overlap, settings.budget, direction, device, length,
                    reserved)
    check_tile(vae, settings.tile)
    return Plan(settings.tile, offload)


def _per_step(vae: CausalVideoVAE, direction: str, settings: Settings, length: int, height: int, width: int,
              device: torch.device | None, reserved: int = 0) -> int:
    """Latent frames per step: the settings' own, or sized from the frame (:mod:`step_size`) within the budget:
    the whole clip for a clip-wide GroupNorm where it fits ``WHOLE_CLIP_SHARE`` of it, else as many as fit."""
    asked = settings.frames_per_step if direction == "decode" else settings.latents_per_step
    if asked is not None:
        return asked
    if direction == "decode" and not vae.streaming.one_stream:
        return 1  # temporal windows: their width is the model's
    per_step = step_size.sized_from_frame(vae, direction, length, height, width)
    clip_wide = vae.norms.of(direction) == "clip" and per_step < length
    if per_step == 1 and not clip_wide:
        return 1
    device = vae.weight_device if device is None else device
    budget = PLANNED_SHARE * (free_bytes(device) if settings.budget is None else settings.budget) - reserved
    tile = settings.tile if not isinstance(settings.tile, str) else None

    def needs(frames: int) -> int:
        return estimate(request_for(vae, direction, height=height, width=width, per_step=frames, length=length,
                                    device=device, tile_px=tile, overlap_px=settings.overlap)).total

    if clip_wide and needs(length) <= step_size.WHOLE_CLIP_SHARE * budget:
        return length
    while per_step > 1 and needs(per_step) > budget:
        per_step //= 2
    return per_step


def plan_decode(vae: CausalVideoVAE, latent_shape: tuple[int, ...], settings: Settings,
                device: torch.device | None = None, sink: object | None = None, *, whole: bool = True) -> WorkPlan:
    """The plan for decoding a ``[B, C, T, h, w]`` latent into ``sink`` (a video file's counts its encoder).
    ``whole=False``: the latent is the first piece of a stream whose length is not known yet."""
    length, h, w = latent_shape[-3:]
    if whole:
        vae.check_length(length)
    r = vae.spatial_ratio
    videos = latent_shape[0] if len(latent_shape) == 5 else 1
    output = (videos * vae.decoded_frames(length), h * r, w * r, 3)
    sink = sinks.FrameSink() if sink is None else sink  # what decode() writes into when given no sink
    writer = sinks.held_bytes(sink, h * r, w * r, output[0])
    kept = sinks.kept_bytes(sink, h * r, w * r, output[0])
    on_cpu = (device or vae.weight_device).type == "cpu"  # else the encoder's and the kept frames are in host RAM
    advance = _per_step(vae, "decode", settings, length, h * r, w * r, device, writer + kept if on_cpu else 0)
    windows = temporal.windows(vae, length, advance)
    per_step = max(window.stop - window.start for window in windows)  # a non-causal decoder's windows are wider
    tiles = _tiles(vae, h * r, w * r, per_step, settings, "decode", device, length,
                   writer + kept if on_cpu else 0)
    overlap = tiles.overlap(settings.overlap)
    need = estimate(request_for(vae, "decode", height=h * r, width=w * r, per_step=per_step, length=length,
                                device=device, tile_px=tiles.tile_px, overlap_px=overlap,
                                offload_carries=tiles.offload_carries))
    arriving = 0 if on_cpu else 2 * need.output  # a step's frames on their way out, beside the last (outbound.py)
    need = dataclasses.replace(need, writer=writer, kept=kept, beside=not on_cpu, arriving=arriving)
    return WorkPlan("decode", (h * r, w * r), windows, per_step, tiles, overlap, need, output, advance)


def plan_encode(vae: CausalVideoVAE, frames: int, height: int, width: int, settings: Settings,
                device: torch.device | None = None) -> WorkPlan:
    """The plan for encoding ``frames`` frames of ``height`` x ``width`` pixels (already whole latent pixels)."""
    length = vae.latent_frames(frames)
    advance = _per_step(vae, "encode", settings, length, height, width, device)
    steps = vae.encode_steps(vae.pixel_frames(length), advance)
    if vae.norms.of("encode") == "clip" and len(steps) == 2 and settings.latents_per_step is None:
        steps = [(0, steps[-1][1])]  # the whole clip in one step: its own GroupNorm statistics are the clip's
    # latent frames of the widest step: a model may cut its clip its own way (a release's fixed clips)
    per_step = max([advance] + [-(-(stop - start) // vae.temporal_ratio) for start, stop in steps])
    tiles = _tiles(vae, height, width, per_step, settings, "encode", device, length)
    overlap = tiles.overlap(settings.overlap)
    need = estimate(request_for(vae, "encode", height=height, width=width, per_step=per_step, length=length,
                                device=device, tile_px=tiles.tile_px, overlap_px=overlap,
                                offload_carries=tiles.offload_carries))
    output = (1, vae.latent_channels, length, height // vae.spatial_ratio, width // vae.spatial_ratio)
    return WorkPlan("encode", (height, width), steps, per_step, tiles, overlap, need, output, advance)


def room_to_ask(work: "Callable[[Settings], WorkPlan]", settings: Settings) -> int:
    """What to ask the host to free before a run: the planned peak, or with ``tile="auto"`` the untiled peak
    (the most the run can use; it then plans its tiles against whatever the host could free)."""
    return work(settings.replace(tile=None) if settings.tile == "auto" else settings).estimate.total
