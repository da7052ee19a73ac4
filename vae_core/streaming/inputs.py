"""Checking what users hand the engine, so that every mistake gets one message saying what is expected."""

from __future__ import annotations

import warnings

import torch

from ..errors import FrameStreamError, plural
from .model import CausalVideoVAE


def _image_latent(latent: torch.Tensor, vae: CausalVideoVAE) -> FrameStreamError:
    return FrameStreamError(
        f"latent has shape {tuple(latent.shape)}, an image latent [B, C, H, W]; the {vae.family} decodes video"
        f" latents [B, {vae.latent_channels}, T, H, W] from a video model"
    )


def _video_latent(latent: torch.Tensor, vae: CausalVideoVAE) -> FrameStreamError:
    return FrameStreamError(
        f"latent has shape {tuple(latent.shape)}, a video latent [B, C, T, H, W]; the {vae.family} decodes a batch "
        f"of image latents [N, {vae.latent_channels}, H, W], one per frame"
    )


def _as_video(vae: CausalVideoVAE, latent: torch.Tensor, num_frames: int | None) -> torch.Tensor:
    """A ``[B, C, T, h, w]`` view: video latents as they are, a batch of per-frame latents as its videos."""
    if vae.latent_layout == "frames":
        if latent.ndim == 5:
            raise _video_latent(latent, vae)
        if latent.ndim != 4:
            raise FrameStreamError(f"latent has shape {tuple(latent.shape)}; the {vae.family} decodes a batch of "
                                   f"image latents [N, {vae.latent_channels}, H, W]")
        _check_channels(vae, latent.shape[1])
        frames = latent.shape[0]
        if num_frames is not None and (num_frames < 1 or frames % num_frames):
            raise FrameStreamError(f"the latent holds {frames} frame latents, which is not a whole number of videos "
                                   f"of num_frames={num_frames} frames")
        per_video = num_frames or frames
        return latent.unflatten(0, (frames // per_video, per_video)).transpose(1, 2) if frames else latent[None].transpose(1, 2)
    if num_frames is not None:
        raise FrameStreamError(f"num_frames is for batches of per-frame latents; the {vae.family} takes video latents "
                               "whose frames are their own axis")
    if latent.ndim == 4 and latent.shape[0] != vae.latent_channels:
        if latent.shape[1] == vae.latent_channels:  # two readings: say both
            raise FrameStreamError(
                f"latent has shape {tuple(latent.shape)}: read as one video [C, T, H, W] it has {latent.shape[0]} "
                f"channels, read as images [B, C, H, W] it has no time axis; the {vae.family} decodes video latents "
                f"[C, T, H, W] or [B, C, T, H, W] with C = {vae.latent_channels}")
        _check_channels(vae, latent.shape[0])
    if latent.ndim == 4:
        latent = latent.unsqueeze(0)
    if latent.ndim != 5:
        raise FrameStreamError(
            f"latent has shape {tuple(latent.shape)}; a video latent is [C, T, H, W] or [B, C, T, H, W]"
        )
    _check_channels(vae, latent.shape[1])
    return latent


def _check_channels(vae: CausalVideoVAE, channels: int) -> None:
    if channels != vae.latent_channels:
        raise FrameStreamError(f"latent has {channels} channels but the {vae.family} expects {vae.latent_channels};"
                               " it was made for another model")


def check_latent(vae: CausalVideoVAE, latent: torch.Tensor, num_frames: int | None = None) -> torch.Tensor:
    """A ``[B, C, T, h, w]`` view of a valid latent for ``vae``, or one clear error."""
    if not isinstance(latent, torch.Tensor):
        raise FrameStreamError(f"expected a latent tensor, got {type(latent).__name__}")
    latent = _as_video(vae, latent, num_frames)
    if min(latent.shape) == 0:
        raise FrameStreamError(f"latent has shape {tuple(latent.shape)}, which holds no frames")
    if not latent.is_floating_point():
        raise FrameStreamError(f"latent has dtype {latent.dtype}; expected a floating-point tensor")
    bad = (~torch.isfinite(latent)).sum().item()
    if bad:
        raise FrameStreamError(
            f"latent contains {plural(bad, 'NaN/inf value')}; the sampler diverged or the file is damaged, so nothing was "
            "decoded"
        )
    return latent


def check_frames(vae: CausalVideoVAE, frames: torch.Tensor) -> torch.Tensor:
    """Frames ``[T, H, W, C]`` in [0, 1], cropped to whole latent pixels as the host crops them."""
    if not isinstance(frames, torch.Tensor) or frames.ndim != 4 or frames.shape[-1] not in (3, 4):
        shape = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
        raise FrameStreamError(f"frames have shape {shape}; expected [T, H, W, 3] (the host's IMAGE layout)")
    if not frames.is_floating_point():
        raise FrameStreamError(f"frames have dtype {frames.dtype}; expected floats in [0, 1] (divide 8-bit values by 255)")
    r = vae.spatial_ratio
    t, h, w = frames.shape[:3]
    if t == 0:
        raise FrameStreamError("the frames are empty (0 frames); expected at least one")
    least = vae.min_frame_px
    if h < least or w < least:
        raise FrameStreamError(f"frames are {w}x{h} px; the {vae.family} needs at least {least}x{least}")
    groups = frames[..., :3].split(8)  # statistics group by group: no full-size temporary
    bad = sum((~torch.isfinite(group)).sum().item() for group in groups)
    if bad:
        raise FrameStreamError(f"frames contain {plural(bad, 'NaN/inf value')}")
    low, high = min(g.min().item() for g in groups), max(g.max().item() for g in groups)
    if low < -0.5 or high > 1.5:
        raise FrameStreamError(f"frame values span [{low:.3g}, {high:.3g}]; expected [0, 1] (0-255 values need / 255)")
    if frames.shape[-1] == 4:
        warnings.warn("the frames have 4 channels (RGBA): the 4th, alpha, is left out, as the host's VAE Encode "
                      "leaves it out; composite them over a background first to keep what it hides", stacklevel=3)
    top, left = (h % r) // 2, (w % r) // 2
    return frames[:, top : top + h // r * r, left : left + w // r * r, :3]


def require_node_latent(latent: torch.Tensor, vae: CausalVideoVAE) -> None:
    """A node's LATENT is always batched: for a video VAE a 4-D one is an image latent, never [C, T, H, W]."""
    if isinstance(latent, torch.Tensor) and latent.ndim == 4 and vae.latent_layout == "video":
        raise _image_latent(latent, vae)
