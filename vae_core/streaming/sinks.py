"""Where streamed output goes. A sink is told the full size once, then receives chunks in order.

Preallocating the whole output (instead of concatenating chunks, as the host and
the reference Wan code do) keeps the peak at one output plus one chunk.
"""

from __future__ import annotations

from typing import Callable, Protocol

import torch


class Sink(Protocol):
    def start(self, shape: tuple[int, ...]) -> None:
        """The whole result: ``(B, T, H, W, 3)`` for frames, ``(B, C, T, h, w)`` for latents. ``T`` is None for a
        stream of unknown length (:class:`stream.DecodeStream`)."""

    def write(self, batch: int, start: int, chunk: torch.Tensor) -> None:
        """``chunk`` holds consecutive items of video ``batch`` from index ``start`` on. Items come in order; after
        a stream's rewind they start again from an earlier index, and replace what was written from there."""

    def result(self):
        """What the caller gets back."""

    # Optional, for sinks that hold memory of their own, counted in a decode's plan: a video file's encoder
    # (its look-ahead) and a sink that keeps the frames it is given (the caller's result):
    # def held_bytes(self, height: int, width: int, frames: int) -> int
    # def kept_bytes(self, height: int, width: int, frames: int) -> int
    # Optional: rewindable = True where items written can be replaced (in memory, not in a file)


def held_bytes(sink: object | None, height: int, width: int, frames: int) -> int:
    """What ``sink`` holds of its own while ``frames`` frames of ``height`` x ``width`` go into it (0 if it says
    nothing)."""
    held = getattr(sink, "held_bytes", None)
    return held(height, width, frames) if held is not None else 0


def kept_bytes(sink: object | None, height: int, width: int, frames: int) -> int:
    """What ``sink`` keeps of the frames it is given until the run ends (0 if it says nothing)."""
    kept = getattr(sink, "kept_bytes", None)
    return kept(height, width, frames) if kept is not None else 0


class _Growing:
    """Items of one video along ``dim`` when their number is not known ahead: kept as the pieces written (a
    rewind's later write replaces what followed its start), joined once at the end."""

    def __init__(self, dim: int) -> None:
        self.dim, self.pieces = dim, []  # (start, chunk)

    def write(self, start: int, chunk: torch.Tensor) -> None:
        kept = []
        for first, piece in self.pieces:
            if first < start:
                kept.append((first, piece.narrow(self.dim, 0, min(piece.shape[self.dim], start - first))))
        self.pieces = kept + [(start, chunk.clone())]

    def joined(self) -> torch.Tensor:
        return torch.cat([piece for _, piece in self.pieces], dim=self.dim)


class FrameSink:
    """Frames in the host's IMAGE layout: one float32 CPU tensor ``[B*T, H, W, 3]`` in [0, 1]."""

    rewindable = True

    def __init__(self) -> None:
        self.out: torch.Tensor | None = None
        self.frames_per_video = 0
        self._growing: _Growing | None = None

    def start(self, shape: tuple[int, ...]) -> None:
        videos, self.frames_per_video, height, width, channels = shape
        if self.frames_per_video is None:  # a stream of unknown length: one video, joined at the end
            self._growing = _Growing(0)
            return
        self.out = torch.empty(videos * self.frames_per_video, height, width, channels, dtype=torch.float32)

    def write(self, batch: int, start: int, chunk: torch.Tensor) -> None:
        if self._growing is not None:
            self._growing.write(start, chunk)
            return
        offset = batch * self.frames_per_video + start
        self.out[offset : offset + chunk.shape[0]].copy_(chunk)

    def result(self) -> torch.Tensor:
        return self._growing.joined() if self._growing is not None else self.out

    def kept_bytes(self, height: int, width: int, frames: int) -> int:
        """All the frames, in float32: what the caller gets back."""
        return frames * height * width * 3 * 4


class LatentSink:
    """A raw-space latent ``[B, C, T, h, w]``, float32 on CPU, as the host's VAEEncode returns."""

    rewindable = True

    def __init__(self) -> None:
        self.out: torch.Tensor | None = None
        self._growing: _Growing | None = None

    def start(self, shape: tuple[int, ...]) -> None:
        if shape[2] is None:
            self._growing = _Growing(1)
            return
        self.out = torch.empty(shape, dtype=torch.float32)

    def write(self, batch: int, start: int, chunk: torch.Tensor) -> None:
        if self._growing is not None:
            self._growing.write(start, chunk)
            return
        self.out[batch, :, start : start + chunk.shape[1]].copy_(chunk)

    def result(self) -> torch.Tensor:
        return self._growing.joined()[None] if self._growing is not None else self.out


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
