"""One decode's tiles spread over several processes (``torch.distributed``), equal to the single-process decode.

Each step, rank 0 runs the latent-resolution stages on the whole frame and
broadcasts their output; every rank runs its own share of the tiles (runs of
neighbouring tiles, balanced by area) and keeps their carries. A tile reads
its neighbours' carries where their boxes overlap, so once the step's tiles
are done each rank sends the parts its tiles own to the ranks whose tiles
read them, and the blended frames are summed over the ranks: every rank sees
the same frames (so a delayed decoder's flush stops alike everywhere), and
rank 0 alone writes them. Before each exchange the ranks agree that all of
them got there; a failure on any one stops them all, and nothing is written.

The backend follows the device: NCCL for CUDA, gloo on the CPU. Norms that
need statistics over all tiles (GroupNorm over the clip or the step) are not
spread: their statistics would have to be gathered too. Each rank allocates
whole-frame carries, of which it fills its tiles' boxes.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

import torch
import torch.distributed as dist

from ..errors import FrameStreamError
from . import engine, memory
from .model import CausalVideoVAE
from .settings import Settings, quiet
from .sinks import CallbackSink, FrameSink, Sink
from .state import StreamState
from .tiler import Tiler

SPREADABLE_NORMS = ("position", "frame")  # statistics that never cross a tile's edge


class Ranks:
    """This process's place in a process group, and the collectives the tiles need."""

    def __init__(self, group=None, device: torch.device | None = None) -> None:
        if not dist.is_available() or not dist.is_initialized():
            raise FrameStreamError("a distributed decode needs torch.distributed initialised (run it under torchrun, "
                                   "or call torch.distributed.init_process_group first)")
        self.group = group
        self.rank, self.size = dist.get_rank(group), dist.get_world_size(group)
        # NCCL moves CUDA tensors only; gloo CPU tensors
        nccl = dist.get_backend(group) == "nccl"
        self.device = device if nccl and device is not None else torch.device("cpu")
        self.later_error: BaseException | None = None  # a failure between two agreements (rank 0 writing, say)

    def agree(self, error: BaseException | None = None) -> None:
        """Every rank calls this at the same point: if any of them failed, all raise (the failed one its own error)."""
        error, self.later_error = error or self.later_error, None
        flag = torch.tensor([self.rank + 1 if error is not None else 0], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self.group)
        if error is not None:
            raise error
        if flag.item():
            raise FrameStreamError(f"rank {flag.item() - 1} of the distributed decode failed; every rank stopped "
                                   "and nothing was written")

    def broadcast(self, x: torch.Tensor | None, like: torch.Tensor, flag: bool) -> tuple[torch.Tensor, bool]:
        """Rank 0's ``x`` (5-D, ``like``'s dtype and device) and ``flag`` on every rank."""
        header = torch.tensor([*x.shape, flag] if self.rank == 0 else [0] * 6, device=self.device)
        dist.broadcast(header, 0, group=self.group)
        *shape, flag = header.tolist()
        if self.rank != 0:
            x = torch.empty(shape, dtype=like.dtype, device=like.device)
        data = x.to(self.device)
        dist.broadcast(data, 0, group=self.group)
        return data.to(like.device), bool(flag)

    def sum(self, x: torch.Tensor) -> torch.Tensor:
        """The sum of ``x`` over all ranks, on every rank, in place where the device allows."""
        data = x.to(self.device)
        dist.all_reduce(data, group=self.group)
        return data if data.device == x.device else x.copy_(data)


def share(count: int, areas: list[int], ranks: int) -> list[range]:
    """Splits ``count`` tiles (in layout order, so neighbours stay together) into ``ranks`` runs of about equal area."""
    total, runs, start, done = sum(areas), [], 0, 0
    for rank in range(ranks):
        stop = start
        goal = total * (rank + 1) / ranks
        # leave at least one tile for every rank still to come
        while stop < count - (ranks - rank - 1) and (stop == start or done + areas[stop] / 2 <= goal):
            done += areas[stop]
            stop += 1
        if rank == ranks - 1:
            stop = count
        runs.append(range(start, stop))
        start = stop
    return runs


class DistributedTiler(Tiler):
    """A :class:`Tiler` whose tiles run on the ranks of a process group, one run of neighbouring tiles each."""

    def __init__(self, vae: CausalVideoVAE, grid, plan: memory.Plan, overlap_px: int, on_retry, cache_device=None,
                 statistics_passes=None, *, ranks: Ranks) -> None:
        super().__init__(vae, grid, plan, overlap_px, on_retry, cache_device, statistics_passes)
        windows = self.layout.windows
        if len(windows) < ranks.size:
            count = "the whole frame in one tile" if self.layout.whole_frame else f"{len(windows)} tiles"
            raise FrameStreamError(f"{ranks.size} processes need at least {ranks.size} tiles, and this decode has "
                                   f"{count} ({self.tile_px(vae.spatial_ratio)}); ask for smaller tiles (--tile) or "
                                   "fewer processes (--nproc-per-node)")
        self.ranks = ranks
        self.mine = share(len(windows), [w.box[2] * w.box[3] for w in windows], ranks.size)[ranks.rank]
        self.names = {id(module): name for name, module in vae.named_modules()}

    @property
    def may_offload(self) -> bool:
        return False  # every rank must keep the same layout and placement

    @property
    def can_shrink(self) -> bool:
        return False  # every rank must keep the same layout

    def new_state(self, expected_frames=None, pace=None, pooling=None) -> StreamState:
        # a step that runs out of memory stops all ranks instead of being re-run: nothing to back up
        return StreamState(self.cache_device, expected_frames, pace, pooling=pooling)

    def shared(self, state: StreamState, fn, x: torch.Tensor) -> torch.Tensor:
        out, error = None, None
        if self.ranks.rank == 0:
            try:
                out = fn(x)
            except Exception as err:  # noqa: BLE001  (re-raised by agree, after the others heard of it)
                error = err
        self.ranks.agree(error)
        # whether the layers after the shared ones have reached the clip's end (a delayed decoder's look-ahead
        # convs in the shared part may hold frames back, which tells the tiles' convs to wait too)
        out, ending = self.ranks.broadcast(out, x, state.ending)
        if not ending:
            state.hold_back()
        return out

    def run(self, state: StreamState, fn, x: torch.Tensor, in_scale: int, out_scale: int) -> torch.Tensor:
        before, out, error = state.carries.written(), None, None
        try:
            out = self.blend(state, fn, x, in_scale, out_scale, self.mine)
        except Exception as err:  # noqa: BLE001  (re-raised by agree, after the others heard of it)
            error = err
        self.ranks.agree(error)
        self._exchange(state, state.carries.written() - before)
        out = self.ranks.sum(out)
        return out.div_(self._weight_sum(out_scale, out.device))

    def _exchange(self, state: StreamState, layers: set[int]) -> None:
        """Makes every rank's copy of the tiled layers' carries whole: each rank contributes the parts it owns."""
        owned = torch.zeros(self.grid, dtype=torch.bool)
        for i in self.mine:
            owned[self.layout.windows[i].region(1, self.layout.windows[i].owned)] = True
        for layer in sorted(layers, key=self.names.__getitem__):  # the same order on every rank
            for _, carry in sorted(state.carries.frame_carries(layer).items()):
                s = carry.shape[-1] // self.grid[1]
                mask = owned.repeat_interleave(s, 0).repeat_interleave(s, 1).to(carry.device)
                carry.copy_(self.ranks.sum(torch.where(mask, carry, torch.zeros((), dtype=carry.dtype,
                                                                               device=carry.device))))


def decode(vae: CausalVideoVAE, latent: torch.Tensor, sink: Sink | None = None, settings: Settings | None = None,
           *, group=None, num_frames: int | None = None, plan: memory.WorkPlan | None = None, **options):
    """:func:`engine.decode` with the tiles spread over the ranks of ``group`` (the default group by default).

    Call it on every rank with the same model, latent and settings; rank 0 gets
    the result (and alone writes to ``sink``), the others None. Needs at least
    as many tiles as ranks (``tile=`` in pixels).
    """
    settings = Settings.of(settings, options)
    if vae.norms.decoder not in SPREADABLE_NORMS:
        raise FrameStreamError(f"the {vae.family}'s GroupNorms take statistics across tiles, which a distributed "
                               "decode does not gather; decode it in one process")
    if vae.memory_profile.native_tile_px is not None:
        raise FrameStreamError(f"the {vae.family} tiles its frames itself, one tile after another inside each "
                               "step, so there are no tiles to spread over processes; decode it in one process")
    ranks = Ranks(group, vae.weight_device)
    if ranks.rank == 0:
        sink = sink if sink is not None else FrameSink()
    else:  # the others compute the same frames and drop them
        sink, settings = CallbackSink(lambda *chunk: None), Settings.of(settings, {"progress": quiet})

    def make_tiler(*args):
        return DistributedTiler(*args, ranks=ranks)

    result = engine.run_decode(vae, latent, _Reporting(sink, ranks), settings, num_frames, make_tiler, plan)
    return result if ranks.rank == 0 else None


class _Reporting:
    """A rank's sink: a failure to write is raised at the ranks' next agreement, so that all of them stop there,
    and the result is given only once all ranks agree the last frames were written."""

    def __init__(self, sink: Sink, ranks: Ranks) -> None:
        self.sink, self.ranks = sink, ranks

    def start(self, shape) -> None:
        self.sink.start(shape)

    def write(self, batch: int, start: int, chunk: torch.Tensor) -> None:
        if self.ranks.later_error is None:
            try:
                self.sink.write(batch, start, chunk)
            except Exception as err:  # noqa: BLE001
                self.ranks.later_error = err

    def result(self):
        try:
            self.ranks.agree()
        except BaseException:
            abort = getattr(self.sink, "abort", None)
            if abort is not None:
                abort()
            raise
        return self.sink.result()

    def __getattr__(self, name):  # abort() and the like, for engine._finish
        return getattr(self.sink, name)


@contextlib.contextmanager
def process_group(device: torch.device) -> Iterator[torch.device]:
    """Joins the process group torchrun describes in the environment (NCCL for CUDA, gloo otherwise) and yields
    this rank's device (CUDA: the GPU of its LOCAL_RANK); leaves the group at the end."""
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield device
    finally:
        dist.destroy_process_group()


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1
