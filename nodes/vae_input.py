"""Turning whatever arrives on a VAE socket into a FrameStream model, sharing its weights."""

from __future__ import annotations

from ..vae_core.checkpoints import build_wan
from ..vae_core.errors import FrameStreamError
from ..vae_core.model import CausalVideoVAE


def video_vae(vae) -> CausalVideoVAE:
    """The host's loaded VAE (from Load VAE) rebuilt around the same parameter objects.

    ``keep_vars`` hands over the host's own ``Parameter`` objects, so no weight
    is copied or read from disk again, and when the host's memory manager moves
    its model between devices ours moves with it.
    """
    if isinstance(vae, CausalVideoVAE):
        return vae
    module = getattr(vae, "first_stage_model", None)
    if module is None:
        raise FrameStreamError(f"the vae input is a {type(vae).__name__}; connect a VAE from Load VAE")
    return build_wan(module.state_dict(keep_vars=True), source="the VAE given to this node")
