"""The causal-streaming protocol, written once for every temporal layer.

A video VAE is streamed by feeding it consecutive chunks of frames. Every layer
that looks along time (a causal conv, a temporal down/up-sampler) must carry the
frames it still needs from one chunk to the next. Instead of threading a cache
list through every block's ``forward`` (the reference Wan code pastes that
boilerplate into each block), such a layer calls :func:`sliding_windows` or
:func:`first_call` with itself as the key, and the active :class:`StreamState`
keeps its carry. Blocks built from these layers need no cache code at all.

Two properties make tiling and out-of-memory recovery possible:

* A carry is kept for the *whole frame*. A spatial tile (a :class:`Window`)
  reads its own extent from it and writes back only the part it owns, so the
  tile layout may change from one step to the next.
* A carry is held once: a step overwrites it as soon as it has the new one,
  keeping aside only what the step's later tiles still read of the old one,
  and a copy in ``rollback_to`` (host RAM, for carries on a GPU) so that a
  failed step can be undone with :meth:`StreamState.rollback` and re-run
  exactly (:mod:`journal`). A carry whose size changes from step to step goes
  to a pending copy that :meth:`StreamState.commit` adopts, as do all writes of
  a trial run (:meth:`StreamState.trial`).
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
from typing import Iterator

import torch

from ..errors import FrameStreamError
from .journal import Journal

_GROWING, _GROWING_DIM, _GROWING_LENGTH = "growing", "growing_dim", "growing_length"
_ACTIVE: contextvars.ContextVar["StreamState | None"] = contextvars.ContextVar("framestream_stream", default=None)


@dataclass(frozen=True)
class Window:
    """A spatial tile in units of the step's coarsest grid (latent pixels).

    ``box`` is what the tile computes and ``owned`` the part of it whose carry
    it writes back; owned parts of a layout partition the frame. Both are
    ``(top, left, height, width)``; ``frame`` is the whole grid ``(height, width)``.
    A layer whose input is ``s`` times finer than the grid scales all three by ``s``.
    """

    box: tuple[int, int, int, int]
    owned: tuple[int, int, int, int]
    frame: tuple[int, int]

    def scale_of(self, x: torch.Tensor) -> int:
        return x.shape[-2] // self.box[2]

    def region(self, s: int, part: tuple[int, int, int, int], relative: bool = False) -> tuple[slice, slice]:
        top, left, height, width = part
        if relative:
            top, left = top - self.box[0], left - self.box[1]
        return slice(top * s, (top + height) * s), slice(left * s, (left + width) * s)


class StreamState:
    """The per-layer carries of one stream (one video), shared by all its tiles.

    ``cache_device`` keeps carries off the compute device (e.g. on the CPU when
    VRAM is short); each tile then moves just its extent in and out.
    ``rollback_to`` is where a step keeps what it overwrites, so that it can be
    undone (:meth:`rollback`); None keeps nothing, and a step that overwrote a
    carry cannot be re-run.
    """

    def __init__(self, cache_device: torch.device | str | None = None, expected_frames: int | None = None,
                 pace: tuple[int, int] | None = None, rollback_to: torch.device | str | None = None) -> None:
        self.cache_device = torch.device(cache_device) if cache_device is not None else None
        self._journal = Journal(torch.device(rollback_to) if rollback_to is not None else None)
        self._in_place = True  # False during a trial run: every write goes to the pending copy
        # latent frames this stream will run, so that growing carries are allocated once
        self.expected_frames = expected_frames
        # a delayed decoder's (latent frames a step feeds, output frames per latent frame): what its look-ahead
        # convs may let out per step (:meth:`let_out`); None lets everything out (a window is a whole clip)
        self.pace = pace
        # whether everything before the layer at work has reached the stream's end (its input is complete); the
        # engine sets it at each step, a look-ahead conv that holds frames back clears it for the layers after it
        self.ending = True
        self.window: Window | None = None
        # the step's tiles still to run after :attr:`window`; None: not known, so tiles write a second copy
        self._later: tuple[Window, ...] | None = None
        # the frames of the stage at work that this step stands for, as (first, stop, of): a windowed decode's
        # halo frames are computed again by the neighbouring window, so statistics must not count them twice
        self.frames_owned: tuple[int, int, int] | None = None
        self.pooling = None  # how GroupNorms over time pick their statistics (:mod:`group_norm`); None: locally
        self._committed: dict[int, dict] = {}
        self._pending: dict[int, dict] = {}
        self._written: set[int] = set()

    @contextmanager
    def active(self) -> Iterator["StreamState"]:
        token = _ACTIVE.set(self)
        try:
            yield self
        finally:
            _ACTIVE.reset(token)

    @contextmanager
    def tile(self, window: Window | None, later: tuple[Window, ...] | None = None) -> Iterator[None]:
        """Runs one tile, before the step's ``later`` tiles (given, the tile overwrites the carries it owns in
        place); every tile of a step starts from the same :attr:`ending` (they all hold back alike)."""
        self.window, self._later, ending = window, later, self.ending
        try:
            yield
        finally:
            self.window, self._later, self.ending = None, None, ending

    @contextmanager
    def trial(self) -> Iterator[None]:
        """A run whose writes are all pending, to be dropped by :meth:`rollback` (e.g. a pass that only gathers
        statistics): the carries stay as they were, whatever the run does."""
        self._in_place = False
        try:
            yield
        finally:
            self._in_place = True

    def offload(self, device: torch.device) -> None:
        """Keeps the carries on ``device`` from now on (host RAM when the GPU runs short), the committed ones too."""
        self.cache_device = device
        for values in self._committed.values():
            for key, value in values.items():
                if isinstance(value, torch.Tensor):
                    values[key] = value.to(device)

    def commit(self) -> None:
        """Adopts everything the step wrote; call once the whole step (all tiles) succeeded."""
        for key, values in self._pending.items():
            self._committed.setdefault(key, {}).update(values)
        self._pending, self._written = {}, set()
        self._journal.clear()

    @property
    def can_roll_back(self) -> bool:
        """Whether :meth:`rollback` can still restore the carries (nothing was overwritten without a backup)."""
        return not self._journal.lost

    def rollback(self) -> None:
        """Forgets a failed step's writes; the carries are as they were before it."""
        self._pending, self._written = {}, set()
        if not self._journal.undo():
            raise FrameStreamError("this step cannot be re-run: it overwrote carries of which no copy was kept "
                                   "(a StreamState without rollback_to)")

    def value(self, layer: torch.nn.Module, key: str, pending_only: bool = False):
        """What ``layer`` stored under ``key``: this step's write if any, else (unless ``pending_only``) the committed one."""
        pending = self._pending.get(id(layer), {})
        if key in pending or pending_only:
            return pending.get(key)
        return self._committed.get(id(layer), {}).get(key)

    def set_value(self, layer: torch.nn.Module, key: str, value) -> None:
        self._pending.setdefault(id(layer), {})[key] = value

    def values(self, key: str, pending: bool = False) -> dict[int, object]:
        """Every layer's committed (or this step's) ``key`` by layer id, e.g. statistics handed to the next pass."""
        source = self._pending if pending else self._committed
        return {layer: values[key] for layer, values in source.items() if key in values}

    def owned(self, x: torch.Tensor) -> torch.Tensor:
        """The part of an activation ``x`` that this tile and step own: all of it unless tiling, or decoding in
        temporal windows (a ``[B, C, T, H, W]`` tensor then keeps the window's own frames)."""
        window, frames = self.window, self.frames_owned
        if frames is not None and x.ndim == 5:
            first, stop, of = frames
            scale = x.shape[2] // of
            x = x[:, :, first * scale : stop * scale]
        if window is None:
            return x
        return x[(..., *window.region(window.scale_of(x), window.owned, relative=True))]

    def snapshot(self) -> dict[int, dict]:
        """The committed carries as they are now, for :meth:`restore` (a stream's mark): fixed-size carries
        copied, since later steps overwrite them in place; a growing carry by its length, since later steps only
        write past it."""
        return {layer: {key: _copied(key, value) for key, value in values.items()}
                for layer, values in self._committed.items()}

    def restore(self, snapshot: dict[int, dict]) -> None:
        """Back to a :meth:`snapshot` (which stays usable): later steps' carries are dropped; a growing carry
        keeps its current buffer, whose frames before the snapshot's length are the snapshot's."""
        restored = {}
        for layer, values in snapshot.items():
            values = {key: _copied(key, value) for key, value in values.items()}
            current = self._committed.get(layer, {}).get(_GROWING)
            if current is not None and _GROWING in values:
                values[_GROWING] = current
            restored[layer] = values
        self._committed, self._pending, self._written = restored, {}, set()
        self._journal.clear()

    def carry_over(self, earlier: "StreamState", key: str) -> None:
        """Starts this (fresh) stream with ``earlier``'s committed ``key`` values, e.g. the statistics a windowed
        decode keeps gathering over the whole clip while each window starts a fresh stream."""
        for layer, value in earlier.values(key).items():
            self._committed.setdefault(layer, {})[key] = value

    def carry_bytes(self, layers: set[int] | None = None) -> int:
        """Bytes of the committed fixed-size carries (growing ones: :meth:`growing_bytes`), of ``layers`` (ids) or
        of all layers."""
        return sum(size for (layer, _), (_, size) in self.carry_shapes().items() if layers is None or layer in layers)

    def carry_shapes(self) -> dict[tuple[int, str], tuple[torch.Size, int]]:
        """The committed fixed-size carries' shapes and bytes, by (layer id, key): a step that changes a carry's
        shape holds the old one beside the new one until it commits (in tiles, :meth:`write_frames`)."""
        return {(layer, k): (v.shape, v.nbytes) for layer, d in self._committed.items() for k, v in d.items()
                if isinstance(v, torch.Tensor) and k != _GROWING}

    def written(self) -> set[int]:
        """The layers (ids) that wrote frames to their carries so far in this step."""
        return set(self._written)

    def frame_carries(self, layer_id: int) -> dict[str, torch.Tensor]:
        """The whole-frame carries ``layer_id`` holds now (this step's writes where there are any), by key."""
        values = {**self._committed.get(layer_id, {}), **self._pending.get(layer_id, {})}
        if _GROWING in values:
            raise NotImplementedError("a carry that grows with the clip, in a tiled layer")
        return {key: value for key, value in values.items() if isinstance(value, torch.Tensor)}

    def growing_bytes(self) -> int:
        """Bytes the growing carries hold so far (their committed frames, not the room allocated ahead)."""
        total = 0
        for values in self._committed.values():
            buffer = values.get(_GROWING)
            if buffer is not None:
                dim = values[_GROWING_DIM]
                total += buffer.nbytes // buffer.shape[dim] * values.get(_GROWING_LENGTH, 0)
        return total

    def grow(self, layer: torch.nn.Module, x: torch.Tensor, latent_frames: float, dim: int,
             positions: tuple[int, int] | None) -> torch.Tensor:
        """See :func:`growing_carry`."""
        window = self.window
        if window is not None and positions is None:
            raise RuntimeError("this growing carry is kept for the whole frame: run its layer outside the tiles")
        committed = self._committed.setdefault(id(layer), {})
        buffer, length = committed.get(_GROWING), committed.get(_GROWING_LENGTH, 0)
        need = length + x.shape[dim]
        if buffer is None or buffer.shape[dim] < need:
            buffer = self._grown(committed, x, latent_frames, dim, positions, need)
        self._pending.setdefault(id(layer), {})[_GROWING_LENGTH] = need
        if window is None:
            buffer.narrow(dim, length, x.shape[dim]).copy_(x)
            return buffer.narrow(dim, 0, need).to(x.device, x.dtype)  # no copy where the buffer is on the device
        # a tile writes the positions it owns and reads the box it computes (as sliding_windows does)
        s = x.shape[positions[0]] // window.box[2]
        owned, box, mine = _at(positions, window.region(s, window.owned)), _at(positions, window.region(s, window.box)), \
            _at(positions, window.region(s, window.owned, relative=True))
        buffer.narrow(dim, length, x.shape[dim])[owned] = x[mine]
        earlier = buffer.narrow(dim, 0, length)[box].to(x.device, x.dtype)
        return torch.cat([earlier, x], dim=dim)

    def _grown(self, committed: dict, x: torch.Tensor, latent_frames: float, dim: int,
               positions: tuple[int, int] | None, need: int) -> torch.Tensor:
        """Room for the stream's expected length (or double the old room), with the committed part kept."""
        old, length = committed.get(_GROWING), committed.get(_GROWING_LENGTH, 0)
        ahead = math.ceil(x.shape[dim] / latent_frames * (self.expected_frames or 0))
        shape = list(x.shape)
        shape[dim] = max(need, ahead, 2 * old.shape[dim] if old is not None else 0)
        if self.window is not None:
            s = x.shape[positions[0]] // self.window.box[2]
            shape[positions[0]], shape[positions[1]] = (n * s for n in self.window.frame)
        grown = x.new_empty(shape, device=self.cache_device or x.device)
        if length:
            grown.narrow(dim, 0, length).copy_(old.narrow(dim, 0, length))
        committed[_GROWING], committed[_GROWING_DIM] = grown, dim
        return grown

    def seen(self, layer: torch.nn.Module) -> bool:
        seen = self._committed.get(id(layer), {}).get("seen", False)
        self._pending.setdefault(id(layer), {})["seen"] = True
        return seen

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
        credit = min(self.earlier(layer, "credit", 0.0) + per_step, math.ceil(per_step))
        out = min(ready, math.floor(credit))
        self.set_value(layer, "credit", credit - out)
        return out

    def earlier(self, layer: torch.nn.Module, key: str, default=None):
        """What ``layer`` stored under ``key`` before this step: every tile of a step reads the same."""
        return self._committed.get(id(layer), {}).get(key, default)

    def read_frames(self, layer: torch.nn.Module, like: torch.Tensor, key: str = "frames") -> torch.Tensor | None:
        frames = self._committed.get(id(layer), {}).get(key)
        if frames is None:
            return None
        window = self.window
        if window is not None:
            rows, cols = window.region(window.scale_of(like), window.box)
            frames = self._journal.patch(id(layer), key, frames[..., rows, cols], window.box)
        return frames.to(like.device, like.dtype)

    def write_frames(self, layer: torch.nn.Module, frames: torch.Tensor, key: str = "frames") -> None:
        device = self.cache_device or frames.device
        self._written.add(id(layer))
        committed = self._committed.setdefault(id(layer), {})
        pending = self._pending.setdefault(id(layer), {})
        window = self.window
        if window is None:
            # a copy: a slice would keep the whole chunk alive until the next step
            if self._in_place and key in committed:
                carry = committed[key]
                self._journal.replacing(committed, key)
                if _can_overwrite(carry, frames, device):  # no new carry beside the old one while the layer runs
                    carry.copy_(frames)
                else:
                    committed[key] = frames.to(device, copy=True)
            else:
                pending[key] = frames.to(device, copy=True)
            return
        s = window.scale_of(frames)
        height, width = window.frame
        shape = (*frames.shape[:3], height * s, width * s)
        old = committed.get(key)
        owned = frames[(..., *window.region(s, window.owned, relative=True))]
        if self._in_place and self._later is not None and key not in pending and old is not None \
                and old.shape == shape:
            self._journal.keep_for((w.box for w in self._later), id(layer), key, old, window.owned, s)
            self._journal.overwriting(committed, key, window.owned, s)
            old[(..., *window.region(s, window.owned))] = owned
            return
        if key not in pending:  # a second copy, adopted at the commit: the carry changes size, or a trial run
            pending[key] = frames.new_empty(shape, device=device)
        pending[key][(..., *window.region(s, window.owned))] = owned


def _copied(key: str, value):
    """A carry value that later steps cannot change: tensors copied, except a growing carry's buffer."""
    return value.clone() if isinstance(value, torch.Tensor) and key != _GROWING else value


def _can_overwrite(carry: torch.Tensor, frames: torch.Tensor, device: torch.device) -> bool:
    """Whether ``frames`` can be copied into ``carry`` itself: same shape, dtype and place, and not a view of it."""
    return carry.shape == frames.shape and carry.dtype == frames.dtype and carry.device == device \
        and carry.untyped_storage().data_ptr() != frames.untyped_storage().data_ptr()


def _at(positions: tuple[int, int], region: tuple[slice, slice]) -> tuple[slice, ...]:
    """An index selecting ``region`` (rows, columns) on the dims ``positions`` of a tensor."""
    index = [slice(None)] * (max(positions) + 1)
    index[positions[0]], index[positions[1]] = region
    return tuple(index)


def active_state() -> StreamState | None:
    return _ACTIVE.get()


def first_call(layer: torch.nn.Module) -> bool:
    """True while ``layer`` is in the first step of its stream (or outside any stream)."""
    state = _ACTIVE.get()
    return state is None or not state.seen(layer)


def sliding_windows(layer: torch.nn.Module, x: torch.Tensor, kernel: int, stride: int, front_pad: int,
                    replicate: bool = False, back_pad: int = 0, frames_per_latent: int = 1) -> torch.Tensor | None:
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
    """
    state = _ACTIVE.get()
    carried = state.read_frames(layer, x) if state is not None else None
    if carried is None and x.shape[2] == 0:
        return None  # nothing has reached this layer yet (a decoder that looks ahead holds frames back)
    if carried is None and front_pad:
        carried = _fill(x[:, :, :1], front_pad, replicate)
    frames = x if carried is None else torch.cat([carried, x], dim=2)
    span = frames
    if back_pad and (state is None or state.ending) and frames.shape[2]:
        span = torch.cat([frames, _fill(frames[:, :, -1:], back_pad, replicate)], dim=2)
    count = (span.shape[2] - kernel) // stride + 1 if span.shape[2] >= kernel else 0
    if back_pad and state is not None and state.pace is not None:
        most = state.let_out(layer, frames_per_latent, count)
        if count > most:
            count, state.ending = most, False  # the rest waits: the layers after this one have not reached the end
    if state is not None:
        state.write_frames(layer, frames[:, :, count * stride :])
    if count == 0:
        return None
    return span[:, :, : (count - 1) * stride + kernel]


def _fill(edge: torch.Tensor, frames: int, replicate: bool) -> torch.Tensor:
    """``frames`` copies of the one-frame ``edge``, or as many frames of zeros."""
    if replicate:
        return edge.expand(-1, -1, frames, -1, -1)
    return edge.new_zeros(edge.shape[0], edge.shape[1], frames, *edge.shape[3:])


def aligned(layer: torch.nn.Module, x: torch.Tensor, frames: int) -> torch.Tensor:
    """The next ``frames`` frames of the sequence ``x`` continues (this step's part of a residual branch's
    input), the rest held for later steps. Where the main branch looks ahead it gives fewer frames than it was
    given until the stream's end, and the residual must wait for it."""
    state = _ACTIVE.get()
    held = state.read_frames(layer, x, key="held") if state is not None else None
    if held is not None and held.shape[2]:
        x = torch.cat([held, x], dim=2)
    elif x.shape[2] == frames:
        return x
    if state is not None:
        state.write_frames(layer, x[:, :, frames:], key="held")
    return x[:, :, :frames]


def drop_first(layer: torch.nn.Module, x: torch.Tensor, count: int) -> torch.Tensor:
    """``x`` without the first ``count`` frames ``layer`` gives in its stream (however the steps cut them), e.g.
    the frames a temporal upsampler makes of a clip's first latent frame that the clip does not have."""
    state = _ACTIVE.get()
    if state is None:
        return x[:, :, count:]
    dropped = state.earlier(layer, "dropped", 0)
    take = min(count - dropped, x.shape[2])
    if take:
        state.set_value(layer, "dropped", dropped + take)
    return x[:, :, take:]


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
