"""The tile and memory inputs every FrameStream VAE node shares, and their one translation for the core."""

from __future__ import annotations

from ..vae_core.streaming.tiles import DEFAULT_OVERLAP_PX

TILE_INPUTS = {
    "tiles": (["auto", "none", "custom"], {
        "default": "auto",
        "tooltip": "auto: the whole frame when it fits the free memory (or the budget), else the largest tiles that "
                   "do. none: never tile. custom: tiles of tile_size pixels. Tiles cover only the high-resolution "
                   "stages; the latent-resolution stages and attention always see the whole frame.",
    }),
    "tile_size": ("INT", {
        "default": 512, "min": 64, "max": 8192, "step": 16,
        "tooltip": "Tile edge in pixels when tiles is custom (rounded down to whole latent pixels).",
    }),
    "tile_overlap": ("INT", {
        "default": DEFAULT_OVERLAP_PX, "min": 0, "max": 1024, "step": 8,
        "tooltip": "How far neighbouring tiles overlap, in pixels; overlaps are cross-faded linearly. Larger hides "
                   "tile edges better and costs more time.",
    }),
    "memory_budget_gb": ("FLOAT", {
        "default": 0.0, "min": 0.0, "max": 1024.0, "step": 0.5,
        "tooltip": "Memory for the work beyond the VAE's weights, in GB, used by tiles=auto. 0: what the host "
                   "reports free on the VAE's device.",
    }),
}


def node_tiling(inputs: dict) -> dict:
    """The tile inputs (any left out take their defaults) as :class:`Settings` fields. A budget of 0 means
    none of the user's: the caller plans against what the host reports free."""
    values = {**{name: spec[1]["default"] for name, spec in TILE_INPUTS.items()}, **inputs}
    gigabytes = values["memory_budget_gb"]
    return {"tile": {"auto": "auto", "none": None}.get(values["tiles"], values["tile_size"]),
            "overlap": values["tile_overlap"], "budget": int(gigabytes * 2**30) if gigabytes > 0 else None}
