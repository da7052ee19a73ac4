"""The one streaming loop every model runs through.

Time comes first: each step advances the whole frame by ``frames_per_step``
latent frames (decode) or one, then ``temporal_ratio * latents_per_step`` pixel
frames (encode), running the high-resolution part of the model tile by tile and
the latent-resolution part on the whole frame. Finished frames leave in order
and go straight to a sink (a tensor, a video file, a callback), so memory holds
the model, the causal carries, one tile's activations and whatever the sink
keeps, never a growing concatenation.

Decoders that look ahead through their convs stream with a delay, flushed out
in steps that feed nothing; those that look further run in temporal windows
with a halo of context (:mod:`temporal`). GroupNorms over the whole clip get
their statistics from gathering passes before the pass that writes
(:mod:`group_norm`). Everything a run holds is decided up front by its plan
(:mod:`memory`); the functions below only carry it out, with their state passed
explicitly.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from typing import Callable, Iterable

import torch

from . import group_norm, memory, temporal
from .inputs import check_latent
from .model import CausalVideoVAE
from .settings import Progress, Settings
from .sinks import FrameSink, LatentSink, Sink
from .sources import FrameSource
from .state import StreamState
from .tiler import Tiler

DEFAULT_FRAMES_PER_STEP = Settings.frames_per_step
DEFAULT_LATENTS_PER_STEP = Settings.latents_per_step
Write = Callable[[int, torch.Tensor], None]  # (first frame or latent index, chunk) of one video


@dataclass
class Counter:
    """Steps done out of the run's total, reported after each step (the report may raise to stop the run)."""

    total: int
    report: Progress
    done: int = 0

    def start(self) -> None:
        self.report(0, self.total, None)

    def step(self, preview: torch.Tensor | None = None) -> None:
        self.done += 1
        self.total = max(self.total, self.done)  # a delayed decoder's flush may take more steps than planned
        self.report(self.done, self.total, preview)

    def finish(self) -> None:
        """Reports the run complete (a delayed decoder's flush may have taken fewer steps than planned)."""
        if self.done < self.total:
            self.done = self.total
            self.report(self.done, self.total, None)


@torch.no_grad()  # not inference_mode: callers may still modify the returned tensors
def decode(vae: CausalVideoVAE, latent: torch.Tensor, sink: Sink | None = None, settings: Settings | None = None,
           *, num_frames: int | None = None, **options):
    """Decodes a raw-space latent to frames in [0, 1], ``[B*T, H, W, 3]`` by default (the host's IMAGE).

    ``settings`` (or keyword overrides of it, e.g. ``tile="auto"``) say how:
    see :class:`Settings`. ``num_frames`` splits a batch of per-frame latents
    (``latent_layout == "frames"``, e.g. Stable Video Diffusion) into videos of
    that many frames, as diffusers' ``decode(z, num_frames)``. Runs where the
    model's weights are, in their precision; frames land on the CPU in float32.
    """
    return run_decode(vae, latent, sink, Settings.of(settings, options), num_frames, Tiler)


def run_decode(vae: CausalVideoVAE, latent: torch.Tensor, sink: Sink | None, settings: Settings,
               num_frames: int | None, make_tiler: Callable[..., Tiler]):
    """:func:`decode` with the tiles run by ``make_tiler`` (a :class:`Tiler`'s arguments), e.g. over processes."""
    latent = check_latent(vae, latent, num_frames)
    work = memory.plan_decode(vae, latent.shape, settings, sink=sink)
    settings.report_plan(work.describe(vae.spatial_ratio))
    tiler = make_tiler(vae, tuple(latent.shape[-2:]), work.tiles, settings.overlap, settings.on_retry,
                       settings.carries)
    passes = gathering_passes(vae, settings)
    counter = Counter(latent.shape[0] * len(work.steps) * (1 + passes), settings.progress)
    sink = sink if sink is not None else FrameSink()
    return _finish(sink, functools.partial(_decode_videos, vae, latent, work, tiler, passes, sink, counter))


def _decode_videos(vae: CausalVideoVAE, latent: torch.Tensor, work: memory.WorkPlan, tiler: Tiler, passes: int,
                   sink: Sink, counter: Counter) -> None:
    videos, length = latent.shape[0], latent.shape[2]
    sink.start((videos, vae.decoded_frames(length), *work.frame, 3))
    counter.start()
    for batch in range(videos):
        z = latent[batch : batch + 1]
        pooling = group_norm.Pooling() if vae.norm_statistics == "clip" else None
        for _ in range(passes):
            pooling = group_norm.frozen_after(decode_pass(vae, z, work, tiler, pooling, _discard, counter))
        decode_pass(vae, z, work, tiler, pooling, functools.partial(sink.write, batch), counter)
    counter.finish()


def decode_pass(vae: CausalVideoVAE, z: torch.Tensor, work: memory.WorkPlan, tiler: Tiler,
                pooling: group_norm.Pooling | None, write: Write, counter: Counter) -> StreamState:
    """One pass over one video's steps, writing its frames in order; returns the stream's final state."""
    stitcher = temporal.Stitcher(write)
    state = None
    for window in _steps(vae, work, z.shape[2], stitcher):
        if window.fresh_stream:
            state = _fresh_state(tiler, pooling, state, z.shape[2] if vae.causal_decoder else None,
                                 (work.per_step, vae.temporal_ratio) if vae.delayed_decoder else None)
        with state.active():
            pixels = tiler.step(state, functools.partial(decode_window, vae, z, window, tiler, state),
                                f"latent frames {window.start}-{window.stop - 1}" if window.stop > window.start
                                else "the decoder's last frames")
        frames = to_frames(pixels).cpu()
        del pixels
        stitcher.add(window, frames)
        counter.step(frames[-1] if len(frames) else None)
        del frames  # else this step's frames stay alive through the next step
    return state


def _steps(vae: CausalVideoVAE, work: memory.WorkPlan, length: int, stitcher: temporal.Stitcher):
    """The plan's steps; a delayed decoder's flush steps only while frames are still to come (as many as that
    takes: their number is planned from the decoder's delay)."""
    expected = vae.decoded_frames(length)
    for window in work.steps:
        if window.streamed and window.start == length and stitcher.written >= expected:
            return
        yield window
    last = work.steps[-1]
    while vae.delayed_decoder and stitcher.written < expected:
        before = stitcher.written
        yield last
        if stitcher.written == before:
            raise RuntimeError(f"the {vae.family}'s decoder stopped giving frames at {before} of {expected}")


def decode_window(vae: CausalVideoVAE, z: torch.Tensor, window: temporal.TemporalWindow, tiler: Tiler,
                  state: StreamState) -> torch.Tensor:
    """One step: the latent-resolution stages over the window (plus their own halo), then the tiles. A stream's
    step runs just its own latent frames (none while a delayed decoder flushes)."""
    halo = 0 if window.streamed else vae.shared_halo
    first, last = max(0, window.start - halo), min(z.shape[2], window.stop + halo)
    latent = z[:, :, first:last].to(vae.weight_device, vae.weight_dtype)

    def run() -> torch.Tensor:
        state.ending = window.stop == z.shape[2] or not window.streamed  # a window is a whole clip
        state.frames_owned = _owned(window.core, first, last)
        shared = tiler.shared(state, vae.decode_shared, latent)
        if not window.streamed:
            shared = shared[:, :, window.start - first : window.stop - first]
        state.frames_owned = _owned(window.core, window.start, window.stop)
        return tiler.run(state, vae.decode_tile, shared, in_scale=shared.shape[-1] // z.shape[-1],
                         out_scale=vae.spatial_ratio)

    return with_step_statistics(vae, tiler, state, run)


def _owned(core: tuple[int, int], first: int, last: int) -> tuple[int, int, int] | None:
    """The core's frames within a stage that runs latents ``[first, last)`` (None: all of them)."""
    return None if core == (first, last) else (core[0] - first, core[1] - first, last - first)


def _fresh_state(tiler: Tiler, pooling: group_norm.Pooling | None, previous: StreamState | None,
                 latent_frames: int | None, pace: tuple[int, int] | None = None) -> StreamState:
    """A new stream (of ``latent_frames``, when known; ``pace``: see :class:`StreamState`) for a window; a windowed
    decode's windows keep adding to the clip's statistics."""
    state = tiler.new_state(latent_frames, pace)
    state.pooling = pooling
    if previous is not None and pooling is not None:
        state.carry_over(previous, group_norm.KEY)
    return state


@torch.no_grad()  # not inference_mode: callers may still modify the returned tensors
def encode(vae: CausalVideoVAE, frames: torch.Tensor | Iterable[torch.Tensor], sink: Sink | None = None,
           settings: Settings | None = None, *, frame_count: int | None = None, **options):
    """Encodes one video, frames ``[T, H, W, 3]`` in [0, 1], to its raw latent mean ``[1, C, T', h, w]``
    (``[T, C, h, w]`` for a model of per-frame latents, the host's image LATENT).

    ``frames`` may also be an iterable of such chunks (a video file read frame
    by frame) with ``frame_count`` giving their total, so a long input never
    sits in memory. As in the host, trailing frames that do not fill a whole
    latent frame are dropped and the frame size is cropped to whole latent
    pixels. Frames in memory get the gathering passes of ``statistics_passes``
    (a stream is read once, with running statistics).
    """
    settings = Settings.of(settings, options)
    source = FrameSource(vae, frames, frame_count)
    height, width = source.size
    work = memory.plan_encode(vae, source.count, height, width, settings)
    settings.report_plan(work.describe(vae.spatial_ratio))
    kept = work.steps[-1][1]
    _note_what_is_dropped(vae, (source.count, *source.raw_size), (kept, height, width))
    tiler = Tiler(vae, (height // vae.spatial_ratio, width // vae.spatial_ratio), work.tiles, settings.overlap,
                  settings.on_retry, settings.carries)
    passes = gathering_passes(vae, settings, "encode") if source.rereadable else 0
    counter = Counter(len(work.steps) * (1 + passes), settings.progress)
    sink = sink if sink is not None else LatentSink()
    result = _finish(sink, functools.partial(_encode_video, vae, source, work, tiler, passes, sink, counter))
    if vae.latent_layout == "frames" and isinstance(result, torch.Tensor):
        return result[0].transpose(0, 1).contiguous()
    return result


def _encode_video(vae: CausalVideoVAE, source: FrameSource, work: memory.WorkPlan, tiler: Tiler, passes: int,
                  sink: Sink, counter: Counter) -> None:
    sink.start((1, vae.latent_channels, vae.latent_frames(source.count), *(n // vae.spatial_ratio for n in work.frame)))
    counter.start()
    pooling = group_norm.Pooling() if norm_statistics(vae, "encode") == "clip" else None
    for _ in range(passes):
        pooling = group_norm.frozen_after(encode_pass(vae, source, work, tiler, pooling, _discard, counter))
    encode_pass(vae, source, work, tiler, pooling, functools.partial(sink.write, 0), counter)


def encode_pass(vae: CausalVideoVAE, source: FrameSource, work: memory.WorkPlan, tiler: Tiler,
                pooling: group_norm.Pooling | None, write: Write, counter: Counter) -> StreamState:
    """One pass over the video's steps, writing its latent frames in order; returns the stream's final state."""
    state = _fresh_state(tiler, pooling, None, vae.latent_frames(source.count))
    written = 0
    with state.active():
        for group in source.groups(work.steps):
            latent = tiler.step(state, functools.partial(encode_step, vae, group, tiler, state),
                                f"frames {written * vae.temporal_ratio}+")
            write(written, latent[0].float().cpu())
            written += latent.shape[2]
            del latent
            counter.step()
    return state


def encode_step(vae: CausalVideoVAE, group: torch.Tensor, tiler: Tiler, state: StreamState) -> torch.Tensor:
    """One step: the high-resolution stages tile by tile, then the latent-resolution stages on the whole frame."""
    dtype = vae.weight_dtype
    # never in place: these are the caller's frames
    pixels = (group.to(vae.weight_device, torch.float32).permute(3, 0, 1, 2).unsqueeze(0) * 2.0 - 1.0).to(dtype)

    def run() -> torch.Tensor:
        features = tiler.run(state, vae.encode_tile, pixels, in_scale=vae.spatial_ratio, out_scale=1)
        return vae.encode_shared(features.to(dtype))

    return with_step_statistics(vae, tiler, state, run, "encode")


def with_step_statistics(vae: CausalVideoVAE, tiler: Tiler, state: StreamState, run: Callable[[], torch.Tensor],
                         direction: str = "decode"):
    """``run()`` for one step. A model whose GroupNorms take statistics per step (CogVideoX, image VAEs) gets them
    from all tiles of the step, gathered in a first run whose carries are dropped; untiled it needs none."""
    if norm_statistics(vae, direction) != "chunk" or tiler.layout.whole_frame:
        return run()
    state.pooling = group_norm.Pooling(per_step=True)
    with state.trial():
        run()
    state.pooling = group_norm.frozen_after(state, per_step=True)
    state.rollback()
    try:
        return run()
    finally:
        state.pooling = None


def gathering_passes(vae: CausalVideoVAE, settings: Settings, direction: str = "decode") -> int:
    """The statistics-gathering passes before the one that writes (none for norms that need none)."""
    if norm_statistics(vae, direction) != "clip":
        return 0
    return vae.statistics_passes if settings.statistics_passes is None else settings.statistics_passes


def norm_statistics(vae: CausalVideoVAE, direction: str) -> str:
    if direction == "encode" and vae.encoder_norm_statistics is not None:
        return vae.encoder_norm_statistics
    return vae.norm_statistics


def to_frames(pixels: torch.Tensor) -> torch.Tensor:
    """``[1, 3, t, H, W]`` in [-1, 1] -> ``[t, H, W, 3]`` in [0, 1], fp32."""
    return pixels[0].add_(1.0).div_(2.0).clamp_(0.0, 1.0).permute(1, 2, 3, 0)


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


def _discard(*args) -> None:
    pass


def _note_what_is_dropped(vae: CausalVideoVAE, given: tuple[int, int, int], kept: tuple[int, int, int]) -> None:
    """Warns about the frames and edge pixels that do not fill a latent frame or pixel (the host drops them silently)."""
    if given != kept:
        warnings.warn(f"encoding {kept[0]} frames of {kept[1]}x{kept[2]} px out of {given[0]} of {given[1]}x{given[2]}: "
                      f"the VAE takes 1 + {vae.temporal_ratio}k frames of sides that are multiples of "
                      f"{vae.spatial_ratio} px; the rest is left out", stacklevel=4)  # the caller of encode
