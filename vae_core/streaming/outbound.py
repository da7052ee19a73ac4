"""Frames leaving the decode's device.

On a CUDA device a step's frames are copied into pinned (page-locked) host memory on a stream of their own: the
copy runs at the bus's full speed beside the next step's kernels, and the decode thread queues that next step
before it waits for the frames, so the GPU is not idle while the previous step's frames are handed to the sink
(rounded, encoded). Two steps' frames are then in host RAM at once (the plan counts them:
:attr:`estimate.Estimate.arriving`). Elsewhere the frames leave at once: on the CPU they are already there.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class Arriving(NamedTuple):
    """A step's frames on their way to the host: ``frames`` is complete once :meth:`wait` returns."""

    frames: torch.Tensor  # on the CPU, laid out as on the device
    done: "torch.cuda.Event | None"  # recorded after the copy; None: already complete

    def wait(self) -> torch.Tensor:
        if self.done is not None:
            self.done.synchronize()
        return self.frames


class Outbound:
    """Copies each step's frames to the host: on CUDA through pinned buffers on a side stream (``deferred``: the
    caller hands them on after queuing its next step), elsewhere at once."""

    def __init__(self, device: torch.device) -> None:
        self.deferred = device.type == "cuda"
        self._side = torch.cuda.Stream(device) if self.deferred else None

    def send(self, frames: torch.Tensor) -> Arriving:
        if frames.device.type != "cuda" or self._side is None:
            return Arriving(frames.cpu(), None)
        self._side.wait_stream(torch.cuda.current_stream(frames.device))  # after the kernels that make the frames
        with torch.cuda.stream(self._side):
            host = torch.empty_like(frames, device="cpu", pin_memory=True)  # from torch's cache of pinned blocks
            host.copy_(frames, non_blocking=True)
            done = torch.cuda.Event()
            done.record(self._side)
        frames.record_stream(self._side)  # its memory is not reused before the copy has read it
        return Arriving(host, done)
