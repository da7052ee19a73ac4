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
from .model import CausalVideoVAE
from .sinks import FrameSink, LatentSink, Sink
from .stream import StreamState

DEFAULT_FRAMES_PER_STEP = 2
DEFAULT_LATENTS_PER_STEP = 1

# progress(done, total) is called before the first and after every step; it may raise to stop the run
Progress = Callable[[int, int], None]


def _no_progress(done: int, total: int) -> None:
    pass


def check_latent(vae: CausalVideoVAE, latent: torch.Tensor) -> torch.Tensor:
    """A ``[B, C, T, h, w]`` view of a valid latent for ``vae``, or one clear error."""
    if not isinstance(latent, torch.Tensor):
        raise FrameStreamError(f"expected a latent tensor, got {type(latent).__name__}")
    if latent.ndim == 4 and latent.shape[0] != vae.latent_channels:
        raise FrameStreamError(
            f"latent has shape {tuple(latent.shape)}, an image latent [B, C, H, W]; the {vae.family} decodes video"
            f" latents [B, {vae.latent_channels}, T, H, W] from a video model"
        )
    if latent.ndim == 4:
        latent = latent.unsqueeze(0)
    if latent.ndim != 5:
        raise FrameStreamError(
            f"latent has shape {tuple(latent.shape)}; a video latent is [C, T, H, W] or [B, C, T, H, W]"
        )
    if latent.shape[1] != vae.latent_channels:
        raise FrameStreamError(
            f"latent has {latent.shape[1]} channels but the {vae.family} expects {vae.latent_channels};"
            " it was made for another model"
        )
    if min(latent.shape) == 0:
        raise FrameStreamError(f"latent has shape {tuple(latent.shape)}, which holds no frames")
    if not latent.is_floating_point():
        raise FrameStreamError(f"latent has dtype {latent.dtype}; expected a floating-point tensor")
    bad = (~torch.isfinite(latent)).sum().item()
    if bad:
        raise FrameStreamError(
            f"latent contains {bad} NaN/inf values; the sampler diverged or the file is damaged, so nothing was decoded"
        )
    return latent


def check_frames(vae: CausalVideoVAE, frames: torch.Tensor) -> torch.Tensor:
    """Frames ``[T, H, W, C]`` in [0, 1], cropped to whole latent pixels as the host crops them."""
    if not isinstance(frames, torch.Tensor) or frames.ndim != 4 or frames.shape[-1] not in (3, 4):
        shape = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
        raise FrameStreamError(f"frames have shape {shape}; expected [T, H, W, 3] (the host's IMAGE layout)")
    r = vae.spatial_ratio
    t, h, w = frames.shape[:3]
    if h < r or w < r:
        raise FrameStreamError(f"frames are {w}x{h} px; the {vae.family} needs at least {r}x{r}")
    bad = (~torch.isfinite(frames[..., :3])).sum().item()
    if bad:
        raise FrameStreamError(f"frames contain {bad} NaN/inf values")
    top, left = (h % r) // 2, (w % r) // 2
    return frames[:, top : top + h // r * r, left : left + w // r * r, :3]


def _steps(total: int, first: int, per_step: int) -> list[tuple[int, int]]:
    """(start, stop) spans: ``first`` items, then ``per_step`` at a time."""
    spans = [(0, min(first, total))]
    while spans[-1][1] < total:
        start = spans[-1][1]
        spans.append((start, min(start + per_step, total)))
    return spans


def _resolve(vae: CausalVideoVAE, device, dtype) -> tuple[torch.device, torch.dtype]:
    return torch.device(device) if device is not None else vae.weight_device, dtype or vae.weight_dtype


@torch.inference_mode()
def decode(
    vae: CausalVideoVAE,
    latent: torch.Tensor,
    sink: Sink | None = None,
    frames_per_step: int = DEFAULT_FRAMES_PER_STEP,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    progress: Progress = _no_progress,
):
    """Decodes a raw-space latent to frames in [0, 1], ``[B*T, H, W, 3]`` by default (the host's IMAGE)."""
    latent = check_latent(vae, latent)
    if frames_per_step < 1:
        raise FrameStreamError(f"frames_per_step must be at least 1, got {frames_per_step}")
    device, dtype = _resolve(vae, device, dtype)
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


@torch.inference_mode()
def encode(
    vae: CausalVideoVAE,
    frames: torch.Tensor,
    sink: Sink | None = None,
    latents_per_step: int = DEFAULT_LATENTS_PER_STEP,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    progress: Progress = _no_progress,
):
    """Encodes one video, frames ``[T, H, W, 3]`` in [0, 1], to its raw latent mean ``[1, C, T', h, w]``.

    As in the host, trailing frames that do not fill a whole latent frame are
    dropped and the frame size is cropped to whole latent pixels.
    """
    frames = check_frames(vae, frames)
    if latents_per_step < 1:
        raise FrameStreamError(f"latents_per_step must be at least 1, got {latents_per_step}")
    device, dtype = _resolve(vae, device, dtype)
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
