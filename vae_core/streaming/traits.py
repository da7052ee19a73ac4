"""What a model family tells the engine about itself: how its decoder may be cut along time, where its norms take
their statistics, and what its activations cost. Frozen: a model states them once (a class attribute, or in
``__init__`` where they follow from its config) and the engine only reads them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# "video": latents [B, C, T, h, w] from a video model. "frames": the host's batch of image latents [N, C, h, w],
# one latent per frame, all one video (image VAEs, Stable Video Diffusion); the engine runs it as [1, C, N, h, w]
# (temporal_ratio 1) and an encode returns that layout too.
LatentLayout = Literal["video", "frames"]

# "causal": nothing looks ahead, a step gives every frame of its latent frames. "delayed": the decoder looks ahead
# only through convs padded at both ends; each holds back its look-ahead and the clip's end is flushed through in
# extra steps. "windows": it looks further (attention over frames): windows of latent frames with context each side,
# each a fresh clip.
StreamingMode = Literal["causal", "delayed", "windows"]

# Where norms take their statistics (see :mod:`group_norm`): "position" (per position, e.g. RMSNorm: streams
# exactly), "clip" (GroupNorm over the whole clip: the engine gathers them in a first pass), "chunk" (GroupNorm
# over each of the model's own decode steps, CogVideoX's native behaviour), "frame" (GroupNorm over each frame
# alone: exact untiled, tiles normalise with their own statistics), "frame_gathered" (the same, but a tiled step
# first sums each frame's statistics over all its tiles, norm by norm, as "chunk" does for its steps).
NormPooling = Literal["position", "clip", "chunk", "frame", "frame_gathered"]


@dataclass(frozen=True)
class Streaming:
    """How the decoder may be cut along time."""

    mode: StreamingMode = "causal"
    # "delayed": about how many latent frames' worth the end takes to flush through
    delay: float = 0.0
    # "windows": ``core`` latent frames with ``halo`` frames of context each side, cross-fading ``blend`` of them;
    # the latent-resolution stages (decode_shared, cheap) see ``shared_halo`` more frames each side, so the
    # expensive stages need a halo covering only their own reach
    core: int = 8
    halo: int = 2
    blend: int = 1
    shared_halo: int = 0
    # how the clip is cut into steps, or what a step gives, depends on the clip's length (CogVideoX's frame
    # batches, TAEHV's clip ends): a stream then needs the length up front (:class:`stream.DecodeStream`)
    needs_length: bool = False

    @property
    def causal(self) -> bool:
        return self.mode == "causal"

    @property
    def delayed(self) -> bool:
        return self.mode == "delayed"

    @property
    def one_stream(self) -> bool:
        """Whether the decoder runs as one stream of consecutive steps (else: windows, each a fresh clip)."""
        return self.mode != "windows"


@dataclass(frozen=True)
class NormStatistics:
    """Where the norms of each direction take their statistics."""

    decoder: NormPooling = "position"
    encoder: NormPooling | None = None  # None: as the decoder's (SVD's per-frame image encoder differs)
    passes: int = 1  # "clip": gathering passes before the writing one, unless the settings say otherwise

    def of(self, direction: Literal["decode", "encode"]) -> NormPooling:
        return self.encoder if direction == "encode" and self.encoder is not None else self.decoder


@dataclass(frozen=True)
class MemoryProfile:
    """Calibration of the memory plan beyond the widths (:attr:`CausalVideoVAE.finest_width`)."""

    # tensors of the finest width alive at once in a step (None: the engine's fitted default); a model whose convs
    # copy each input once more (replicate padding) holds more
    live_at_finest: float | None = None
    live_in_tiles: float | None = None  # the same for one tile of a tiled step, where it differs
    # activations of the decoder's whole-frame stages (decode_shared) beyond latent resolution, as a share of its
    # finest stage's over the whole frame (e.g. 0.25 when tiles start at the last of three 2x upsamplers); the
    # tiles do not shrink them
    whole_frame_share: float = 0.0
    # the model tiles its frames itself at this size because its output is defined as those tiles blended
    # (a decoder whose attention spans one such tile): the engine runs it on the whole frame, never in tiles of its
    # own, and its activations are one such tile's
    native_tile_px: int | None = None
