"""A whole-clip evaluation of a TAEHV-family model, as madebyollin/taehv's ``decode_video`` / ``encode_video``
compute it (frames as a 2D batch, each MemBlock fed its input shifted one frame, TPool and TGrow as reshapes),
written from that description over FrameStream's own modules and weights: the streaming engine is checked
against it always, and it against the reference itself where ``TAEHV_REFERENCE`` names a ``taehv.py``."""

from __future__ import annotations

import importlib.util
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from framestream.vae_core.models.taehv import layers


def _conv(layer: layers.FrameConv, x: torch.Tensor) -> torch.Tensor:
    return F.conv2d(x, layer.weight, layer.bias, layer.stride, layer.padding, groups=layer.groups)


def _sequence(modules: nn.Module, x: torch.Tensor) -> torch.Tensor:
    for module in modules:
        x = _conv(module, x) if isinstance(module, layers.FrameConv) else F.relu(x) if isinstance(module, nn.ReLU) \
            else _sequence(module, x)
    return x


def _run(sequence: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """``[N, T, C, H, W]`` through ``sequence``, all frames at once."""
    n = x.shape[0]
    x = x.flatten(0, 1)
    for layer in sequence:
        if isinstance(layer, (layers.MemBlock, layers.SuperMemBlock)):
            frames = x.unflatten(0, (n, -1))
            past = F.pad(frames, (0, 0, 0, 0, 0, 0, 1, 0))[:, :-1].flatten(0, 1)
            y = _sequence(layer.conv, torch.cat([x, past], 1))
            if isinstance(layer, layers.MemBlock):
                skip = x if isinstance(layer.skip, nn.Identity) else _conv(layer.skip, x)
                x = F.relu(y + skip)
            else:
                x = y + x
        elif isinstance(layer, layers.TPool):
            x = _conv(layer.conv, x.reshape(-1, layer.stride * x.shape[1], *x.shape[2:]))
        elif isinstance(layer, layers.TGrow):
            y = _conv(layer.conv, x)
            x = y.reshape(-1, y.shape[1] // layer.stride, *y.shape[2:])
        elif isinstance(layer, layers.FrameConv):
            x = _conv(layer, x)
        elif isinstance(layer, layers.Clamp):
            x = torch.tanh(x / 3) * 3
        elif isinstance(layer, layers.Upsample):
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        elif isinstance(layer, layers.PixelShuffle):
            x = F.pixel_shuffle(x, layer.r)
        elif isinstance(layer, nn.ReLU):
            x = F.relu(x)
        else:
            raise TypeError(f"no oracle for {type(layer).__name__}")
    return x.unflatten(0, (n, -1))


@torch.no_grad()
def decode_video(vae, z: torch.Tensor, trim: bool = True) -> torch.Tensor:
    """``[N, T, C, h, w]`` latent -> ``[N, T', 3, H, W]`` frames in [0, 1]."""
    x = _run(vae.decoder, z)
    if vae.cfg.patch_size > 1:
        x = F.pixel_shuffle(x.flatten(0, 1), vae.cfg.patch_size).unflatten(0, x.shape[:2])
    x = x.clamp(0, 1)
    return x[:, vae.temporal_ratio - 1 :] if trim else x


@torch.no_grad()
def encode_video(vae, x: torch.Tensor) -> torch.Tensor:
    """``[N, T, 3, H, W]`` frames in [0, 1] -> ``[N, T', C, h, w]``; the end padded with the last frame."""
    if vae.cfg.patch_size > 1:
        x = F.pixel_unshuffle(x.flatten(0, 1), vae.cfg.patch_size).unflatten(0, x.shape[:2])
    missing = -x.shape[1] % vae.temporal_ratio
    x = torch.cat([x, x[:, -1:].expand(-1, missing, -1, -1, -1)], 1)
    return _run(vae.encoder, x)


def reference():
    """madebyollin's ``taehv`` module from the file ``TAEHV_REFERENCE`` names, or None."""
    path = os.environ.get("TAEHV_REFERENCE")
    if not path:
        return None
    path = os.path.join(path, "taehv.py") if os.path.isdir(path) else path
    spec = importlib.util.spec_from_file_location("taehv_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
