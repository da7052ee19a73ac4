"""Latent and frame files, in the formats the host reads and writes.

Writes go to a temporary file that replaces the target only when complete, so a
failed or interrupted run never leaves a half-written output behind.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from typing import Iterator

import torch

from .checkpoints import read_safetensors
from .errors import FrameStreamError

LATENT_KEY = "latent_tensor"
LATENT_VERSION_KEY = "latent_format_version_0"  # its absence makes Load Latent rescale by 1/0.18215
FRAMES_KEY = "frames"


@contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """A temporary path beside ``path`` that becomes ``path`` only if the block succeeds."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FrameStreamError(f"output folder does not exist: {folder}")
    handle, temp = tempfile.mkstemp(prefix=".framestream-", suffix=os.path.splitext(path)[1], dir=folder)
    os.close(handle)
    try:
        yield temp
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.remove(temp)


def _save(tensors: dict[str, torch.Tensor], path: str) -> None:
    from safetensors.torch import save_file

    with atomic_path(path) as temp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, temp)


def read_latent(path: str) -> torch.Tensor:
    """A video latent from a host ``.latent`` file or a one-tensor ``.safetensors``, as float32."""
    tensors = read_safetensors(path)
    if LATENT_KEY in tensors:
        latent = tensors[LATENT_KEY]
        if LATENT_VERSION_KEY not in tensors:  # an old SD1 latent, stored scaled; undo it as Load Latent does
            latent = latent / 0.18215
    elif len(tensors) == 1:
        latent = next(iter(tensors.values()))
    else:
        raise FrameStreamError(
            f"{path} holds {len(tensors)} tensors ({', '.join(list(tensors)[:4])}); expected a host .latent file"
            f" ('{LATENT_KEY}') or a .safetensors with exactly one tensor [C, T, H, W] or [B, C, T, H, W]"
        )
    return latent.float()


def write_latent(path: str, latent: torch.Tensor) -> None:
    """A file the host's Load Latent opens as it is."""
    _save({LATENT_KEY: latent.float(), LATENT_VERSION_KEY: torch.tensor([])}, path)


def read_frames(path: str) -> torch.Tensor:
    tensors = read_safetensors(path)
    if FRAMES_KEY not in tensors:
        raise FrameStreamError(
            f"{path} has no '{FRAMES_KEY}' tensor (found: {', '.join(list(tensors)[:4]) or 'nothing'});"
            f" expected '{FRAMES_KEY}' [T, H, W, 3] in [0, 1]"
        )
    return tensors[FRAMES_KEY].float()


def write_frames(path: str, frames: torch.Tensor) -> None:
    _save({FRAMES_KEY: frames.float()}, path)
