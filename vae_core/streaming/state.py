"""The causal-streaming protocol, written once for every temporal layer.

A video VAE is streamed by feeding it consecutive chunks of frames. Every layer
that looks along time (a causal conv, a temporal down/up-sampler) must carry the
frames it still needs from one chunk to the next. Instead of threading a cache
list through every block's ``forward`` (the reference Wan code pastes that
boilerplate into each block), such a layer calls :func:`sliding_windows` or
:func:`first_call` with itself as the key, and the active :class:`StreamState`
keeps its carry (in its :class:`carries.CarryStore`, one typed record per
layer). Blocks built from these layers need no cache code at all.

Two properties make tiling and out-of-memory recovery possible:

* A carry is kept for the *whole frame*. A spatial tile (a :class:`Window`)
  reads its own extent from it and writes back only the part it owns, so the
  tile layout may change from one step to the next.
* A carry is held once: a step overwrites it as soon as it has the new one,
  keeping aside only what the step's later tiles still read of the old one,
  and a copy in ``rollback_to`` (host RAM, for carries on a GPU) so that a
  failed step can be undone with :meth:`carries.CarryStore.rollback` and re-run
  exactly (:mod:`journal`). A carry whose size changes from step to step goes
  to a pending copy that :meth:`carries.CarryStore.commit` adopts, as do all writes
  of a trial run (:meth:`carries.CarryStore.trial`).
* A decoder that looks ahead (convs padded at both ends) streams too, with a
  delay: each such conv holds back the frames whose look-ahead has not arrived,
  and once everything before it has reached the clip's end it pads that end and
  lets the rest out (:attr:`StreamState.ending`), about its usual frames per
  step, so the end is flushed through in extra steps no larger than the others.
  A residual branch waits for its main branch (:func:`aligned`).
* A carry that only grows (a causal attention's keys and values: every later
  frame reads all earlier ones) is one buffer allocated for the stream's length
  (:func:`growing_carry`). A step writes past the committed length, so a failed
  step re-runs over the same slots: it needs no second copy and no concatenation.

Each temporal layer is defined over the *whole* sequence, so cutting the
sequence into chunks anywhere gives the same result as one whole-clip call.
Without an active state, a call is simply a fresh one-chunk stream.
"""

from __future__ import annotations

import contextvars
import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

import torch

from .carries import CarryName, CarryStore
from .compiled import eager_only
from .window import Window

if TYPE_CHECKING:
    from .group_norm import Pooling

_ACTIVE: contextvars.ContextVar["StreamState | None"] = contextvars.ContextVar("framestream_stream", default=None)


@dataclass
class TileContext:
    """Where in its step the layer at work runs: which tile, which tiles follow it, which frames it stands for,
    and whether its input has reached the clip's end."""

    window: Window | None = None  # None: the whole frame
    later: tuple[Window, ...] | None = None  # the step's tiles still to run; None: not known
    # the frames of the stage at work that this step stands for, as (first, stop, of): a windowed decode's halo
    # frames are computed again by the neighbouring window, so statistics must not count them twice
    frames_owned: tuple[int, int, int] | None = None
    # whether everything before the layer at work has reached the stream's end; a look-ahead conv that holds
    # frames back clears it for the layers after it
    ending: bool = True


class StreamState:
    """One stream (one video): its layers' carries, the tile at work, and what the stream knows ahead.

    ``expected_frames``: the latent frames this stream will run, so that
    growing carries are allocated once. ``pace``: a delayed decoder's (latent
    frames a step feeds, output frames per latent frame), what its look-ahead
    convs may let out per step (:meth:`let_out`); None lets everything out (a
    window is a whole clip). ``pooling``: how GroupNorms over time pick their
    statistics (:mod:`group_norm`; None: locally). ``cache_device`` and
    ``rollback_to``: see :class:`carries.CarryStore`.
    """

    def __init__(self, cache_device: torch.device | str | None = None, expected_frames: int | None = None,
                 pace: tuple[int, int] | None = None, rollback_to: torch.device | str | None = None,
                 pooling: Pooling | None = None) -> None:
        self.carries = CarryStore(cache_device, rollback_to)
        self.expected_frames = expected_frames
        self.pace = pace
        self._pooling = pooling
        self._context = TileContext()

    @contextmanager
    def active(self) -> Iterator["StreamState"]:
        token = _ACTIVE.set(self)
        try:
            yield self
        finally:
            _ACTIVE.reset(token)

    # --- what the layer at work reads

    @property
    def window(self) -> Window | None:
        return self._context.window

    @property
    def ending(self) -> bool:
        return self._context.ending

    @property
    def pooling(self) -> Pooling | None:
        return self._pooling

    def owned(self, x: torch.Tensor) -> torch.Tensor:
        """The part of an activation ``x`` that this tile and step own: all of it unless tiling, or decoding in
        temporal windows (a ``[B, C, T, H, W]`` tensor then keeps the window's own frames)."""
        window, frames = self._context.window, self._context.frames_owned
        if frames is not None and x.ndim == 5:
            first, stop, of = frames
            scale = x.shape[2] // of
            x = x[:, :, first * scale : stop * scale]
        if window is None:
            return x
        return x[(..., *window.region(window.scale_of(x), window.owned, relative=True))]

    # --- what the step sets, in this order

    def begin_step(self, ending: bool) -> None:
        """A step starts; ``ending``: the clip's last latent frame is in it (or it is a whole window)."""
        self._context = TileContext(ending=ending)

    @contextmanager
    def owning(self, frames: tuple[int, int, int] | None) -> Iterator[None]:
        """The stage run inside stands for ``frames`` of its input (see :attr:`TileContext.frames_owned`)."""
        before, self._context.frames_owned = self._context.frames_owned, frames
        try:
            yield
        finally:
            self._context.frames_owned = before

    @contextmanager
    def pooled(self, pooling: Pooling | None) -> Iterator[None]:
        """GroupNorms run inside pick their statistics by ``pooling`` (:class:`group_norm.Pooling`)."""
        before, self._pooling = self._pooling, pooling
        try:
            yield
        finally:
            self._pooling = before

    @contextmanager
    def tile(self, window: Window | None, later: tuple[Window, ...] | None = None) -> Iterator[None]:
        """Runs one tile, before the step's ``later`` tiles (given, the tile overwrites the carries it owns in
        place); every tile of a step starts from the same :attr:`ending` (they all hold back alike)."""
        context = self._context
        ending = context.ending
        context.window, context.later = window, later
        try:
            yield
        finally:
            context.window, context.later, context.ending = None, None, ending

    def hold_back(self) -> None:
        """The layers after the one at work have not reached the clip's end: it holds frames back."""
        self._context.ending = False

    # --- the layers' carries, in the tile at work

    def read_frames(self, layer: torch.nn.Module, like: torch.Tensor, name: CarryName = "frames") -> torch.Tensor | None:
        return self.carries.read(layer, like, name, self._context.window)

    def write_frames(self, layer: torch.nn.Module, frames: torch.Tensor, name: CarryName = "frames") -> None:
        self.carries.write(layer, frames, name, self._context.window, self._context.later)

    def grow(self, layer: torch.nn.Module, x: torch.Tensor, latent_frames: float, dim: int,
             positions: tuple[int, int] | None) -> torch.Tensor:
        return self.carries.grow(layer, x, latent_frames, dim, positions, self._context.window, self.expected_frames)

    def let_out(self, layer: torch.nn.Module, frames_per_latent: int, ready: int) -> int:
        """How many of its ``ready`` windows a look-ahead conv at ``frames_per_latent`` lets out this step.

        A step feeds ``n`` latent frames; at the clip's end every such conv has
        one window more (its look-ahead into the padding) and the flush steps
        feed nothing. Each conv lets out on average ``n + 1 / R`` latent
        frames' worth a step (``R``: the output's frames per latent frame),
        at most one frame more than that at once: the output stage, the
        costliest, makes at most one frame more than a step's ``n * R``, and no
        stage lets out faster than the next can take, so nothing piles up in
        the carries while the end flushes through.
        """
        n, finest = self.pace
        per_step = frames_per_latent * (n + 1 / finest)
        credit = min((self.carries.earlier(layer).credit or 0.0) + per_step, math.ceil(per_step))
        out = min(ready, math.floor(credit))
        self.carries.writing(layer).credit = credit - out
        return out


@eager_only
def active_state() -> StreamState | None:
    return _ACTIVE.get()


@eager_only
def first_call(layer: torch.nn.Module) -> bool:
    """True while ``layer`` is in the first step of its stream (or outside any stream)."""
    state = _ACTIVE.get()
    if state is None:
        return True
    state.carries.writing(layer).seen = True
    return not state.carries.earlier(layer).seen


@eager_only
def sliding_windows(layer: torch.nn.Module, x: torch.Tensor, kernel: int, stride: int, front_pad: int,
                    replicate: bool = False, back_pad: int = 0, frames_per_latent: int = 1,
                    edge_pad: tuple[int, int] = (0, 0)) -> torch.Tensor | None:
    """Frames of ``x`` plus the ones ``layer`` carried, covering every window completed so far.

    The stream is the whole sequence with ``front_pad`` frames in front and
    ``back_pad`` behind (a conv that looks ahead), zeros (Wan) or copies of the
    edge frame (``replicate``, LTX-Video); windows of ``kernel`` frames start
    every ``stride`` frames. Returns the span covering the windows complete so
    far (or None when none is), and carries the frames the next windows still
    need. The back padding is added once everything before ``layer`` has
    reached the stream's end; a conv that looks ahead (at ``frames_per_latent``
    frames per latent frame) lets out about as many frames a step as a step
    feeds it, holding the rest back for later steps (:meth:`StreamState.let_out`).
    ``edge_pad`` (rows, columns): the span comes with its frames' edges
    replicated that far, made in the one copy that joins the carried frames to
    ``x`` (a conv that pads by replicating its edges would copy the span again).
    """
    state = _ACTIVE.get()
    carried = state.read_frames(layer, x) if state is not None else None
    if carried is None and x.shape[2] == 0:
        return None  # nothing has reached this layer yet (a decoder that looks ahead holds frames back)
    if carried is None and front_pad:
        carried = _fill(x[:, :, :1], front_pad, replicate)
    parts = [x] if carried is None else [carried, x]
    length = sum(part.shape[2] for part in parts)
    if back_pad and (state is None or state.ending) and length:
        parts.append(_fill(parts[-1][:, :, -1:] if x.shape[2] else carried[:, :, -1:], back_pad, replicate))
    span = join_frames(parts, like=x, edge_pad=edge_pad)
    count = (span.shape[2] - kernel) // stride + 1 if span.shape[2] >= kernel else 0
    if back_pad and state is not None and state.pace is not None:
        most = state.let_out(layer, frames_per_latent, count)
        if count > most:
            count = most
            state.hold_back()  # the rest waits: the layers after this one have not reached the end
    if state is not None:
        rows, columns = edge_pad
        frames = span[:, :, count * stride : length, rows : span.shape[3] - rows, columns : span.shape[4] - columns]
        state.write_frames(layer, frames)
    if count == 0:
        return None
    return span[:, :, : (count - 1) * stride + kernel]


def join_frames(parts: list[torch.Tensor], like: torch.Tensor, edge_pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """``parts`` joined along time, laid out in memory as ``like`` is: a model that keeps its activations
    channels-last (for oneDNN's faster convs) keeps them so through its carries, where ``torch.cat``
    would follow the first part's layout (a padding of expanded copies has none). With ``edge_pad``
    (rows, columns), each frame's edges replicated that far, in the same copy."""
    rows, columns = edge_pad
    if not rows and not columns:
        if len(parts) == 1:
            return parts[0]
        if not channels_last(like):
            return torch.cat(parts, dim=2)
        return torch.cat([part.permute(0, 2, 3, 4, 1) for part in parts], dim=1).permute(0, 4, 1, 2, 3)
    batch, channels, _, height, width = like.shape
    layout = torch.channels_last_3d if channels_last(like) else torch.contiguous_format
    out = torch.empty(batch, channels, sum(part.shape[2] for part in parts), height + 2 * rows,
                      width + 2 * columns, dtype=like.dtype, device=like.device, memory_format=layout)
    start = 0
    for part in parts:
        out[:, :, start : start + part.shape[2], rows : rows + height, columns : columns + width] = part
        start += part.shape[2]
    if rows:
        inner = out[..., columns : columns + width]
        inner[..., :rows, :] = inner[..., rows : rows + 1, :]
        inner[..., rows + height :, :] = inner[..., rows + height - 1 : rows + height, :]
    if columns:  # every row, the replicated ones too: the corners are the frame's corners
        out[..., :columns] = out[..., columns : columns + 1]
        out[..., columns + width :] = out[..., columns + width - 1 : columns + width]
    return out


def channels_last(x: torch.Tensor) -> bool:
    """Whether a video's channels are innermost in memory (and not also laid out plainly, as size-1 dims allow)."""
    return x.dim() == 5 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last_3d)


def _fill(edge: torch.Tensor, frames: int, replicate: bool) -> torch.Tensor:
    """``frames`` copies of the one-frame ``edge``, or as many frames of zeros."""
    if replicate:
        return edge.expand(-1, -1, frames, -1, -1)
    return edge.new_zeros(edge.shape[0], edge.shape[1], frames, *edge.shape[3:])


@eager_only
def aligned(layer: torch.nn.Module, x: torch.Tensor, frames: int) -> torch.Tensor:
    """The next ``frames`` frames of the sequence ``x`` continues (this step's part of a residual branch's
    input), the rest held for later steps. Where the main branch looks ahead it gives fewer frames than it was
    given until the stream's end, and the residual must wait for it."""
    state = _ACTIVE.get()
    held = state.read_frames(layer, x, "held") if state is not None else None
    if held is not None and held.shape[2]:
        x = torch.cat([held, x], dim=2)
    elif x.shape[2] == frames:
        return x
    if state is not None:
        state.write_frames(layer, x[:, :, frames:], "held")
    return x[:, :, :frames]


@eager_only
def drop_first(layer: torch.nn.Module, x: torch.Tensor, count: int) -> torch.Tensor:
    """``x`` without the first ``count`` frames ``layer`` gives in its stream (however the steps cut them), e.g.
    the frames a temporal upsampler makes of a clip's first latent frame that the clip does not have."""
    state = _ACTIVE.get()
    if state is None:
        return x[:, :, count:]
    dropped = state.carries.earlier(layer).dropped or 0
    take = min(count - dropped, x.shape[2])
    if take:
        state.carries.writing(layer).dropped = dropped + take
    return x[:, :, take:]


@eager_only
def growing_carry(layer: torch.nn.Module, x: torch.Tensor, latent_frames: float, dim: int,
                  positions: tuple[int, int] | None = None) -> torch.Tensor:
    """Everything ``layer`` kept of earlier steps followed by ``x``, this step's part of a sequence along ``dim``
    that stands for ``latent_frames`` of the stream's latent frames (e.g. an attention's keys and values over
    ``frames * h * w`` tokens, or over the frames at each position).

    For layers whose every later frame reads all earlier ones (causal
    attention). The carry is one buffer of the stream's expected length,
    allocated at the first step (on the carries' device, host RAM when they are
    offloaded); without a known length it doubles when full. It is kept for the
    whole frame; a layer whose positions do not mix may run inside the tiles by
    naming the dims of ``x`` that hold rows and columns of the grid
    (``positions``): each tile then reads its box and appends what it owns.
    """
    state = _ACTIVE.get()
    if state is None:
        return x
    return state.grow(layer, x, latent_frames, dim, positions)
