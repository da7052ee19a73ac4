"""Where streamed output goes. A sink is told the full size once, then receives chunks in order.

Preallocating the whole output (instead of concatenating chunks, as the host and
the reference Wan code do) keeps the peak at one output plus one chunk.
"""

from __future__ import annotations

from typing import Callable, Protocol

import torch


class Sink(Protocol):
    def start(self, shape: tuple[int, ...]) -> None:
        """The whole result: ``(B, T, H, W, 3)`` for frames, ``(B, C, T, h, w)`` for latents."""

    def write(self, batch: int, start: int, chunk: torch.Tensor) -> None:
        """``chunk`` holds consecutive items of video ``batch`` from index ``start`` on."""

    def result(self):
        """What the caller gets back."""

    # Optional, for sinks that hold memory of their own (a video file's encoder), counted in a decode's plan:
    # def held_bytes(self, height: int, width: int, frames: int) -> int


def held_bytes(sink: object | None, height: int, width: int, frames: int) -> int:
    """What ``sink`` holds of its own while ``frames`` frames of ``height`` x ``width`` go into it (0 if it says
    nothing)."""
    held = getattr(sink, "held_bytes", None)
    return held(height, width, frames) if held is not None else 0


class FrameSink:
    """Frames in the host's IMAGE layout: one float32 CPU tensor ``[B*T, H, W, 3]`` in [0, 1]."""

    def __init__(self) -> None:
        self.out: torch.Tensor | None = None
        self.frames_per_video = 0

    def start(self, shape: tuple[int, ...]) -> None:
        videos, self.frames_per_video, height, width, channels = shape
        self.out = torch.empty(videos * self.frames_per_video, height, width, channels, dtype=torch.float32)

    def write(self, batch: int, start: int, chunk: torch.Tensor) -> None:
        offset = batch * self.frames_per_video + start
        self.out[offset : offset + chunk.shape[0]].copy_(chunk)

    def result(self) -> torch.Tensor:
        return self.out


class LatentSink:
    """A raw-space latent ``[B, C, T, h, w]``, float32 on CPU, as the host's VAEEncode returns."""

    def __init__(self) -> None:
        self.out: torch.Tensor | None = None

    def start(self, shape: tuple[int, ...]) -> None:
        self.out = torch.empty(shape, dtype=torch.float32)

    def write(self, batch: int, start: int, chunk: torch.Tensor) -> None:
        self.out[batch, :, start : start + chunk.shape[1]].copy_(chunk)

    def result(self) -> torch.Tensor:
        return self.out


class CallbackSink:
    """Hands each chunk to ``on_chunk(batch, start, chunk)``, keeping nothing (file writers, previews)."""

    def __init__(self, on_chunk: Callable[[int, int, torch.Tensor], None]) -> None:
        self.on_chunk = on_chunk
        self.shape: tuple[int, ...] | None = None

    def start(self, shape: tuple[int, ...]) -> None:
        self.shape = tuple(shape)

    def write(self, batch: int, start: int, chunk: torch.Tensor) -> None:
        self.on_chunk(batch, start, chunk)

    def result(self):
        return self.shape
