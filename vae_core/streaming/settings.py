"""How a decode or encode runs, in one object that the nodes, the CLI and the library all hand the engine.

Each front end translates its own inputs once (the node's ``tiles`` menu and
gigabytes, the CLI's flags) into a :class:`Settings`; the engine and the memory
plan read nothing else. Every value is checked here, so a bad one gets its one
message before any model runs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import torch

from ..errors import FrameStreamError
from .tiles import DEFAULT_OVERLAP_PX

# progress(done, total, preview) is called before the first and after every step; preview is the newest
# decoded frame [H, W, 3] (or None); it may raise to stop the run
Progress = Callable[..., None]
# on_retry(message) hears about a step re-run with smaller tiles after running out of memory
Retry = Callable[[str], None]


def quiet(*args) -> None:
    pass


@dataclass(frozen=True)
class Settings:
    frames_per_step: int | None = None  # decode: latent frames a causal decoder advances per step; None: sized
    #                                     by the plan from the frame and the budget (step_size.py)
    latents_per_step: int | None = None  # encode: latent frames made per step after the first; None: as above
    tile: int | str | None = None  # None / "none": the whole frame; "auto": the largest that fits; or pixels
    overlap: int = DEFAULT_OVERLAP_PX  # pixels, cross-faded linearly
    budget: int | None = None  # bytes for the work beyond the weights (tile="auto"); None: what is free
    carries: torch.device | str | None = None  # where causal carries live; None: the compute device, until the
    #                                            plan or running out of memory moves them to host RAM
    statistics_passes: int | None = None  # gathering passes before the one that writes. GroupNorms over the whole
    #                                       clip: None is the model's own number. Per-step GroupNorms in tiles:
    #                                       None is one per norm (exact) decoding, 1 encoding; N ends in a pass
    #                                       that estimates the norms still unknown (steps._Step._gather)
    progress: Progress = quiet
    on_retry: Retry = quiet
    report_plan: Retry = quiet  # called with the plan's one line (tiles, steps, carries, peak, output) before any work

    def __post_init__(self) -> None:
        for name in ("frames_per_step", "latents_per_step"):
            value = getattr(self, name)
            if value is None:
                continue
            if not _is_int(value):
                raise FrameStreamError(f"{name} must be a whole number, got {value!r}")
            if value < 1:
                raise FrameStreamError(f"{name} must be at least 1, got {value}")
        if not (self.tile is None or self.tile in ("auto", "none") or (_is_int(self.tile) and self.tile > 0)):
            raise FrameStreamError(f"tile must be 'auto', 'none' or a size in pixels, got {self.tile!r}")
        if not _is_int(self.overlap) or self.overlap < 0:
            raise FrameStreamError(f"tile overlap must be 0 or more pixels, got {self.overlap!r}")
        if _is_int(self.tile) and self.overlap >= self.tile:
            raise FrameStreamError(f"tile overlap ({self.overlap} px) must be smaller than the tile ({self.tile} px); "
                                   f"try an overlap of {self.tile // 4} px")
        if self.budget is not None and not self.budget > 0:
            raise FrameStreamError(f"the memory budget must be more than 0 bytes, got {self.budget!r}")
        if self.statistics_passes is not None and (not _is_int(self.statistics_passes) or self.statistics_passes < 0):
            raise FrameStreamError(f"statistics_passes must be 0 or more, got {self.statistics_passes!r}")

    @property
    def tiled(self) -> bool:
        return self.tile not in (None, "none")

    def replace(self, **changes) -> "Settings":
        return dataclasses.replace(self, **changes)

    @classmethod
    def of(cls, settings: "Settings | None", options: dict) -> "Settings":
        """``settings`` (or the defaults) with keyword overrides, as the library's ``decode(..., tile=256)``."""
        unknown = set(options) - {field.name for field in dataclasses.fields(cls)}
        if unknown:
            raise TypeError(f"unknown option(s): {', '.join(sorted(unknown))}")
        return (settings or cls()).replace(**options) if options else (settings or cls())


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
