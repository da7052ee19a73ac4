"""Segments between consecutive keyframes, so that every output frame is produced exactly once.

Segment ``i`` runs from keyframe ``i`` to keyframe ``i + 1``, both included, as a
first-last-frame generation of ``segment_frames`` pixel frames. Neighbouring
segments share their boundary keyframe; every segment after the first drops
its first frame, so a video from K keyframes has ``(K - 1) * (segment_frames - 1) + 1``
frames and keyframe ``i`` lands on frame ``i * (segment_frames - 1)``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import FrameStreamError

TEMPORAL_RATIO = 4  # Wan: one latent frame per 4 pixel frames after the first


@dataclass(frozen=True)
class Segment:
    index: int
    first_key: int
    last_key: int
    start: int  # the output frame of this segment's first frame (shared with the previous segment after the first)
    frames: int  # pixel frames generated
    skip: int  # leading frames already written by the previous segment (0 or 1)

    @property
    def kept(self) -> range:
        """The output frames this segment writes."""
        return range(self.start + self.skip, self.start + self.frames)


def check_segment_frames(segment_frames: int) -> None:
    if segment_frames < TEMPORAL_RATIO + 1 or (segment_frames - 1) % TEMPORAL_RATIO:
        raise FrameStreamError(f"segment length must be 4k + 1 pixel frames with k >= 1 (5, 9, ..., 81), "
                               f"got {segment_frames}")


def plan_segments(keyframes: int, segment_frames: int) -> list[Segment]:
    """One segment per pair of consecutive keyframes."""
    if keyframes < 2:
        raise FrameStreamError(f"interpolation needs at least 2 keyframes, got {keyframes}")
    check_segment_frames(segment_frames)
    stride = segment_frames - 1
    return [Segment(i, i, i + 1, i * stride, segment_frames, 0 if i == 0 else 1) for i in range(keyframes - 1)]


def output_frames(keyframes: int, segment_frames: int) -> int:
    """Length of the stitched video."""
    return plan_segments(keyframes, segment_frames)[-1].kept.stop
