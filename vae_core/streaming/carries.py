"""What every layer of one stream keeps from step to step, and how a step's writes are adopted or undone.

Each layer that looks along time has one :class:`LayerRecord`: the frames it
still needs (whole frame, so the tile layout may change between steps), its
counters, a GroupNorm's running statistics, a causal attention's growing
buffer. A step writes to a *pending* record that :meth:`CarryStore.commit`
adopts once every tile succeeded, except where it overwrites a frame carry in
place (one copy of the carries while a step runs); the :class:`journal.Journal`
then keeps what the later tiles still read and what an undo puts back.

A pending record holds only what the step wrote: a field left None was not
written, and the committed value stands.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Iterator, Literal

import torch

from ..errors import FrameStreamError
from .journal import Journal
from .window import Window

if TYPE_CHECKING:
    from .group_norm import Moments

# a sliding window's earlier frames ("frames", :func:`state.sliding_windows`), a residual branch's input waiting
# for its main branch ("held", :func:`state.aligned`)
CarryName = Literal["frames", "held"]


@dataclass
class Growing:
    """One buffer with room for the stream's length, for a carry that only grows (causal attention's keys and
    values); the whole frame, whatever the tiles."""

    buffer: torch.Tensor
    dim: int  # the dim along which it grows


@dataclass
class LayerRecord:
    """What one layer keeps between the steps of its stream."""

    frames: dict[CarryName, torch.Tensor] = field(default_factory=dict)  # [B, C, t, H, W], whole frame
    seen: bool | None = None  # the layer ran in an earlier step
    credit: float | None = None  # a look-ahead conv's fraction of a frame it may let out later
    dropped: int | None = None  # leading frames dropped so far (:func:`state.drop_first`)
    fed: int | None = None  # frames fed so far (an encoder that pads the clip's end)
    moments: Moments | None = None  # a GroupNorm's running statistics
    growing_length: int | None = None  # frames written to :attr:`growing`
    growing: Growing | None = None  # committed records only: allocated once, written past its length

    def adopt(self, pending: "LayerRecord") -> None:
        """Takes what a step wrote to ``pending``."""
        self.frames.update(pending.frames)
        for name in _STEP_FIELDS:
            value = getattr(pending, name)
            if value is not None:
                setattr(self, name, value)

    def copy(self) -> "LayerRecord":
        """A record later steps cannot change: frame carries copied (they are overwritten in place), a growing
        buffer shared (later steps only write past its length)."""
        record = LayerRecord(frames={name: carry.clone() for name, carry in self.frames.items()})
        for name in (*_STEP_FIELDS, "growing"):
            setattr(record, name, getattr(self, name))
        return record


_STEP_FIELDS = tuple(f.name for f in fields(LayerRecord) if f.name not in ("frames", "growing"))


class CarryStore:
    """The records of one stream's layers: committed, this step's pending writes, and the step's journal.

    ``device`` keeps carries off the compute device (host RAM when VRAM is
    short; None: where they are computed). ``rollback_to`` is where a step
    keeps what it overwrites so that :meth:`rollback` can undo it; None keeps
    nothing, and a step that overwrote a carry cannot be re-run.
    """

    def __init__(self, device: torch.device | str | None = None, rollback_to: torch.device | str | None = None) -> None:
        self.device = torch.device(device) if device is not None else None
        self._journal = Journal(torch.device(rollback_to) if rollback_to is not None else None)
        self._in_place = True  # False during a trial run: frames are not kept, other writes go to the pending record
        self._committed: dict[int, LayerRecord] = {}
        self._pending: dict[int, LayerRecord] = {}
        self._written: set[int] = set()

    # --- a layer's record

    def earlier(self, layer: torch.nn.Module) -> LayerRecord:
        """What ``layer`` committed before this step: every tile of a step reads the same. Read only."""
        return self._committed.get(id(layer)) or LayerRecord()

    def this_step(self, layer: torch.nn.Module) -> LayerRecord:
        """What ``layer`` wrote so far in this step (fields None where it wrote nothing). Read only."""
        return self._pending.get(id(layer)) or LayerRecord()

    def writing(self, layer: torch.nn.Module) -> LayerRecord:
        """``layer``'s pending record, to write this step's values to."""
        return self._pending.setdefault(id(layer), LayerRecord())

    # --- the step's end

    @contextmanager
    def trial(self) -> Iterator[None]:
        """A run whose writes go to the pending records, to be dropped by :meth:`rollback` (e.g. a pass that only
        gathers statistics): the carries stay as they were, whatever the run does. Its frames are not kept at all:
        a step reads only what earlier steps committed, so no copy of the carries is made to be dropped."""
        self._in_place = False
        try:
            yield
        finally:
            self._in_place = True

    def commit(self) -> None:
        """Adopts everything the step wrote; call once the whole step (all tiles) succeeded."""
        for layer, pending in self._pending.items():
            self._committed.setdefault(layer, LayerRecord()).adopt(pending)
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

    def offload(self, device: torch.device) -> None:
        """Keeps the carries on ``device`` from now on (host RAM when the GPU runs short), the committed ones too."""
        self.device = device
        for record in self._committed.values():
            record.frames = {name: carry.to(device) for name, carry in record.frames.items()}
            if record.growing is not None:
                record.growing = Growing(record.growing.buffer.to(device), record.growing.dim)

    # --- marks

    def snapshot(self) -> dict[int, LayerRecord]:
        """The committed records as they are now, for :meth:`restore` (a stream's mark)."""
        return {layer: record.copy() for layer, record in self._committed.items()}

    def restore(self, snapshot: dict[int, LayerRecord]) -> None:
        """Back to a :meth:`snapshot` (which stays usable): later steps' records are dropped; a growing carry
        keeps its current buffer, whose frames before the snapshot's length are the snapshot's."""
        restored = {}
        for layer, record in snapshot.items():
            record = record.copy()
            current = self._committed.get(layer)
            if record.growing is not None and current is not None and current.growing is not None:
                record.growing = current.growing
            restored[layer] = record
        self._committed, self._pending, self._written = restored, {}, set()
        self._journal.clear()

    # --- statistics handed from pass to pass

    def moments(self, pending: bool = False) -> dict[int, Moments]:
        """Every GroupNorm's committed (or this step's) statistics, by layer id."""
        source = self._pending if pending else self._committed
        return {layer: record.moments for layer, record in source.items() if record.moments is not None}

    def take_moments(self, earlier: "CarryStore") -> None:
        """Starts this (fresh) store with ``earlier``'s committed statistics, e.g. the statistics a windowed
        decode keeps gathering over the whole clip while each window starts a fresh stream."""
        for layer, moments in earlier.moments().items():
            self._committed.setdefault(layer, LayerRecord()).moments = moments

    # --- sizes, for the memory plan and the distributed exchange

    def carry_bytes(self, layers: set[int] | None = None) -> int:
        """Bytes of the committed frame carries (growing ones: :meth:`growing_bytes`), of ``layers`` (ids) or of
        all layers."""
        return sum(size for (layer, _), (_, size) in self.carry_shapes().items() if layers is None or layer in layers)

    def carry_shapes(self) -> dict[tuple[int, CarryName], tuple[torch.Size, int]]:
        """The committed frame carries' shapes and bytes, by (layer id, name): a step that changes a carry's
        shape holds the old one beside the new one until it commits (in tiles, :meth:`write`)."""
        return {(layer, name): (carry.shape, carry.nbytes) for layer, record in self._committed.items()
                for name, carry in record.frames.items()}

    def pending_bytes(self) -> int:
        """Bytes of the second copies this step wrote so far (carries that change size, trial runs)."""
        return sum(carry.nbytes for record in self._pending.values() for carry in record.frames.values())

    def growing_bytes(self) -> int:
        """Bytes the growing carries hold so far (their committed frames, not the room allocated ahead)."""
        total = 0
        for record in self._committed.values():
            if record.growing is not None:
                buffer = record.growing.buffer
                total += buffer.nbytes // buffer.shape[record.growing.dim] * (record.growing_length or 0)
        return total

    def written(self) -> set[int]:
        """The layers (ids) that wrote frames to their carries so far in this step."""
        return set(self._written)

    def frame_carries(self, layer_id: int) -> dict[CarryName, torch.Tensor]:
        """The whole-frame carries ``layer_id`` holds now (this step's writes where there are any), by name."""
        committed, pending = self._committed.get(layer_id), self._pending.get(layer_id)
        if committed is not None and committed.growing is not None:
            raise NotImplementedError("a carry that grows with the clip, in a tiled layer")
        return {**(committed.frames if committed else {}), **(pending.frames if pending else {})}

    # --- frame carries, read and written tile by tile

    def read(self, layer: torch.nn.Module, like: torch.Tensor, name: CarryName,
             window: Window | None) -> torch.Tensor | None:
        """``layer``'s committed carry ``name`` over the tile's box (as it was before this step's earlier tiles
        wrote theirs), on ``like``'s device and dtype; None before the layer wrote one."""
        record = self._committed.get(id(layer))
        frames = record.frames.get(name) if record is not None else None
        if frames is None:
            return None
        if window is not None:
            rows, cols = window.region(window.scale_of(like), window.box)
            frames = self._journal.patch(id(layer), name, frames[..., rows, cols], window.box)
        return frames.to(like.device, like.dtype)

    def write(self, layer: torch.nn.Module, frames: torch.Tensor, name: CarryName, window: Window | None,
              later: tuple[Window, ...] | None) -> None:
        """Keeps ``frames`` (``[B, C, t, h, w]``, the tile's box) as ``layer``'s carry ``name``: the part the tile
        owns. ``later``: the step's tiles still to come (None: not known, so a second copy is written)."""
        device = self.device or frames.device
        self._written.add(id(layer))
        if not self._in_place:  # a trial: dropped unread (see :meth:`trial`)
            return
        record = self._committed.get(id(layer))
        committed = record.frames if record is not None else {}  # written to only where it has the carry already
        pending = self.writing(layer).frames
        if window is None:
            # a copy: a slice would keep the whole chunk alive until the next step
            if name in committed:
                carry = committed[name]
                self._journal.replacing(committed, name)
                if _can_overwrite(carry, frames, device):  # no new carry beside the old one while the layer runs
                    carry.copy_(frames)
                else:
                    committed[name] = frames.to(device, copy=True)
            else:
                pending[name] = frames.to(device, copy=True)
            return
        s = window.scale_of(frames)
        height, width = window.frame
        shape = (*frames.shape[:3], height * s, width * s)
        old = committed.get(name)
        owned = frames[(..., *window.region(s, window.owned, relative=True))]
        if later is not None and name not in pending and old is not None and old.shape == shape:
            self._journal.keep_for((w.box for w in later), id(layer), name, old, window.owned, s)
            self._journal.overwriting(committed, name, window.owned, s)
            old[(..., *window.region(s, window.owned))] = owned
            return
        if name not in pending:  # a second copy, adopted at the commit: the carry is new or changes size
            pending[name] = frames.new_empty(shape, device=device)
        pending[name][(..., *window.region(s, window.owned))] = owned

    # --- growing carries

    def grow(self, layer: torch.nn.Module, x: torch.Tensor, latent_frames: float, dim: int,
             positions: tuple[int, int] | None, window: Window | None, expected_frames: int | None) -> torch.Tensor:
        """See :func:`state.growing_carry`."""
        if window is not None and positions is None:
            raise RuntimeError("this growing carry is kept for the whole frame: run its layer outside the tiles")
        record = self._committed.setdefault(id(layer), LayerRecord())
        length = record.growing_length or 0
        need = length + x.shape[dim]
        if record.growing is None or record.growing.buffer.shape[dim] < need:
            ahead = math.ceil(x.shape[dim] / latent_frames * (expected_frames or 0))
            self._grown(record, x, dim, positions, window, max(need, ahead))
        buffer = record.growing.buffer
        self.writing(layer).growing_length = need
        if window is None:
            buffer.narrow(dim, length, x.shape[dim]).copy_(x)
            return buffer.narrow(dim, 0, need).to(x.device, x.dtype)  # no copy where the buffer is on the device
        # a tile writes the positions it owns and reads the box it computes (as sliding windows do)
        s = x.shape[positions[0]] // window.box[2]
        owned, box = _at(positions, window.region(s, window.owned)), _at(positions, window.region(s, window.box))
        mine = _at(positions, window.region(s, window.owned, relative=True))
        buffer.narrow(dim, length, x.shape[dim])[owned] = x[mine]
        earlier = buffer.narrow(dim, 0, length)[box].to(x.device, x.dtype)
        return torch.cat([earlier, x], dim=dim)

    def _grown(self, record: LayerRecord, x: torch.Tensor, dim: int, positions: tuple[int, int] | None,
               window: Window | None, room: int) -> None:
        """Room for ``room`` frames (or double the old room), the whole frame, with the committed part kept."""
        old, length = record.growing, record.growing_length or 0
        shape = list(x.shape)
        shape[dim] = max(room, 2 * old.buffer.shape[dim] if old is not None else 0)
        if window is not None:
            s = x.shape[positions[0]] // window.box[2]
            shape[positions[0]], shape[positions[1]] = (n * s for n in window.frame)
        grown = x.new_empty(shape, device=self.device or x.device)
        if length:
            grown.narrow(dim, 0, length).copy_(old.buffer.narrow(dim, 0, length))
        record.growing = Growing(grown, dim)


def _can_overwrite(carry: torch.Tensor, frames: torch.Tensor, device: torch.device) -> bool:
    """Whether ``frames`` can be copied into ``carry`` itself: same shape, dtype and place, and not a view of it."""
    return carry.shape == frames.shape and carry.dtype == frames.dtype and carry.device == device \
        and carry.untyped_storage().data_ptr() != frames.untyped_storage().data_ptr()


def _at(positions: tuple[int, int], region: tuple[slice, slice]) -> tuple[slice, ...]:
    """An index selecting ``region`` (rows, columns) on the dims ``positions`` of a tensor."""
    index = [slice(None)] * (max(positions) + 1)
    index[positions[0]], index[positions[1]] = region
    return tuple(index)
