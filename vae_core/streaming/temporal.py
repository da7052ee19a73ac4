"""Which latent frames each decode step reads, and which pixel frames it contributes.

A causal decoder streams: consecutive steps of one stream, every decoded frame
kept. So does a decoder that looks ahead only through its convs, with a delay:
its first steps give fewer frames than they stand for, and steps that feed
nothing flush the rest out once the latent has all gone in. A decoder that
looks further (attention over frames) cannot stream, so it decodes
overlapping windows, each a fresh clip: a core of latent frames plus a halo of
context on both sides. Frames decoded from the halo are dropped, except a
``blend`` of them at the front (at most ``halo - 1``), which is cross-faded linearly with the end of
the previous window. With a halo at least the decoder's temporal receptive
field the result equals a whole-clip decode; a smaller halo trades exactness
for memory and the cross-fade hides what is left.

Frame alignment: the first latent frame stands for one pixel frame and every
later one for ``r`` frames, so latent ``j > 0`` is pixels ``r(j-1)+1 .. rj``. A
window decoded as a fresh clip from latent ``a`` yields its frame ``i`` at
global pixel ``i + r*a`` (its first latent collapses to one frame, the last of
that latent's group), which is where every window's frames are placed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .frames import fade_in
from .model import CausalVideoVAE


@dataclass(frozen=True)
class TemporalWindow:
    start: int  # latent frames decoded: [start, stop)
    stop: int
    core: tuple[int, int]  # the latent frames it stands for (the rest is halo), each in exactly one window
    first_pixel: int  # global pixel index of the window's first decoded frame
    keep: tuple[int, int]  # global pixel frames this window contributes
    hold: int  # trailing kept frames the next window cross-fades with
    fresh_stream: bool
    streamed: bool = False  # a step of a stream: its frames follow the previous step's, however many it gives


def pixel_span(vae: CausalVideoVAE, start: int, stop: int) -> tuple[int, int]:
    """Global pixel frames ``[a, b)`` that latents ``[start, stop)`` stand for."""
    return (vae.decoded_frames(start) if start else 0), vae.decoded_frames(stop)


def windows(vae: CausalVideoVAE, length: int, per_step: int) -> list[TemporalWindow]:
    if vae.streaming.one_stream:
        spans = vae.decode_steps(length, per_step)
        spans += [(length, length)] * flush_steps(vae, per_step)
        out = []
        for start, stop in spans:
            span = pixel_span(vae, start, stop)
            out.append(TemporalWindow(start, stop, (start, stop), span[0], span, 0, start == 0, streamed=True))
        return out
    return context_windows(vae, length, vae.streaming.core, vae.streaming.halo, vae.streaming.blend)


def flush_steps(vae: CausalVideoVAE, per_step: int) -> int:
    """Steps feeding nothing that a delayed decoder takes to let its last frames out: about its delay in latent
    frames over the latent frames a step feeds (within a step or two for the decoders measured; a clip
    shorter than the delay needs fewer). The engine runs as many as the stream needs."""
    return max(1, round(vae.streaming.delay / per_step)) if vae.streaming.delayed else 0


def context_windows(vae: CausalVideoVAE, length: int, core: int, halo: int, blend: int) -> list[TemporalWindow]:
    """Fresh-clip windows: cores of ``core`` latents, ``halo`` latents of context, ``blend`` of them cross-faded. A
    clip no longer than the widest window (``core + 2 * halo``) is one window: the whole clip, in no more memory."""
    blend = min(blend, halo - 1) if halo > 0 else 0  # a fresh window's first latent yields only one of its frames
    if length <= core + 2 * halo:
        core = max(core, length)
    cores = [(c, min(c + core, length)) for c in range(0, length, core)]
    out = []
    for i, (c0, c1) in enumerate(cores):
        start, stop = max(0, c0 - halo), min(length, c1 + halo)
        keep = pixel_span(vae, max(0, c0 - blend), c1)
        nxt = cores[i + 1][0] if i + 1 < len(cores) else None
        hold = 0 if nxt is None else keep[1] - pixel_span(vae, max(0, nxt - blend), nxt)[0]
        out.append(TemporalWindow(start, stop, (c0, c1), vae.temporal_ratio * start, keep, hold, True))
    return out


class Stitcher:
    """Puts each window's frames in place, cross-fading overlaps, and gives back the frames now finished, in
    order; a stream's steps follow one another."""

    def __init__(self) -> None:
        self.held: torch.Tensor | None = None
        self.written = 0  # frames given back so far

    def add(self, window: TemporalWindow, frames: torch.Tensor) -> list[tuple[int, torch.Tensor]]:
        """The finished frames as ``(first global index, frames)`` pieces (none, or one)."""
        if window.streamed:
            start, self.written = self.written, self.written + len(frames)
            return [(start, frames)] if len(frames) else []
        first, last = window.keep
        frames = frames[first - window.first_pixel : last - window.first_pixel]
        if self.held is not None:
            n = self.held.shape[0]
            frames[:n] = torch.lerp(self.held, frames[:n], fade_in(n).to(frames.dtype).view(n, 1, 1, 1))
        done = frames.shape[0] - window.hold
        self.held = frames[done:].clone() if window.hold else None
        self.written = first + done
        return [(first, frames[:done])] if done else []
