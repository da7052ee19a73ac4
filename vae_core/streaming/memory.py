"""How much memory a decode or encode needs, and the largest tile that fits a budget.

Peak memory of a streamed step is modelled in parts:

* the causal carries, for the whole frame, once (a step overwrites them in
  place, :mod:`journal`), plus the old values a tiled step keeps aside for its
  later tiles; measured once per model by streaming two latent frames through
  it on a small grid, since carries scale exactly with frame area. A delayed
  decoder's carries change size while its delay fills and its clip's end
  flushes out; in tiles, the ones that change in a step are held twice until
  the step ends (its probe streams a clip for the peaks). On a GPU a step
  copies what it overwrites to host RAM, to re-run it after running out of
  memory; kept in host RAM instead (for 720p Wan 2.1 they
  are 4 GiB in bf16), only the tile at work has its extent on the device.
  Carries that grow with the clip (a causal attention's keys and values) are
  held once, for the whole frame, and counted at the clip's full length;
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
  (cuDNN's workspaces) is not measured yet;
* for a decode written straight to a file, what the sink's encoder holds in
  RAM (its look-ahead; the sink's ``held_bytes``), which on a GPU is host RAM;
* for a decode kept in memory (no sink, a :class:`sinks.FrameSink`, a node's
  IMAGE output), every frame in float32 (the sink's ``kept_bytes``): the term
  that grows with the clip's length, in RAM (host RAM on a GPU). Tiles cannot
  shrink it: a budget it does not fit is refused with the advice to write a
  video file instead.

:func:`plan_decode` and :func:`plan_encode` decide everything a run will hold
before it starts (temporal windows, tiles, where carries live) from one
:class:`settings.Settings`; the engine runs that plan, and the nodes ask the
host for exactly the room it needs.
"""

from __future__ import annotations

import dataclasses
import math
import weakref
from dataclasses import dataclass
from typing import Callable, NamedTuple

import torch

from ..errors import FrameStreamError
from . import sinks, temporal
from .model import CausalVideoVAE
from .settings import Settings
from .journal import peak_kept_cells
from .state import StreamState
from .tiles import layout, spans

LIVE_AT_FINEST = 6.0
MIN_TILE_PX = 128
# the estimate lands within a few percent of measured peaks (benchmarks/tiling_and_memory.py, "plan");
# tiles are planned against this share of a budget so that the budget itself holds
PLANNED_SHARE = 0.9
KERNELS_ON_FIRST_USE = 4 * 2**20  # bytes, on the CPU (see the module docstring)


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

    @property
    def total(self) -> int:
        sink = 0 if self.beside else self.writer + self.kept
        return self.carries + self.activations + self.output + self.growing + self.kernels + sink

    @property
    def host(self) -> int:
        """Host RAM the run holds beyond :attr:`total`."""
        return self.offloaded + (self.writer + self.kept if self.beside else 0)


def carry_bytes_per_cell(vae: CausalVideoVAE, direction: str = "decode", length: int | None = None) -> int:
    """Bytes of fixed-size causal carry per latent pixel, in the model's dtype (probed once, cached on the model);
    for a delayed decoder, their peak over a clip of ``length`` latent frames (by default a long one)."""
    if direction == "decode" and vae.delayed_decoder:
        return delayed_carries_per_cell(vae, length).held
    return _probe(vae, direction)[0]


def growing_bytes_per_cell(vae: CausalVideoVAE, direction: str = "decode") -> int:
    """Bytes per latent pixel and latent frame that the growing carries add (:func:`state.growing_carry`)."""
    if direction == "decode" and vae.delayed_decoder:
        return 0
    return _probe(vae, direction)[1]


def tiled_carry_bytes_per_cell(vae: CausalVideoVAE, direction: str = "decode") -> int:
    """The part of :func:`carry_bytes_per_cell` that the tiled stages carry (not decode_shared / encode_shared):
    only those are overwritten tile by tile and keep old values aside for later tiles."""
    return _probe(vae, direction)[2]


_PROBES: "weakref.WeakKeyDictionary[CausalVideoVAE, dict]" = weakref.WeakKeyDictionary()


def _probes(vae: CausalVideoVAE) -> dict:
    """What was probed of ``vae``, kept here (not on the model) while the model lives, per streaming mode: a model
    that switches how its decoder streams (LTX-2's causal or delayed decoder) is probed again."""
    return _PROBES.setdefault(vae, {}).setdefault((vae.causal_decoder, vae.delayed_decoder), {})


@torch.no_grad()
def _probe(vae: CausalVideoVAE, direction: str) -> tuple[int, int, int]:
    """Streams two latent frames through the model on a 2x2 grid (a GroupNorm with one channel per group cannot
    normalise a single pixel) and reads its carries: they scale exactly with frame area."""
    cache = _probes(vae)
    if direction == "decode" and not vae.causal_decoder:
        cache[direction] = (0, 0, 0)  # decoded in independent windows: nothing is carried
    if direction not in cache:
        state = StreamState(expected_frames=2)
        device, dtype = vae.weight_device, vae.weight_dtype
        r, s = vae.temporal_ratio, vae.spatial_ratio
        grown = []  # growing bytes after each step: the second step's growth is every later step's (the first
        #            latent frame stands for fewer frames at some levels, e.g. Mochi's encoder)
        whole_frame = set()  # the layers of the stages that run on the whole frame, untiled
        with state.active():
            for frames in (1, r):
                if direction == "decode":
                    features = vae.decode_shared(torch.zeros(1, vae.latent_channels, 1, 2, 2, device=device, dtype=dtype))
                    whole_frame |= state.written()
                    vae.decode_tile(features)
                else:
                    features = vae.encode_tile(torch.zeros(1, 3, frames, 2 * s, 2 * s, device=device, dtype=dtype))
                    tiled = state.written()
                    vae.encode_shared(features)
                    whole_frame |= state.written() - tiled
                state.commit()
                grown.append(state.growing_bytes())
        total = state.carry_bytes()
        cache[direction] = (total // 4, (grown[1] - grown[0]) // 4, (total - state.carry_bytes(whole_frame)) // 4)
    return cache[direction]


class DelayedCarries(NamedTuple):
    """A delayed decoder's carry bytes per latent pixel at their peak over a clip (:func:`delayed_carries_per_cell`)."""

    held: int  # untiled: every carry once
    in_tiles: int  # in tiles: a tiled stage's carry that changes shape in a step is held twice until it commits
    tiled: int  # the carries of the stages run in tiles (not decode_shared), overwritten tile by tile


@torch.no_grad()
def delayed_carries_per_cell(vae: CausalVideoVAE, length: int | None = None) -> DelayedCarries:
    """A delayed decoder's carries fill as frames reach deeper layers and peak while the clip's end flushes
    out; a clip shorter than the delay never fills them all. Streams a clip of ``length`` latent frames (at
    most two beyond the delay: longer ones peak alike) one a step on a 2x2 grid, and keeps the peaks."""
    longest = math.ceil(vae.decoder_delay) + 2
    length = longest if length is None else min(length, longest)
    cache = _probes(vae)
    if ("delayed", length) not in cache:
        state = StreamState(pace=(1, vae.temporal_ratio))
        z = torch.zeros(1, vae.latent_channels, 1, 2, 2, device=vae.weight_device, dtype=vae.weight_dtype)
        made, peaks, whole_frame = 0, DelayedCarries(0, 0, 0), set()
        with state.active():
            for step in range(length + 4 * longest):
                before = state.carry_shapes()
                state.ending = step >= length - 1
                features = vae.decode_shared(z if step < length else z[:, :, :0])
                whole_frame |= state.written()
                made += vae.decode_tile(features).shape[2]
                state.commit()
                # the tiled stages' carries that changed shape (whole-frame stages replace theirs at once)
                resized = sum(size for key, (shape, size) in state.carry_shapes().items()
                              if key[0] not in whole_frame and (key not in before or before[key][0] != shape))
                held = state.carry_bytes()
                step_peaks = (held, sum(size for _, size in before.values()) + resized,
                              held - state.carry_bytes(whole_frame))
                peaks = DelayedCarries(*map(max, peaks, step_peaks))
                if made >= vae.decoded_frames(length):
                    break
        cache["delayed", length] = DelayedCarries(*(peak // 4 for peak in peaks))
    return cache["delayed", length]


def estimate(vae: CausalVideoVAE, height: int, width: int, per_step: int, tile_px: int | None,
             direction: str = "decode", offload_carries: bool = False, length: int = 0,
             device: torch.device | None = None, overlap_px: int = 0) -> Estimate:
    """Peak device bytes beyond the weights for frames of ``height`` x ``width`` px, ``per_step`` latent frames a
    step, ``length`` latent frames in all (for carries that grow with the clip), on ``device`` (the weights'),
    in tiles of ``tile_px`` overlapping by ``overlap_px``."""
    r = vae.spatial_ratio
    itemsize = vae.weight_dtype.itemsize
    device = device or vae.weight_device
    tile_h, tile_w = (height, width) if tile_px is None else (min(tile_px, height), min(tile_px, width))
    cells = (height // r) * (width // r)
    per_cell = carry_bytes_per_cell(vae, direction, length or None)
    tile = None if tile_px is None else max(1, tile_px // r)
    # an overlap too wide for the tile is the tiler's error to report, with advice
    overlap = 0 if tile is None else min(-(-overlap_px // r), tile - 1)
    tiles = layout(height // r, width // r, tile, overlap)
    held = per_cell * cells
    backup = held if device.type != "cpu" else 0  # what a step overwrites, copied to host RAM to undo it
    if not tiles.whole_frame and direction == "decode" and vae.delayed_decoder:
        # a carry that changes shape in a step is written to a second copy, adopted when the step ends; the
        # others are overwritten in place, keeping aside what later tiles read
        delayed = delayed_carries_per_cell(vae, length or None)
        held = delayed.in_tiles * cells + delayed.tiled * peak_kept_cells(tiles.windows)
    elif not tiles.whole_frame:  # tiles overwrite their carries in place, keeping aside what later tiles read
        held += tiled_carry_bytes_per_cell(vae, direction) * peak_kept_cells(tiles.windows)
    if offload_carries:  # on the device: the tile's extent, read in and written back
        carries, host = 2 * per_cell * (tile_h // r) * (tile_w // r), held + backup
    else:
        carries, host = held, backup
    # one copy, whole frame: a failed step rewrites its own slots; kept in RAM, a step still reads all of it
    growing = growing_bytes_per_cell(vae, direction) * cells * length
    frames = vae.temporal_ratio * per_step
    if direction == "decode" and vae.delayed_decoder:
        frames += 1  # a look-ahead conv lets out one frame more than a step feeds while the clip's end flushes
    width_at_finest = vae.finest_width if direction == "decode" else vae.encoder_finest_width
    live = LIVE_AT_FINEST if vae.live_at_finest is None else vae.live_at_finest
    in_a_tile = live if tiles.whole_frame or vae.live_in_tiles is None or direction != "decode" else vae.live_in_tiles
    activations = in_a_tile * width_at_finest * frames * tile_h * tile_w * itemsize
    if direction == "decode" and vae.whole_frame_share:
        # the whole-frame stages peak before the tiles run, and their output stays while they do
        whole = vae.whole_frame_share * width_at_finest * frames * height * width * itemsize
        activations = max(live * whole, activations + whole)
    activations = int(activations)
    # the step's blended frames in fp32, once: the engine lets go of a step's frames before the next step runs
    # (when it kept them, the CPU's peaks held two steps' worth, benchmarks/plan_vs_engine.py)
    output = 3 * frames * height * width * 4 if direction == "decode" else 0
    kernels = KERNELS_ON_FIRST_USE if device.type == "cpu" else 0
    return Estimate(carries, activations, output, growing, host, kernels=kernels)


@dataclass(frozen=True)
class Plan:
    tile_px: int | None  # None: the whole frame
    offload_carries: bool  # keep the causal carries in host RAM


def plan(vae: CausalVideoVAE, height: int, width: int, per_step: int, overlap_px: int, budget: int | None,
         direction: str = "decode", device: torch.device | None = None, length: int = 0, reserved: int = 0) -> Plan:
    """The cheapest way to fit ``budget`` (by default the free memory): the whole frame, else the largest tiles,
    else, on a GPU, the same with the carries in host RAM (moving them costs transfers every step).

    When nothing fits, the smallest tiles (with carries in RAM on a GPU); the
    engine then still reacts to running out of memory. ``device`` is where the
    work runs (the weights' device by default); ``reserved`` bytes of the
    budget are taken by something else (a video encoder on the CPU).
    """
    device = vae.weight_device if device is None else device
    budget = PLANNED_SHARE * (free_bytes(device) if budget is None else budget) - reserved
    r = vae.spatial_ratio
    smallest = max(MIN_TILE_PX, 2 * math.ceil(overlap_px / r) * r + r)
    placements = (False, True) if device.type != "cpu" else (False,)
    for offload in placements:
        if estimate(vae, height, width, per_step, None, direction, offload, length, device, overlap_px).total <= budget:
            return Plan(None, offload)
        tile = max(height, width) // r * r
        while tile >= smallest:
            if estimate(vae, height, width, per_step, tile, direction, offload, length, device, overlap_px).total \
                    <= budget:
                return Plan(tile, offload)
            tile -= r
    return Plan(smallest, placements[-1])


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

    def describe(self, spatial_ratio: int) -> str:
        """One line: steps (or temporal windows), tiles, where carries live, the estimated peak, the output."""
        height, width = self.frame
        tile, r = self.tiles.tile_px, spatial_ratio
        if tile is None or tile >= max(height, width):
            tiles = "the whole frame"
        else:
            rows, cols = (len(spans(side // r, tile // r, -(-self.overlap_px // r))) for side in (height, width))
            tiles = f"{rows}x{cols} tiles of {tile} px"
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
        """This plan, or one error when even the smallest tiles cannot keep a user's budget (``tile="auto"`` with
        ``budget``), naming the smallest budget that works. Call it only with a budget the user gave: against what
        is free, the engine does its best and reacts to running out of memory."""
        budget = settings.budget if settings.tile == "auto" else None
        if budget is not None and self.estimate.total > PLANNED_SHARE * budget:
            smallest = math.ceil(self.estimate.total / PLANNED_SHARE / 2**30 * 100) / 100
            kept = self.estimate.kept
            advice = f"; or write to a video file, which keeps no frames (these keep {kept / 2**30:.2f} GB)" \
                if kept > PLANNED_SHARE * budget / 2 else ""
            raise FrameStreamError(f"a memory budget of {budget / 2**30:.3g} GB is too small for this {self.direction} "
                                   f"of {self.frame[1]}x{self.frame[0]} px: even tiles of {self.tiles.tile_px} px need "
                                   f"{smallest:.2f} GB; give at least that{advice}")
        return self


def _tiles(vae: CausalVideoVAE, height: int, width: int, per_step: int, settings: Settings, direction: str,
           device: torch.device | None, length: int, reserved: int = 0) -> Plan:
    offload = settings.carries is not None and torch.device(settings.carries).type == "cpu" \
        and vae.weight_device.type != "cpu"
    if not settings.tiled:
        return Plan(None, offload)
    r = vae.spatial_ratio
    if settings.tile != "auto" and settings.tile < r:
        raise FrameStreamError(f"tile size must be at least {r} px for the {vae.family}, got {settings.tile}")
    if settings.tile == "auto":
        return plan(vae, height, width, per_step, settings.overlap, settings.budget, direction, device, length,
                    reserved)
    return Plan(settings.tile, offload)


def plan_decode(vae: CausalVideoVAE, latent_shape: tuple[int, ...], settings: Settings,
                device: torch.device | None = None, sink: object | None = None) -> WorkPlan:
    """The plan for decoding a ``[B, C, T, h, w]`` latent into ``sink`` (a video file's counts its encoder)."""
    length, h, w = latent_shape[-3:]
    r = vae.spatial_ratio
    windows = temporal.windows(vae, length, settings.frames_per_step)
    per_step = max(window.stop - window.start for window in windows)  # a non-causal decoder's windows are wider
    videos = latent_shape[0] if len(latent_shape) == 5 else 1
    output = (videos * vae.decoded_frames(length), h * r, w * r, 3)
    sink = sinks.FrameSink() if sink is None else sink  # what decode() writes into when given no sink
    writer = sinks.held_bytes(sink, h * r, w * r, output[0])
    kept = sinks.kept_bytes(sink, h * r, w * r, output[0])
    on_cpu = (device or vae.weight_device).type == "cpu"  # else the encoder's and the kept frames are in host RAM
    tiles = _tiles(vae, h * r, w * r, per_step, settings, "decode", device, length,
                   writer + kept if on_cpu else 0)
    need = estimate(vae, h * r, w * r, per_step, tiles.tile_px, "decode", tiles.offload_carries, length, device,
                    settings.overlap)
    need = dataclasses.replace(need, writer=writer, kept=kept, beside=not on_cpu)
    return WorkPlan("decode", (h * r, w * r), windows, per_step, tiles, settings.overlap, need, output)


def plan_encode(vae: CausalVideoVAE, frames: int, height: int, width: int, settings: Settings,
                device: torch.device | None = None) -> WorkPlan:
    """The plan for encoding ``frames`` frames of ``height`` x ``width`` pixels (already whole latent pixels)."""
    steps = vae.encode_steps(vae.pixel_frames(vae.latent_frames(frames)), settings.latents_per_step)
    per_step = settings.latents_per_step
    length = vae.latent_frames(frames)
    tiles = _tiles(vae, height, width, per_step, settings, "encode", device, length)
    need = estimate(vae, height, width, per_step, tiles.tile_px, "encode", tiles.offload_carries, length, device,
                    settings.overlap)
    output = (1, vae.latent_channels, length, height // vae.spatial_ratio, width // vae.spatial_ratio)
    return WorkPlan("encode", (height, width), steps, per_step, tiles, settings.overlap, need, output)


def room_to_ask(work: "Callable[[Settings], WorkPlan]", settings: Settings) -> int:
    """What to ask the host to free before a run: the planned peak, or with ``tile="auto"`` the untiled peak
    (the most the run can use; it then plans its tiles against whatever the host could free)."""
    return work(settings.replace(tile=None) if settings.tile == "auto" else settings).estimate.total
