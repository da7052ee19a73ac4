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

from typing import Callable, Iterable

import torch

from . import group_norm, memory
from .counter import Counter
from .inputs import check_latent
from .model import CausalVideoVAE
from .settings import Settings
from .sinks import FrameSink, LatentSink, Sink
from .sources import FrameSource
from .steps import gathering_passes
from .stream import DecodeStream, EncodeStream, Shared
from .tiler import Tiler

DEFAULT_FRAMES_PER_STEP = Settings.frames_per_step
DEFAULT_LATENTS_PER_STEP = Settings.latents_per_step


@torch.no_grad()  # not inference_mode: callers may still modify the returned tensors
def decode(vae: CausalVideoVAE, latent: torch.Tensor, sink: Sink | None = None, settings: Settings | None = None,
           *, num_frames: int | None = None, plan: memory.WorkPlan | None = None, **options):
    """Decodes a raw-space latent to frames in [0, 1], ``[B*T, H, W, 3]`` by default (the host's IMAGE).

    ``settings`` (or keyword overrides of it, e.g. ``tile="auto"``) say how:
    see :class:`Settings`. ``num_frames`` splits a batch of per-frame latents
    (``latent_layout == "frames"``, e.g. Stable Video Diffusion) into videos of
    that many frames, as diffusers' ``decode(z, num_frames)``. Runs where the
    model's weights are, in their precision; frames land on the CPU in float32.
    Each video is a :class:`DecodeStream` given its whole latent in one push. ``plan``: the
    :func:`memory.plan_decode` a front end already made for these settings and sink (it is not made again).
    """
    return run_decode(vae, latent, sink, Settings.of(settings, options), num_frames, Tiler, plan)


def run_decode(vae: CausalVideoVAE, latent: torch.Tensor, sink: Sink | None, settings: Settings,
               num_frames: int | None, make_tiler: Callable[..., Tiler], work: memory.WorkPlan | None = None):
    """:func:`decode` with the tiles run by ``make_tiler`` (a :class:`Tiler`'s arguments), e.g. over processes."""
    latent = check_latent(vae, latent, num_frames)
    videos, length = latent.shape[0], latent.shape[2]
    sink = sink if sink is not None else FrameSink()
    work = work or memory.plan_decode(vae, latent.shape, settings, sink=sink)
    settings.report_plan(work.describe(vae.spatial_ratio))
    tiler = make_tiler(vae, tuple(latent.shape[-2:]), work.tiles, work.overlap_px, settings.on_retry,
                       settings.carries, settings.statistics_passes)
    passes = gathering_passes(vae, settings.statistics_passes, "decode", work)
    shared = Shared(work, tiler, Counter(videos * len(work.steps) * (1 + passes), settings.progress))
    sink.start((videos, vae.decoded_frames(length), *work.frame, 3))
    shared.counter.start()
    with _finishing(sink):
        for batch in range(videos):
            stream = DecodeStream(vae, sink, settings, frames=length, returns=False, batch=batch, shared=shared)
            stream.push(_one_video(vae, latent, batch), last=True)
            stream.flush()
        shared.counter.finish()
    return sink.result()


def _one_video(vae: CausalVideoVAE, latent: torch.Tensor, batch: int) -> torch.Tensor:
    """Video ``batch`` of a checked ``[B, C, T, h, w]`` latent, in the model's own layout (per-frame latents
    ``[T, C, h, w]`` for image VAEs)."""
    if vae.latent_layout == "frames":
        return latent[batch].transpose(0, 1)
    return latent[batch : batch + 1]


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
    (a stream is read once, with running statistics). It is an
    :class:`EncodeStream` given the frames chunk by chunk.
    """
    settings = Settings.of(settings, options)
    source = FrameSource(vae, frames, frame_count)
    height, width = source.size
    r = vae.spatial_ratio
    work = memory.plan_encode(vae, source.count, height, width, settings)
    settings.report_plan(work.describe(r))
    tiler = Tiler(vae, (height // r, width // r), work.tiles, work.overlap_px, settings.on_retry, settings.carries,
                  settings.statistics_passes)
    passes = gathering_passes(vae, settings.statistics_passes, "encode", work) if source.rereadable else 0
    shared = Shared(work, tiler, Counter(len(work.steps) * (1 + passes), settings.progress))
    sink = sink if sink is not None else LatentSink()
    sink.start((1, vae.latent_channels, vae.latent_frames(source.count), height // r, width // r))
    shared.counter.start()
    with _finishing(sink):
        pooling = None
        for _ in range(passes):  # GroupNorms over the clip: passes that only gather its statistics
            stream = EncodeStream(vae, None, settings, frames=source.count, returns=False, batch=0, shared=shared,
                                  pooling=pooling or group_norm.Pooling())
            for chunk, last in source.chunks():
                stream.push(chunk, last)
            stream.flush()
            pooling = group_norm.frozen_after(stream.state)
        stream = EncodeStream(vae, sink, settings, frames=source.count, returns=False, batch=0, shared=shared,
                              pooling=pooling)
        for chunk, last in source.chunks():
            stream.push(chunk, last)
        stream.flush()
        shared.counter.finish()
    result = sink.result()
    if vae.latent_layout == "frames" and isinstance(result, torch.Tensor):
        return result[0].transpose(0, 1).contiguous()
    return result


class _finishing:
    """Around a run: on any failure or interrupt the sink drops what it wrote (a partial file)."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, error, traceback) -> None:
        if kind is not None:
            abort = getattr(self.sink, "abort", None)
            if abort is not None:
                abort()
