"""Known-frame conditioning for Wan image-to-video and first-last-frame models, built for many clips at once.

These models read the known frames from extra input channels: the VAE latent
of a video that holds the known frames with mid-grey everywhere else, and a
4-channel mask (four mask channels per latent frame, one per pixel frame it
covers). The host's WanFirstLastFrameToVideo builds that for one clip; here it
is built for every segment between keyframes as one batch, so one sampler
call makes all of them, and for continuing a clip from its own latents.

Masks are kept in the host's ``concat_mask`` convention, 0 where a frame is
known (the host's model turns it into 1 - mask). Latents stay in raw VAE space,
as the host's conditioning holds them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import FrameStreamError
from .keyframes import TEMPORAL_RATIO, check_segment_frames, plan_segments
from .perturbation import perturb

GREY = 0.5  # 0 in the model's [-1, 1] pixel range: Wan's "nothing here"
WAN21_LATENT_CHANNELS = 16
# Wan 2.1 VAE latent statistics: the model sees (latent - mean) / std, where noise has unit variance
WAN21_LATENT_MEAN = (-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
                     0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921)
WAN21_LATENT_STD = (2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
                    3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160)

# encode(frame chunks, total frame count) -> raw latent [1, C, T, h, w]; chunks are [n, H, W, 3] in [0, 1]
Encoder = Callable[[Iterator[torch.Tensor], int], torch.Tensor]


@dataclass
class FrameConditioning:
    concat_latent: torch.Tensor  # [B, C, T, h, w] raw latents of the known frames with grey elsewhere
    mask: torch.Tensor  # [1, 4, T, h, w], 0 where known (the host's concat_mask)
    free_latent: torch.Tensor  # [1, C, T, h, w] an all-grey clip: the same conditioning with no frame known
    free_mask: torch.Tensor  # [1, 4, T, h, w], all ones


def fit_images(images: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """``[N, H, W, 3]`` images centre-cropped to the aspect of ``width``x``height`` and resized bilinearly,
    as the host's conditioning nodes resize their start and end images."""
    old_h, old_w = images.shape[1:3]
    x = y = 0
    if old_w / old_h > width / height:
        x = round((old_w - old_w * ((width / height) / (old_w / old_h))) / 2)
    elif old_w / old_h < width / height:
        y = round((old_h - old_h * ((old_w / old_h) / (width / height))) / 2)
    cropped = images.movedim(-1, 1).narrow(-2, y, old_h - 2 * y).narrow(-1, x, old_w - 2 * x)
    return F.interpolate(cropped, size=(height, width), mode="bilinear").movedim(1, -1)


def known_mask(latent_frames: int, h: int, w: int, first_pixels: int = 0, last_pixels: int = 0) -> torch.Tensor:
    """The host's mask for ``first_pixels`` known frames at the start and ``last_pixels`` at the end.

    A known start frame also marks the three mask channels that share its
    latent frame, as the host does (the first latent frame covers one pixel frame).
    """
    mask = torch.ones(1, 1, latent_frames * TEMPORAL_RATIO, h, w)
    if first_pixels:
        mask[:, :, :first_pixels + TEMPORAL_RATIO - 1] = 0.0
    if last_pixels:
        mask[:, :, -last_pixels:] = 0.0
    return mask.view(1, latent_frames, TEMPORAL_RATIO, h, w).transpose(1, 2)


def grey_clip(frames: int, height: int, width: int, first: torch.Tensor | None = None,
              last: torch.Tensor | None = None, chunk: int = 8) -> Iterator[torch.Tensor]:
    """A clip of ``frames`` grey frames with ``first``/``last`` (``[H, W, 3]``) at its ends, chunk by chunk,
    so a long clip never sits in memory."""
    for start in range(0, frames, chunk):
        block = torch.full((min(chunk, frames - start), height, width, 3), GREY)
        if first is not None and start == 0:
            block[0] = first
        if last is not None and start + block.shape[0] == frames:
            block[-1] = last
        yield block


def _statistics(like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return tuple(torch.tensor(v, dtype=like.dtype, device=like.device).view(1, -1, 1, 1, 1)
                 for v in (WAN21_LATENT_MEAN, WAN21_LATENT_STD))


def normalise(latent: torch.Tensor) -> torch.Tensor:
    mean, std = _statistics(latent)
    return (latent - mean) / std


def denormalise(latent: torch.Tensor) -> torch.Tensor:
    mean, std = _statistics(latent)
    return latent * std + mean


def perturb_known(latent: torch.Tensor, known: torch.Tensor, sigma: float, seed: int) -> torch.Tensor:
    """LVDM's conditional latent perturbation of the known latent frames, at the model's noise level ``sigma``.

    The noise is added where the model sees it, in its normalised latent space
    (unit-variance noise), and the result returned in raw space.
    """
    if sigma == 0.0:
        return latent
    noisy = denormalise(perturb(normalise(latent), sigma, seed, kind="flow"))
    return torch.where(known.to(latent.device).view(1, 1, -1, 1, 1), noisy, latent)  # others untouched, bit for bit


def _check_wan21(latent: torch.Tensor) -> None:
    if latent.shape[1] != WAN21_LATENT_CHANNELS:
        raise FrameStreamError(
            f"the VAE makes {latent.shape[1]}-channel latents; Wan image-to-video and first-last-frame models "
            f"take Wan 2.1 VAE latents ({WAN21_LATENT_CHANNELS} channels). Wan 2.2 5B conditions on images "
            "differently (the host's Wan22ImageToVideoLatent)"
        )


def interpolation(keyframes: torch.Tensor, segment_frames: int, width: int, height: int, encode: Encoder,
                  perturbation: float = 0.0, seed: int = 0) -> FrameConditioning:
    """First-last-frame conditioning for every pair of consecutive keyframes (``[K, H, W, 3]``), as one batch.

    Segment ``i`` is exactly what WanFirstLastFrameToVideo builds from keyframes
    ``i`` and ``i + 1`` (resized the same way), with its known latent frames
    perturbed to ``perturbation`` (seed ``seed + i``, wrapped below 2**64).
    """
    if not isinstance(keyframes, torch.Tensor) or keyframes.ndim != 4 or keyframes.shape[-1] < 3:
        shape = tuple(keyframes.shape) if isinstance(keyframes, torch.Tensor) else type(keyframes).__name__
        raise FrameStreamError(f"keyframes have shape {shape}; expected an IMAGE batch [K, H, W, 3]")
    segments = plan_segments(keyframes.shape[0], segment_frames)
    images = fit_images(keyframes[..., :3].float(), width, height)
    latents = []
    for segment in segments:
        clip = grey_clip(segment_frames, height, width, images[segment.first_key], images[segment.last_key])
        latents.append(encode(clip, segment_frames))
        _check_wan21(latents[-1])
    concat = torch.cat(latents)
    t, h, w = concat.shape[2:]
    known = torch.zeros(t, dtype=torch.bool)
    known[[0, -1]] = True
    seeds = [(seed + i) % 2**64 for i in range(len(segments))]  # the generator takes seeds below 2**64
    concat = torch.cat([perturb_known(latent, known, perturbation, s) for s, latent in zip(seeds, concat.split(1))])
    free = encode(grey_clip(segment_frames, height, width), segment_frames)
    return FrameConditioning(concat, known_mask(t, h, w, 1, 1), free, torch.ones(1, 4, t, h, w))


def extension(previous: torch.Tensor, context_frames: int, length: int, encode: Encoder, height: int, width: int,
              perturbation: float = 0.0, seed: int = 0) -> FrameConditioning:
    """Conditioning that continues ``previous`` (a raw latent ``[1, C, T, h, w]``) from its last
    ``context_frames`` latent frames, for a new clip of ``length`` pixel frames.

    The context is handed over as latents, never decoded and re-encoded, so
    nothing drifts through a pixel round trip; the new clip's latent frames
    ``0..context_frames-1`` repeat it, and :func:`join` drops them again.
    """
    check_segment_frames(length)
    if previous.ndim != 5 or previous.shape[0] != 1:
        raise FrameStreamError(f"the clip to extend has latent shape {tuple(previous.shape)}; expected one video "
                               "latent [1, C, T, h, w] (pick one video of a batch with Latent From Batch)")
    _check_wan21(previous)
    latent_frames = (length - 1) // TEMPORAL_RATIO + 1
    if not 1 <= context_frames < min(latent_frames, previous.shape[2] + 1):
        raise FrameStreamError(
            f"context_frames is {context_frames}; it must be at least 1, at most the {previous.shape[2]} latent "
            f"frames of the clip, and fewer than the new clip's {latent_frames} latent frames"
        )
    free = encode(grey_clip(length, height, width), length)
    if free.shape[-2:] != previous.shape[-2:]:
        raise FrameStreamError(f"the clip to extend is {previous.shape[-1]}x{previous.shape[-2]} latent pixels but "
                               f"width and height give {free.shape[-1]}x{free.shape[-2]}; use the clip's own size")
    concat = free.clone()
    concat[:, :, :context_frames] = previous[:, :, -context_frames:].to(free)
    known = torch.arange(latent_frames) < context_frames
    concat = perturb_known(concat, known, perturbation, seed)
    h, w = free.shape[-2:]
    context_pixels = 1 + TEMPORAL_RATIO * (context_frames - 1)  # the video frames the context latents stand for
    mask = known_mask(latent_frames, h, w, context_pixels)
    return FrameConditioning(concat, mask, free, torch.ones(1, 4, latent_frames, h, w))


def join(previous: torch.Tensor, continuation: torch.Tensor, context_frames: int) -> torch.Tensor:
    """One latent: ``previous`` followed by ``continuation`` without the latent frames that repeat its tail."""
    if previous.shape[:2] != continuation.shape[:2] or previous.shape[-2:] != continuation.shape[-2:]:
        raise FrameStreamError(f"cannot join latents {tuple(previous.shape)} and {tuple(continuation.shape)}: "
                               "batch, channels and size must match")
    if not 0 <= context_frames < continuation.shape[2]:
        raise FrameStreamError(f"context_frames is {context_frames}; the continuation has only "
                               f"{continuation.shape[2]} latent frames")
    return torch.cat([previous, continuation[:, :, context_frames:].to(previous)], dim=2)
