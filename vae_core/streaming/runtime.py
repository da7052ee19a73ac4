"""Device, dtype and memory facts for the CLI and the benchmarks."""

from __future__ import annotations

import resource
import sys

import torch

from ..errors import FrameStreamError

# torch.OutOfMemoryError appeared in torch 2.5; older builds only have the CUDA one
OUT_OF_MEMORY = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def release_cached_memory() -> None:
    """Gives the CUDA caching allocator's free blocks back, so a retry sees the memory a failed step held."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` is CUDA when present, else the CPU; a named device must exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise FrameStreamError(f"unknown device '{name}'; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise FrameStreamError(f"device '{name}' asked for, but this torch build sees no CUDA GPU; use --device cpu")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise FrameStreamError(f"device '{name}' does not exist; this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    return device


def resolve_dtype(name: str | None, device: torch.device) -> torch.dtype:
    """bf16 on a GPU, fp32 on the CPU unless asked otherwise."""
    if name is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if name not in DTYPES:
        raise FrameStreamError(f"unknown dtype '{name}'; use one of {', '.join(DTYPES)}")
    return DTYPES[name]


def peak_rss_bytes() -> int:
    """The process's peak resident memory so far, from the OS.

    On Linux this is ``VmHWM``: ``ru_maxrss`` survives ``exec``, so a process
    started by a large parent would report the parent's peak as its own.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def reset_peak_rss() -> int:
    """Starts a new peak-RSS measurement and returns its baseline: the resident memory now.

    Without a reset, a peak reached earlier (building a model from another
    model's weights, say) hides whatever a later measurement adds below it. On
    Linux writing 5 to ``clear_refs`` resets ``VmHWM`` to the current RSS;
    elsewhere the old peak stays the baseline, and figures are lower bounds.
    """
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        pass
    return peak_rss_bytes()


def peak_memory_text(device: torch.device) -> str:
    text = f"peak RAM {peak_rss_bytes() / 2**20:.0f} MiB"
    if device.type == "cuda":
        text += f", peak VRAM {torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB"
    return text
