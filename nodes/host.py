"""The only module that imports the host (ComfyUI), with standalone fallbacks.

Everything else in the pack is pure torch; outside ComfyUI (tests, the CLI,
plain-library use) these functions quietly do nothing host-specific.
"""

from __future__ import annotations

from typing import Callable

try:  # inside ComfyUI
    import comfy.model_management as model_management
    import comfy.utils as comfy_utils

    AVAILABLE = True
except ImportError:  # standalone
    model_management = comfy_utils = None
    AVAILABLE = False


def progress_reporter() -> Callable[[int, int], None]:
    """Reports steps to the host's progress bar and raises the host's interrupt between steps."""
    if not AVAILABLE:
        return lambda done, total: None
    bar = None

    def report(done: int, total: int) -> None:
        nonlocal bar
        model_management.throw_exception_if_processing_interrupted()
        if bar is None:
            bar = comfy_utils.ProgressBar(total)
        bar.update_absolute(done, total)

    return report


def load_for_inference(host_vae, memory_required: int) -> None:
    """Asks the host's memory manager for room (it may evict other models) and to load the VAE fully.

    The host may still keep weights elsewhere (``--novram``, dynamic loading);
    the caller checks where they ended up.
    """
    if AVAILABLE and hasattr(host_vae, "patcher"):
        model_management.load_models_gpu([host_vae.patcher], memory_required=memory_required, force_full_load=True)


def free_memory(memory_required: int, device) -> None:
    """Makes room for a model the host does not manage (FrameStream's own loaded VAEs)."""
    if AVAILABLE:
        model_management.free_memory(memory_required, device)
