"""The one streaming loop every model runs through.

Decode advances ``frames_per_step`` latent frames per step; encode advances one
pixel frame, then ``4 * latents_per_step`` frames per step. Each step's output
goes straight to a sink, so memory holds the model, one step's activations and
whatever the sink keeps, never a growing concatenation.
"""

from __future__ import annotations

from typing import Callable

import torch

from .errors import FrameStreamError
from .inputs import check_frames, check_latent
from .model import CausalVideoVAE
from .sinks import FrameSink, LatentSink, Sink
from .stream import StreamState

DEFAULT_FRAMES_PER_STEP = 1
DEFAULT_LATENTS_PER_STEP = 1

# progress(done, total) is called before the first and after every step; it may raise to stop the run
Progress = Callable[[int, int], None]


def _no_progress(done: int, total: int) -> None:
    pass


def _steps(total: int, first: int, per_step: int) -> list[tuple[int, int]]:
    """(start, stop) spans: ``first`` items, then ``per_step`` at a time."""
    spans = [(0, min(first, total))]
    while spans[-1][1] < total:
        start = spans[-1][1]
        spans.append((start, min(start + per_step, total)))
    return spans


@torch.no_grad()  # not inference_mode: callers may still modify the returned tensors
def decode(
    vae: CausalVideoVAE,
    latent: torch.Tensor,
    sink: Sink | None = None,
    frames_per_step: int = DEFAULT_FRAMES_PER_STEP,
    progress: Progress = _no_progress,
):
    """Decodes a raw-space latent to frames in [0, 1], ``[B*T, H, W, 3]`` by default (the host's IMAGE).

    Runs where the model's weights are, in their precision; the result lands on the CPU in float32.
    """
    latent = check_latent(vae, latent)
    if frames_per_step < 1:
        raise FrameStreamError(f"frames_per_step must be at least 1, got {frames_per_step}")
    device, dtype = vae.weight_device, vae.weight_dtype
    sink = sink if sink is not None else FrameSink()
    videos, _, length = latent.shape[:3]
    spans = _steps(length, frames_per_step, frames_per_step)
    total, done = videos * len(spans), 0
    progress(0, total)
    for batch in range(videos):
        state, written = StreamState(), 0
        with state.active():
            for start, stop in spans:
                chunk = latent[batch : batch + 1, :, start:stop].to(device, dtype)
                pixels = vae.decode_chunk(chunk)
                frames = ((pixels.float() + 1.0) / 2.0).clamp_(0.0, 1.0)[0].permute(1, 2, 3, 0)
                if batch == 0 and start == 0:
                    sink.start((videos, vae.pixel_frames(length), *frames.shape[1:]))
                sink.write(batch, written, frames)
                written += frames.shape[0]
                del pixels, frames
                done += 1
                progress(done, total)
    return sink.result()


@torch.no_grad()  # not inference_mode: callers may still modify the returned tensors
def encode(
    vae: CausalVideoVAE,
    frames: torch.Tensor,
    sink: Sink | None = None,
    latents_per_step: int = DEFAULT_LATENTS_PER_STEP,
    progress: Progress = _no_progress,
):
    """Encodes one video, frames ``[T, H, W, 3]`` in [0, 1], to its raw latent mean ``[1, C, T', h, w]``.

    As in the host, trailing frames that do not fill a whole latent frame are
    dropped and the frame size is cropped to whole latent pixels. Runs where the
    model's weights are, in their precision.
    """
    frames = check_frames(vae, frames)
    if latents_per_step < 1:
        raise FrameStreamError(f"latents_per_step must be at least 1, got {latents_per_step}")
    device, dtype = vae.weight_device, vae.weight_dtype
    sink = sink if sink is not None else LatentSink()
    r = vae.temporal_ratio
    length = vae.latent_frames(frames.shape[0])
    spans = _steps(vae.pixel_frames(length), 1, r * latents_per_step)
    height, width = frames.shape[1] // vae.spatial_ratio, frames.shape[2] // vae.spatial_ratio
    sink.start((1, vae.latent_channels, length, height, width))
    progress(0, len(spans))
    state, written = StreamState(), 0
    with state.active():
        for step, (start, stop) in enumerate(spans, 1):
            chunk = frames[start:stop].to(device).permute(3, 0, 1, 2).unsqueeze(0)
            latent = vae.encode_chunk((chunk.float() * 2.0 - 1.0).to(dtype))
            sink.write(0, written, latent[0].float())
            written += latent.shape[2]
            del chunk, latent
            progress(step, len(spans))
    return sink.result()
