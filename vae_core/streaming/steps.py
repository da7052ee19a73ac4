"""One step of a stream, as an object: the whole-frame stages, then the tiles (a stream commits its carries).

A decode step runs the latent-resolution stages (``decode_shared``) over its latent frames on the whole frame,
then the high-resolution stages (``decode_tile``) tile by tile, blended; an encode step runs them the other way
round. A model whose GroupNorms take statistics per step (CogVideoX, image VAEs) or per whole frame needs them
from every tile of the step before any tile normalises: in tiles, the step first gathers them in trial runs, one
per norm (:meth:`_Step._gather`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from . import group_norm
from .memory import WorkPlan
from .model import CausalVideoVAE
from .state import StreamState
from .temporal import TemporalWindow
from .tiler import Tiler


GATHERED_IN_TILES = ("chunk", "frame_gathered")  # statistics a tiled step gathers from all its tiles first


def gathering_passes(vae: CausalVideoVAE, passes: int | None, direction: str = "decode",
                     work: WorkPlan | None = None) -> int:
    """Passes that gather a clip-wide GroupNorm's statistics before the one that writes (none for other norms, nor
    for a plan of one step on the whole frame: its only step sees the whole clip); ``passes`` None: the model's
    own number."""
    if vae.norms.of(direction) != "clip" or (work is not None and work.one_piece):
        return 0
    return vae.norms.passes if passes is None else passes


def to_frames(pixels: torch.Tensor) -> torch.Tensor:
    """``[1, 3, t, H, W]`` in [-1, 1] -> ``[t, H, W, 3]`` in [0, 1], fp32."""
    return pixels[0].add_(1.0).div_(2.0).clamp_(0.0, 1.0).permute(1, 2, 3, 0)


class _Step:
    """Runs :meth:`_compute` once, or, for per-step statistics in tiles (unless the caller gave them), after
    gathering them norm by norm."""

    vae: CausalVideoVAE
    direction = "decode"
    statistics_passes: int | None = None  # in tiles, when the settings do not say: exact (see :meth:`_gather`)

    def run(self, tiler: Tiler, state: StreamState) -> torch.Tensor:
        given = state.pooling is not None and state.pooling.frozen is not None  # statistics the caller gathered
        if self.vae.norms.of(self.direction) not in GATHERED_IN_TILES or tiler.layout.whole_frame or given:
            return self._compute(tiler, state)
        with state.pooled(self._gather(tiler, state)):
            return self._compute(tiler, state)

    def _gather(self, tiler: Tiler, state: StreamState) -> group_norm.Pooling:
        """The statistics every tile of the step normalises with, gathered in trial runs of the step.

        A norm's statistics are sums over its whole input, and that input is
        exact only where every norm before it normalised with exact ones. So
        each pass runs the tiles up to the first norm not yet known, adds its
        moments from the part each tile owns and stops there (the whole-frame
        stages' norms see everything at once); the next pass applies them. A
        stream learns at its first step how many norms its tiles hold, which
        takes one whole pass more; later steps know when they are done.

        ``tiler.statistics_passes`` (else the step's own) caps the passes: the
        last one allowed runs to the end and estimates the norms still unknown
        from the totals so far (1: one estimating pass; 0: none, each tile sees
        the totals of the tiles before it and its own).
        """
        cap = tiler.statistics_passes if tiler.statistics_passes is not None else self.statistics_passes
        exact, passes = {}, 0
        while (tiler.norms_in_tiles is None or passes < tiler.norms_in_tiles) and (cap is None or passes < cap):
            estimating = cap is not None and passes == cap - 1
            with state.pooled(group_norm.Pooling(frozen=exact, per_step=True, gathering=not estimating)), \
                    state.carries.trial():
                try:
                    self._compute(tiler, state)
                    finished = True
                except group_norm.Gathered:
                    finished = False
            exact = {**exact, **state.carries.moments(pending=True)}
            state.carries.rollback()
            if finished:
                if not estimating:
                    tiler.norms_in_tiles = passes  # the tiles ran to their end: no norm was left to gather
                break
            passes += 1
        return group_norm.Pooling(frozen=exact, per_step=True)

    def _compute(self, tiler: Tiler, state: StreamState) -> torch.Tensor:
        raise NotImplementedError


@dataclass
class DecodeStep(_Step):
    """Decodes ``latent`` (latent frames ``[first, first + t)``, the window's and the whole-frame stages' halo)
    to the window's pixel frames. ``ending``: the clip's last latent frame is in it (or it is a whole window)."""

    vae: CausalVideoVAE
    window: TemporalWindow
    latent: torch.Tensor  # [1, C, t, h, w] on the model's device, in its dtype
    first: int
    ending: bool

    def describe(self) -> str:
        if self.window.stop > self.window.start:
            return f"latent frames {self.window.start}-{self.window.stop - 1}"
        return "the decoder's last frames"

    def _compute(self, tiler: Tiler, state: StreamState) -> torch.Tensor:
        window, last = self.window, self.first + self.latent.shape[2]
        state.begin_step(self.ending)
        with state.owning(_owned(window.core, self.first, last)):
            shared = tiler.shared(state, self.vae.decode_shared, self.latent)
        if not window.streamed:
            shared = shared[:, :, window.start - self.first : window.stop - self.first]
        with state.owning(_owned(window.core, window.start, window.stop)):
            return tiler.run(state, self.vae.decode_tile, shared, in_scale=shared.shape[-1] // self.latent.shape[-1],
                             out_scale=self.vae.spatial_ratio)


@dataclass
class EncodeStep(_Step):
    """Encodes pixel frames ``span`` (``group``: ``[1, 3, n, H, W]`` in [0, 1]) to latent frames."""

    vae: CausalVideoVAE
    group: torch.Tensor
    span: tuple[int, int]
    direction = "encode"
    # an encoder's norms come after its costliest layers, so each exact pass costs nearly a whole one, and a tiled
    # encode's error is the convs' reach past the tiles: exact statistics measured +0.5-1.5 dB for 2.4-5.2x the time
    # (docs/families.md), so one pass estimates them unless the settings ask for more
    statistics_passes: int | None = 1

    def describe(self) -> str:
        return f"frames {self.span[0]}-{self.span[1] - 1}"

    def _compute(self, tiler: Tiler, state: StreamState) -> torch.Tensor:
        dtype = self.vae.weight_dtype
        # never in place; laid out plainly (frames arrive channels-last), as every model's activations are unless
        # the model itself chooses otherwise: a layout that changed between steps would change a conv's rounding
        group = self.group.to(self.vae.weight_device, torch.float32)
        plain = torch.empty(group.shape, dtype=torch.float32, device=group.device)
        pixels = torch.mul(group, 2.0, out=plain).sub_(1.0).to(dtype)
        features = tiler.run(state, self.vae.encode_tile, pixels, in_scale=self.vae.spatial_ratio, out_scale=1)
        return self.vae.encode_shared(features.to(dtype))


def _owned(core: tuple[int, int], first: int, last: int) -> tuple[int, int, int] | None:
    """The core's frames within a stage that runs latents ``[first, last)`` (None: all of them)."""
    return None if core == (first, last) else (core[0] - first, core[1] - first, last - first)
