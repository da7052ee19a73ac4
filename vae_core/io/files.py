"""Latent and frame files, in the formats the host reads and writes.

Writes go to a temporary file that replaces the target only when complete, so a
failed or interrupted run never leaves a half-written output behind.
"""

from __future__ import annotations

import os
import re
import tempfile
from contextlib import contextmanager
from typing import Callable, Iterator

import torch

from ..errors import FrameStreamError
from ..streaming.runtime import OUT_OF_MEMORY

_PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl")
LATENT_KEY = "latent_tensor"
LATENT_VERSION_KEY = "latent_format_version_0"  # its absence makes Load Latent rescale by 1/0.18215
FRAMES_KEY = "frames"
# the temporary a write goes to until it is complete: ".framestream-<pid>-<random><suffix>", beside the target
TEMP_PREFIX = ".framestream-"
_TEMP_NAME = re.compile(re.escape(TEMP_PREFIX) + r"(\d+)-")


def check_readable(path: str, what: str = "file") -> None:
    """One clear error when ``path`` is missing, a folder, or not readable by this user."""
    if os.path.isdir(path):
        raise FrameStreamError(f"{path} is a folder; give the {what} itself")
    if not os.path.isfile(path):
        raise FrameStreamError(f"file not found: {path}")
    if not os.access(path, os.R_OK):
        raise FrameStreamError(f"cannot read {path}: permission denied (its owner or mode keeps this user out)")


def check_writable(path: str, overwrite: bool = True) -> None:
    """Fails before any work is done if ``path`` cannot be written; with ``overwrite`` False, also if it exists."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FrameStreamError(f"output folder does not exist: {folder}")
    if not os.access(folder, os.W_OK):
        raise FrameStreamError(f"output folder is not writable: {folder}")
    if os.path.isdir(path):
        raise FrameStreamError(f"the output {path} is a folder; give a file name")
    if os.path.exists(path):
        if not overwrite:
            raise FrameStreamError(f"{path} exists; pass --overwrite to replace it")
        if not os.access(path, os.W_OK):
            raise FrameStreamError(f"{path} exists and is read-only; it was left as it is")


def remove_stale_temporaries(folder: str) -> None:
    """Deletes what writes into ``folder`` left behind when their process was killed (SIGKILL gives no chance to
    clean up): temporaries whose process is gone."""
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        match = _TEMP_NAME.match(name)
        if match and not _alive(int(match.group(1))):
            try:
                os.remove(os.path.join(folder, name))
            except OSError:
                pass  # another run's cleanup got there first, or it is not ours to remove


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # someone else's process: alive
        return True
    return True


@contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """A temporary path beside ``path`` that becomes ``path`` only if the block succeeds."""
    check_writable(path)
    folder = os.path.dirname(os.path.abspath(path))
    remove_stale_temporaries(folder)
    handle, temp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-", suffix=os.path.splitext(path)[1], dir=folder)
    os.close(handle)
    try:
        yield temp
        os.chmod(temp, _new_file_mode())  # after the writer: mkstemp's (or the writer's own) private 0600 would stay
        os.replace(temp, path)
    except OSError as err:
        raise FrameStreamError(f"could not write {path}: {err.strerror or err}") from None
    finally:
        if os.path.exists(temp):
            os.remove(temp)


def _new_file_mode() -> int:
    """What an ordinary new file gets under this process's umask (0644 under the usual 022)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def read_safetensors(path: str, device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
                     select: Callable[[list[str]], list[str]] | None = None) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file (those ``select`` picks from its keys, else all), with one clear error
    for every way the file can be wrong.

    Floating-point tensors are cast to ``dtype`` one at a time as they are read,
    so a file in another precision never sits in memory twice, and a whole-model
    checkpoint gives up only the part asked for.
    """
    check_readable(path, "safetensors file")
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError as err:
        raise FrameStreamError(f"cannot read {path}: {err.strerror or err}") from None
    # a pickle starts with PK (zip) or 0x80; a safetensors file's 8-byte header length may too, but its JSON follows
    pickled = head[:2] == b"PK" or (head[:1] == b"\x80" and head[8:9] != b"{")
    if path.lower().endswith(_PICKLE_SUFFIXES) or pickled:
        raise FrameStreamError(
            f"{path} is a pickle checkpoint; pickles can run code when loaded, so FrameStream reads only "
            ".safetensors files (the repackaged ComfyUI VAEs are safetensors, or convert it with safetensors.torch.save_file)"
        )
    from safetensors import SafetensorError
    from safetensors.torch import safe_open

    try:
        with safe_open(path, framework="pt", device=str(device)) as f:
            keys = list(f.keys())
            return {key: _cast(f.get_tensor(key), dtype) for key in (select(keys) if select else keys)}
    except OUT_OF_MEMORY:
        raise
    except (SafetensorError, OSError, RuntimeError, ValueError) as err:
        raise FrameStreamError(f"{path} is not a readable safetensors file (truncated or corrupt?): {err}") from None


def read_metadata(path: str) -> dict[str, str]:
    """The string metadata in a safetensors header (empty if none); read it after :func:`read_safetensors`,
    which gives the clear errors for unreadable files."""
    from safetensors.torch import safe_open

    with safe_open(path, framework="pt") as f:
        return dict(f.metadata() or {})


def _cast(tensor: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    return tensor.to(dtype) if dtype is not None and tensor.is_floating_point() else tensor


def _save(tensors: dict[str, torch.Tensor], path: str, metadata: dict[str, str] | None = None) -> None:
    from safetensors.torch import save_file

    with atomic_path(path) as temp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, temp, metadata=metadata)


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
    if not latent.is_floating_point():  # samplers write float latents; integers here are some other tensor
        raise FrameStreamError(f"{path} holds a {latent.dtype} tensor; a latent is floating point (float32, "
                               f"float16 or bfloat16)")
    return latent.float()


def write_latent(path: str, latent: torch.Tensor, more: dict[str, torch.Tensor] | None = None,
                 metadata: dict[str, str] | None = None) -> None:
    """A file the host's Load Latent opens as it is; ``more`` tensors ride along under their own names (Load
    Latent ignores them), ``metadata`` goes into the header (the host's Save Latent puts the prompt there)."""
    tensors = {LATENT_KEY: latent.float(), LATENT_VERSION_KEY: torch.tensor([])}
    tensors.update({name: tensor.float() for name, tensor in (more or {}).items()})
    _save(tensors, path, metadata)


def read_frames(path: str) -> torch.Tensor:
    tensors = read_safetensors(path)
    if FRAMES_KEY not in tensors:
        raise FrameStreamError(
            f"{path} has no '{FRAMES_KEY}' tensor (found: {', '.join(list(tensors)[:4]) or 'nothing'});"
            f" expected '{FRAMES_KEY}' [T, H, W, 3] in [0, 1]"
        )
    return tensors[FRAMES_KEY]  # dtype and range are checked where the frames are used


def write_frames(path: str, frames: torch.Tensor) -> None:
    _save({FRAMES_KEY: frames.float()}, path)


def numbered_output(root: str, prefix: str, suffix: str) -> str:
    """``root/<prefix>_00001<suffix>`` with the next free number; a prefix that leaves ``root`` is refused.

    ``prefix`` may name subfolders (``FrameStream/run``), created as needed, but
    never an absolute path or a ``..`` that climbs out of ``root``.
    """
    folder, name = os.path.split(output_target(root, prefix))
    os.makedirs(folder, exist_ok=True)
    taken = {entry for entry in os.listdir(folder) if entry.startswith(name + "_")}
    number = 1
    while f"{name}_{number:05d}{suffix}" in taken:
        number += 1
    return os.path.join(folder, f"{name}_{number:05d}{suffix}")


def output_target(root: str, prefix: str) -> str:
    """Where ``prefix`` leads inside ``root`` (nothing is created), or one error when it leads elsewhere."""
    if not prefix or not prefix.strip():
        raise FrameStreamError("filename_prefix is empty; give a name such as FrameStream/video")
    if os.path.isabs(prefix) or prefix.startswith(("/", "\\")) or os.path.splitdrive(prefix)[0]:
        raise FrameStreamError(f"filename_prefix '{prefix}' is an absolute path; give a name inside the output folder")
    root = os.path.abspath(root)
    target = os.path.abspath(os.path.join(root, prefix))
    if ".." in prefix.replace("\\", "/").split("/") or os.path.commonpath([root, target]) != root:
        raise FrameStreamError(f"filename_prefix '{prefix}' leads outside the output folder; remove the '..'")
    return target
