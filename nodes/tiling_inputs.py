"""The tile and memory inputs every FrameStream VAE node shares, and their one translation for the core."""

from __future__ import annotations

from ..vae_core.streaming.tiles import DEFAULT_OVERLAP_PX
from .host import io

TILES = ("auto", "none", "custom")
TILE_SIZE, BUDGET_GB = 512, 0.0


def tile_inputs() -> list:
    """Optional inputs, after a node's own (saved workflows store widget values in this order)."""
    return [
        io.Combo.Input("tiles", options=list(TILES), default="auto", optional=True, tooltip=(
            "auto: the whole frame when it fits the free memory (or the budget), else the largest tiles that do. "
            "none: never tile. custom: tiles of tile_size pixels. Tiles cover only the high-resolution stages; the "
            "latent-resolution stages and attention always see the whole frame.")),
        io.Int.Input("tile_size", default=TILE_SIZE, min=64, max=8192, step=16, optional=True,
                     tooltip="Tile edge in pixels when tiles is custom (rounded down to whole latent pixels)."),
        io.Int.Input("tile_overlap", default=DEFAULT_OVERLAP_PX, min=0, max=1024, step=8, optional=True, tooltip=(
            "How far neighbouring tiles overlap, in pixels; overlaps are cross-faded linearly. Larger hides tile "
            "edges better and costs more time.")),
        io.Float.Input("memory_budget_gb", default=BUDGET_GB, min=0.0, max=1024.0, step=0.5, optional=True, tooltip=(
            "Memory for the work beyond the VAE's weights, in GB, used by tiles=auto. 0: what the host reports "
            "free on the VAE's device.")),
    ]


def node_tiling(tiles: str = "auto", tile_size: int = TILE_SIZE, tile_overlap: int = DEFAULT_OVERLAP_PX,
                memory_budget_gb: float = BUDGET_GB) -> dict:
    """The tile inputs as :class:`Settings` fields. A budget of 0 means none of the user's: the caller plans
    against what the host reports free."""
    return {"tile": {"auto": "auto", "none": None}.get(tiles, tile_size), "overlap": tile_overlap,
            "budget": int(memory_budget_gb * 2**30) if memory_budget_gb > 0 else None}
