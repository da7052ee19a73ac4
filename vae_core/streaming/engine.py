"""The one streaming loop every model runs through.

Time comes first: each step advances the whole frame by ``frames_per_step``
latent frames (decode) or one, then ``4 * latents_per_step`` pixel frames
(encode), running the high-resolution part of the model tile by tile and the
latent-resolution part on the whole frame. Finished frames leave in order and
go straight to a sink (a tensor, a video file, a callback), so memory holds the
model, the causal carries, one tile's activations and whatever the sink keeps,
never a growing concatenation.

A step that runs out of memory is dropped (the carries from before it are
intact, see :mod:`stream`) and re-run with smaller tiles: no work is lost.
Decoders that look ahead in time cannot stream; they run in temporal windows
with a halo of context (:mod:`temporal`).
"""

from __future__ import annotations

import functools
import itertools
import warnings
from typing import Callable, Iterable, Iterator

import torch

from . import group_norm, memory, temporal
from ..errors import FrameStreamError
from .inputs import check_frames, check_latent
from .model import CausalVideoVAE
from .runtime import OUT_OF_MEMORY, release_cached_memory
from .sinks import FrameSink, LatentSink, Sink
from .state import StreamState
from .tiles import DEFAULT_OVERLAP_PX, Layout, blend_weights, layout

DEFAULT_FRAMES_PER_STEP = 1
DEFAULT_LATENTS_PER_STEP = 1

# progress(done, total, preview) is called before the first and after every step; preview is the newest
# decoded frame [H, W, 3] (or None); it may raise to stop the run
Progress = Callable[..., None]
# on_retry(message) hears about a step re-run with smaller tiles after running out of memory
Retry = Callable[[str], None]


def _quiet(*args) -> None:
    pass


class Tiler:
    """Runs one step's high-resolution part tile by tile and blends the tiles, shrinking them after an OOM."""

    def __init__(self, vae: CausalVideoVAE, grid: tuple[int, int], plan: memory.Plan, overlap_px: int,
                 on_retry: Retry, cache_device: torch.device | str | None = None) -> None:
        tile_px, r = plan.tile_px, vae.spatial_ratio
        if overlap_px < 0:
            raise FrameStreamError(f"tile overlap must be 0 or more pixels, got {overlap_px}")
        if tile_px is not None and tile_px < r:
            raise FrameStreamError(f"tile size must be at least {r} px for the {vae.family}, got {tile_px}")
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

    @property
    def may_offload(self) -> bool:
        """Whether running out of memory may still move the carries to host RAM."""
        return self.on_gpu and self.cache_device is None

    def new_state(self) -> StreamState:
        return StreamState(self.cache_device)

    def shrink(self) -> bool:
        """Halves the tiles (never below overlap + 1 cells); False when they cannot get smaller."""
        current, overlap = max(self.layout.tile), self.layout.overlap
        smaller = max(current // 2, overlap + 1)
        if smaller >= current:
            return False
        self.layout = layout(*self.grid, smaller, overlap)
        self._sums.clear()
        return True

    def tile_px(self, r: int) -> str:
        return "whole frame" if self.layout.whole_frame else f"{self.layout.tile[0] * r}x{self.layout.tile[1] * r} px tiles"

    def run(self, state: StreamState, fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
            in_scale: int, out_scale: int) -> torch.Tensor:
        """``fn`` over every tile of ``x`` (``in_scale`` px per grid cell), blended at ``out_scale``, in fp32."""
        tiles: Layout = self.layout
        if tiles.whole_frame:
            return fn(x).float()
        out = None
        for window in tiles.windows:
            with state.tile(window):
                y = fn(x[(..., *window.region(in_scale, window.box))])
            weights = blend_weights(window, tiles.windows, out_scale).to(y.device)
            if out is None:
                out = y.new_zeros(*y.shape[:3], self.grid[0] * out_scale, self.grid[1] * out_scale, dtype=torch.float32)
            out[(..., *window.region(out_scale, window.box))].addcmul_(y.float(), weights)
            del y
        return out.div_(self._weight_sum(out_scale, out.device))

    def _weight_sum(self, scale: int, device: torch.device) -> torch.Tensor:
        if scale not in self._sums:
            total = torch.zeros(self.grid[0] * scale, self.grid[1] * scale)
            for window in self.layout.windows:
                total[window.region(scale, window.box)] += blend_weights(window, self.layout.windows, scale)
            self._sums[scale] = total
        return self._sums[scale].to(device)

    def step(self, state: StreamState, run: Callable[[], torch.Tensor], describe: str) -> torch.Tensor:
        """``run()`` once, committing its carries; after an out-of-memory, again with smaller tiles."""
        while True:
            try:
                result = run()
            except OUT_OF_MEMORY:
                state.rollback()
                failed = self.tile_px(1)
                if self.shrink():
                    change = f"smaller tiles ({failed} -> {self.layout.tile} latent px)"
                elif self.may_offload:
                    self.cache_device = torch.device("cpu")
                    state.offload(self.cache_device)
                    change = "the causal carries moved to host RAM"
                else:
                    raise
            else:
                state.commit()
                return result
            release_cached_memory()  # outside the except block: the traceback no longer pins the step's tensors
            self.on_retry(f"out of memory in {describe}; retrying it with {change}")


def _plan(vae: CausalVideoVAE, tile, overlap: int, height: int, width: int, per_step: int,
          budget: int | None) -> memory.Plan:
    if tile is None or tile == "none":
        return memory.Plan(None, False)
    if tile == "auto":
        return memory.plan(vae, height, width, per_step, overlap, budget)
    if isinstance(tile, int) and not isinstance(tile, bool):
        return memory.Plan(tile, False)
    raise FrameStreamError(f"tile must be 'auto', 'none' or a size in pixels, got {tile!r}")


def _finish(sink: Sink, run: Callable[[], None]):
    """Runs the loop; on any failure or interrupt the sink drops what it wrote (a partial file)."""
    try:
        run()
    except BaseException:
        abort = getattr(sink, "abort", None)
        if abort is not None:
            abort()
        raise
    return sink.result()


def _with_step_statistics(vae: CausalVideoVAE, tiler: Tiler, state: StreamState, run: Callable[[], torch.Tensor]):
    """``run()`` for one step. A model whose GroupNorms take statistics per step (CogVideoX) gets them from
    all tiles of the step, gathered in a first run whose carries are dropped; untiled it needs none."""
    if vae.norm_statistics != "chunk" or tiler.layout.whole_frame:
        return run()
    state.pooling = group_norm.Pooling(per_step=True)
    run()
    state.pooling = group_norm.frozen_after(state, per_step=True)
    state.rollback()
    try:
        return run()
    finally:
        state.pooling = None


def _discard(*args) -> None:
    pass


def _gathering_passes(vae: CausalVideoVAE, passes: int) -> range | None:
    """The statistics-gathering passes before the one that writes, or None for norms that need none."""
    if vae.norm_statistics != "clip":
        return None
    if not isinstance(passes, int) or passes < 0:
        raise FrameStreamError(f"statistics_passes must be 0 or more, got {passes!r}")
    return range(passes)


def _to_frames(pixels: torch.Tensor) -> torch.Tensor:
    """``[1, 3, t, H, W]`` in [-1, 1] -> ``[t, H, W, 3]`` in [0, 1], fp32."""
    return pixels[0].add_(1.0).div_(2.0).clamp_(0.0, 1.0).permute(1, 2, 3, 0)


@torch.no_grad()  # not inference_mode: callers may still modify the returned tensors
def decode(
    vae: CausalVideoVAE,
    latent: torch.Tensor,
    sink: Sink | None = None,
    frames_per_step: int = DEFAULT_FRAMES_PER_STEP,
    tile: int | str | None = None,
    overlap: int = DEFAULT_OVERLAP_PX,
    budget: int | None = None,
    progress: Progress = _quiet,
    on_retry: Retry = _quiet,
    cache_device: torch.device | str | None = None,
    statistics_passes: int = 1,
):
    """Decodes a raw-space latent to frames in [0, 1], ``[B*T, H, W, 3]`` by default (the host's IMAGE).

    ``tile``: None/"none" (whole frame), a size in pixels, or "auto" (the largest
    tile whose planned peak fits ``budget`` bytes, by default the free memory).
    Runs where the model's weights are, in their precision; frames land on the CPU in float32.
    ``statistics_passes``: for decoders with GroupNorm over the clip (HunyuanVideo), how many passes gather
    the statistics before the pass that writes (0: one pass with running statistics; see :mod:`group_norm`).
    """
    latent = check_latent(vae, latent)
    passes = _gathering_passes(vae, statistics_passes)
    if frames_per_step < 1:
        raise FrameStreamError(f"frames_per_step must be at least 1, got {frames_per_step}")
    device, dtype = vae.weight_device, vae.weight_dtype
    sink = sink if sink is not None else FrameSink()
    videos, _, length, h, w = latent.shape
    r = vae.spatial_ratio
    windows = temporal.windows(vae, length, frames_per_step)
    per_step = max(window.stop - window.start for window in windows)  # a non-causal decoder's windows are wider
    plan = _plan(vae, tile, overlap, h * r, w * r, per_step, budget)
    tiler = Tiler(vae, (h, w), plan, overlap, on_retry, cache_device)

    def decode_window(state: StreamState, batch: int, window: temporal.TemporalWindow) -> torch.Tensor:
        first, last = max(0, window.start - vae.shared_halo), min(length, window.stop + vae.shared_halo)
        z = latent[batch : batch + 1, :, first:last].to(device, dtype)

        def run() -> torch.Tensor:
            shared = vae.decode_shared(z)[:, :, window.start - first : window.stop - first]
            return tiler.run(state, vae.decode_tile, shared, in_scale=1, out_scale=r)

        return _with_step_statistics(vae, tiler, state, run)

    def decode_pass(batch: int, pooling: group_norm.Pooling | None, write, count) -> StreamState:
        stitcher = temporal.Stitcher(write)
        for window in windows:
            if window.fresh_stream:
                state = tiler.new_state()
                state.pooling = pooling
            with state.active():
                pixels = tiler.step(state, functools.partial(decode_window, state, batch, window),
                                    f"latent frames {window.start}-{window.stop - 1}")
            frames = _to_frames(pixels).cpu()
            del pixels
            stitcher.add(window, frames)
            count(frames[-1])
        return state

    def loop() -> None:
        sink.start((videos, vae.decoded_frames(length), h * r, w * r, 3))
        total = videos * len(windows) * (1 + len(passes or ()))
        done = 0

        def count(preview) -> None:
            nonlocal done
            done += 1
            progress(done, total, preview)

        progress(0, total, None)
        for batch in range(videos):
            pooling = group_norm.Pooling() if passes is not None else None
            for _ in passes or ():
                pooling = group_norm.frozen_after(decode_pass(batch, pooling, _discard, count))
            decode_pass(batch, pooling, functools.partial(sink.write, batch), count)

    return _finish(sink, loop)


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


@torch.no_grad()  # not inference_mode: callers may still modify the returned tensors
def encode(
    vae: CausalVideoVAE,
    frames: torch.Tensor | Iterable[torch.Tensor],
    sink: Sink | None = None,
    latents_per_step: int = DEFAULT_LATENTS_PER_STEP,
    tile: int | str | None = None,
    overlap: int = DEFAULT_OVERLAP_PX,
    budget: int | None = None,
    progress: Progress = _quiet,
    on_retry: Retry = _quiet,
    frame_count: int | None = None,
    cache_device: torch.device | str | None = None,
    statistics_passes: int = 1,
):
    """Encodes one video, frames ``[T, H, W, 3]`` in [0, 1], to its raw latent mean ``[1, C, T', h, w]``.

    ``frames`` may also be an iterable of such chunks (a video file read frame
    by frame) with ``frame_count`` giving their total, so a long input never
    sits in memory. As in the host, trailing frames that do not fill a whole
    latent frame are dropped and the frame size is cropped to whole latent
    pixels. Runs where the model's weights are, in their precision. ``statistics_passes`` as for
    :func:`decode`, for frames given as a tensor (a stream is read once, with running statistics).
    """
    if isinstance(frames, torch.Tensor):
        raw_size = tuple(frames.shape[1:3])  # before check_frames crops it
        frames, chunks = check_frames(vae, frames), None
        frame_count = frames.shape[0]
    elif frame_count is None or frame_count < 1:
        raise FrameStreamError("encoding a stream of frame chunks needs their total frame_count (at least 1)")
    else:
        stream = iter(frames)
        first = next(stream, None)
        if first is None:
            raise FrameStreamError("the video holds no frames")
        chunks, raw_size = itertools.chain([first], stream), tuple(first.shape[1:3])
        frames = check_frames(vae, first[:1])
    if latents_per_step < 1:
        raise FrameStreamError(f"latents_per_step must be at least 1, got {latents_per_step}")
    device, dtype = vae.weight_device, vae.weight_dtype
    sink = sink if sink is not None else LatentSink()
    r, ratio = vae.temporal_ratio, vae.spatial_ratio
    length = vae.latent_frames(frame_count)
    spans = vae.encode_steps(vae.pixel_frames(length), latents_per_step)
    height, width = frames.shape[1] // ratio, frames.shape[2] // ratio
    _note_what_is_dropped(vae, (frame_count, *raw_size), (vae.pixel_frames(length), height * ratio, width * ratio))
    plan = _plan(vae, tile, overlap, height * ratio, width * ratio, latents_per_step, budget)
    tiler = Tiler(vae, (height, width), plan, overlap, on_retry, cache_device)
    passes = _gathering_passes(vae, statistics_passes)
    state = tiler.new_state()

    def encode_step(group: torch.Tensor) -> torch.Tensor:
        pixels = (group.to(device, torch.float32).permute(3, 0, 1, 2).unsqueeze(0) * 2.0 - 1.0).to(dtype)  # never in place: the caller's frames

        def run() -> torch.Tensor:
            features = tiler.run(state, vae.encode_tile, pixels, in_scale=ratio, out_scale=1)
            return vae.encode_shared(features.to(dtype))

        return _with_step_statistics(vae, tiler, state, run)

    def groups() -> Iterator[torch.Tensor]:
        if chunks is None:
            yield from (frames[start:stop] for start, stop in spans)
        else:
            for group in _regroup(chunks, [stop - start for start, stop in spans]):
                if tuple(group.shape[1:3]) != raw_size:
                    raise FrameStreamError(f"frame size changed within the video: {tuple(group.shape[1:3])} after {raw_size}")
                yield check_frames(vae, group)

    def encode_pass(source: Iterable[torch.Tensor], pooling, write, count: int) -> StreamState:
        nonlocal state
        state = tiler.new_state()
        state.pooling = pooling
        written = 0
        with state.active():
            for step, group in enumerate(source, 1):
                latent = tiler.step(state, functools.partial(encode_step, group), f"frames {written * r}+")
                write(0, written, latent[0].float().cpu())
                written += latent.shape[2]
                del latent
                progress(count + step, total, None)
        return state

    # GroupNorm over the clip (HunyuanVideo): frames held in memory get a gathering pass first; a stream read
    # once (a video file) is normalised with running statistics
    gathering = len(passes or ()) if chunks is None else 0
    total = len(spans) * (1 + gathering)

    def loop() -> None:
        sink.start((1, vae.latent_channels, length, height, width))
        progress(0, total, None)
        pooling = group_norm.Pooling() if passes is not None else None
        for index in range(gathering):
            pooling = group_norm.frozen_after(encode_pass(groups(), pooling, _discard, index * len(spans)))
        encode_pass(groups(), pooling, sink.write, gathering * len(spans))

    return _finish(sink, loop)


def _note_what_is_dropped(vae: CausalVideoVAE, given: tuple[int, int, int], kept: tuple[int, int, int]) -> None:
    """Warns about the frames and edge pixels that do not fill a latent frame or pixel (the host drops them silently)."""
    if given != kept:
        warnings.warn(f"encoding {kept[0]} frames of {kept[1]}x{kept[2]} px out of {given[0]} of {given[1]}x{given[2]}: "
                      f"the VAE takes 1 + {vae.temporal_ratio}k frames of sides that are multiples of "
                      f"{vae.spatial_ratio} px; the rest is left out", stacklevel=4)  # the caller of encode
