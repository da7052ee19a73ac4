"""What a model carries from step to step, per latent pixel, measured by running it on a tiny grid.

Carries scale exactly with frame area, so streaming two latent frames through the model on a 2x2 grid (a clip
past its delay, for a decoder that looks ahead) measures them for any frame size. What is measured is kept here
(not on the model) for as long as the model lives, per streaming mode: a model that switches how its decoder
streams (LTX-2's causal or delayed decoder) is measured again. :func:`footprint` gives an estimate everything it
needs of a model (:mod:`estimate`).
"""

from __future__ import annotations

import math
import weakref
from typing import NamedTuple

import torch

from .estimate import Footprint
from .model import CausalVideoVAE
from .state import StreamState


def footprint(vae: CausalVideoVAE, direction: str = "decode", length: int | None = None) -> Footprint:
    """The memory profile of ``vae`` for ``direction`` over a clip of ``length`` latent frames (its carries
    measured now if they were not yet, its activations from its traits)."""
    decode = direction == "decode"
    delayed = decode and vae.streaming.delayed
    carries = delayed_carries_per_cell(vae, length) if delayed else None
    live = vae.memory_profile.live_at_finest
    return Footprint(
        spatial_ratio=vae.spatial_ratio, temporal_ratio=vae.temporal_ratio, itemsize=vae.weight_dtype.itemsize,
        finest_width=vae.finest_width if decode else vae.encoder_finest_width, live_at_finest=live,
        live_in_tiles=vae.memory_profile.live_in_tiles if decode else None,
        whole_frame_share=vae.memory_profile.whole_frame_share if decode else 0.0, delayed=delayed,
        native_tile_px=vae.memory_profile.native_tile_px,
        carries=carry_bytes_per_cell(vae, direction, length), tiled_carries=tiled_carry_bytes_per_cell(vae, direction),
        in_tiles=None if carries is None else carries.in_tiles, delayed_tiled=None if carries is None else carries.tiled,
        growing=growing_bytes_per_cell(vae, direction))


def carry_bytes_per_cell(vae: CausalVideoVAE, direction: str = "decode", length: int | None = None) -> int:
    """Bytes of fixed-size causal carry per latent pixel, in the model's dtype (measured once per model);
    for a delayed decoder, their peak over a clip of ``length`` latent frames (by default a long one)."""
    if direction == "decode" and vae.streaming.delayed:
        return delayed_carries_per_cell(vae, length).held
    return _probe(vae, direction)[0]


def growing_bytes_per_cell(vae: CausalVideoVAE, direction: str = "decode") -> int:
    """Bytes per latent pixel and latent frame that the growing carries add (:func:`state.growing_carry`)."""
    if direction == "decode" and vae.streaming.delayed:
        return 0
    return _probe(vae, direction)[1]


def tiled_carry_bytes_per_cell(vae: CausalVideoVAE, direction: str = "decode") -> int:
    """The part of :func:`carry_bytes_per_cell` that the tiled stages carry (not decode_shared / encode_shared):
    only those are overwritten tile by tile and keep old values aside for later tiles."""
    return _probe(vae, direction)[2]


_PROBES: "weakref.WeakKeyDictionary[CausalVideoVAE, dict]" = weakref.WeakKeyDictionary()


def _probes(vae: CausalVideoVAE) -> dict:
    """What was probed of ``vae``, kept here (not on the model) while the model lives, per streaming mode: a model
    that switches how its decoder streams (LTX-2's causal or delayed decoder) is probed again."""
    return _PROBES.setdefault(vae, {}).setdefault((vae.streaming.causal, vae.streaming.delayed), {})


@torch.no_grad()
def _probe(vae: CausalVideoVAE, direction: str) -> tuple[int, int, int]:
    """Streams two latent frames through the model on a 2x2 grid (a GroupNorm with one channel per group cannot
    normalise a single pixel) and reads its carries: they scale exactly with frame area."""
    cache = _probes(vae)
    if direction == "decode" and not vae.streaming.causal:
        cache[direction] = (0, 0, 0)  # decoded in independent windows: nothing is carried
    if direction not in cache:
        state = StreamState(expected_frames=2)
        device, dtype = vae.weight_device, vae.weight_dtype
        r, s = vae.temporal_ratio, vae.spatial_ratio
        grown = []  # growing bytes after each step: the second step's growth is every later step's (the first
        #            latent frame stands for fewer frames at some levels, e.g. Mochi's encoder)
        whole_frame = set()  # the layers of the stages that run on the whole frame, untiled
        with state.active():
            for frames in (1, r):
                if direction == "decode":
                    features = vae.decode_shared(torch.zeros(1, vae.latent_channels, 1, 2, 2, device=device, dtype=dtype))
                    whole_frame |= state.carries.written()
                    vae.decode_tile(features)
                else:
                    features = vae.encode_tile(torch.zeros(1, 3, frames, 2 * s, 2 * s, device=device, dtype=dtype))
                    tiled = state.carries.written()
                    vae.encode_shared(features)
                    whole_frame |= state.carries.written() - tiled
                state.carries.commit()
                grown.append(state.carries.growing_bytes())
        total = state.carries.carry_bytes()
        cache[direction] = (total // 4, (grown[1] - grown[0]) // 4, (total - state.carries.carry_bytes(whole_frame)) // 4)
    return cache[direction]


class DelayedCarries(NamedTuple):
    """A delayed decoder's carry bytes per latent pixel at their peak over a clip (:func:`delayed_carries_per_cell`)."""

    held: int  # untiled: every carry once
    in_tiles: int  # in tiles: a tiled stage's carry that changes shape in a step is held twice until it commits
    tiled: int  # the carries of the stages run in tiles (not decode_shared), overwritten tile by tile


@torch.no_grad()
def delayed_carries_per_cell(vae: CausalVideoVAE, length: int | None = None) -> DelayedCarries:
    """A delayed decoder's carries fill as frames reach deeper layers and peak while the clip's end flushes
    out; a clip shorter than the delay never fills them all. Streams a clip of ``length`` latent frames (at
    most two beyond the delay: longer ones peak alike) one a step on a 2x2 grid, and keeps the peaks."""
    longest = math.ceil(vae.streaming.delay) + 2
    length = longest if length is None else min(length, longest)
    cache = _probes(vae)
    if ("delayed", length) not in cache:
        state = StreamState(expected_frames=length, pace=(1, vae.temporal_ratio))
        z = torch.zeros(1, vae.latent_channels, 1, 2, 2, device=vae.weight_device, dtype=vae.weight_dtype)
        made, peaks, whole_frame = 0, DelayedCarries(0, 0, 0), set()
        with state.active():
            for step in range(length + 4 * longest):
                before = state.carries.carry_shapes()
                state.begin_step(ending=step >= length - 1)
                features = vae.decode_shared(z if step < length else z[:, :, :0])
                whole_frame |= state.carries.written()
                made += vae.decode_tile(features).shape[2]
                state.carries.commit()
                # the tiled stages' carries that changed shape (whole-frame stages replace theirs at once)
                resized = sum(size for key, (shape, size) in state.carries.carry_shapes().items()
                              if key[0] not in whole_frame and (key not in before or before[key][0] != shape))
                held = state.carries.carry_bytes()
                step_peaks = (held, sum(size for _, size in before.values()) + resized,
                              held - state.carries.carry_bytes(whole_frame))
                peaks = DelayedCarries(*map(max, peaks, step_peaks))
                if made >= vae.decoded_frames(length):
                    break
        cache["delayed", length] = DelayedCarries(*(peak // 4 for peak in peaks))
    return cache["delayed", length]
