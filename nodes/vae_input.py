"""Turning whatever arrives on a VAE socket into a FrameStream model on the host's device."""

from __future__ import annotations

import torch

from ..vae_core.models.registry import build_vae
from ..vae_core.errors import FrameStreamError
from ..vae_core.streaming.inputs import require_video_latent
from ..vae_core.streaming.memory import estimate
from ..vae_core.streaming.model import CausalVideoVAE
from . import host
from .tiling_inputs import TILE_INPUTS, tile_options

VAE_TOOLTIP = ("A Wan 2.1/2.2, HunyuanVideo or LTX-Video VAE from Load VAE, or any of these and CogVideoX from "
               "FrameStream Load VAE.")


def video_vae(vae) -> CausalVideoVAE:
    """The host's loaded VAE (from Load VAE) rebuilt around the very same parameter objects.

    ``keep_vars`` hands over the host's own ``Parameter`` objects: no weight is
    copied or read from disk again. Building is cheap (no tensor is touched).
    """
    if isinstance(vae, CausalVideoVAE):
        return vae
    module = getattr(vae, "first_stage_model", None)
    if module is None:
        raise FrameStreamError(f"the vae input is a {type(vae).__name__} without a model; connect a VAE from Load VAE")
    return _rebuilt(module, module.state_dict(keep_vars=True))


def _rebuilt(module, weights: dict) -> CausalVideoVAE:
    """Our model of the host's, in the host's conventions (including settings the host built beyond the weights)."""
    return build_vae(weights, source="the VAE given to this node").use_host_conventions(module)


def ready_video_vae(vae, step_bytes: int) -> CausalVideoVAE:
    """The VAE on the host's VAE device and precision, after asking the host for ``step_bytes`` of room.

    The host loads its model first (this may evict the diffusion model); the
    model is rebuilt afterwards, since loading may replace parameter objects.
    When the host keeps weights elsewhere (``--novram``, partial or dynamic
    loading), FrameStream decodes with its own copy on the device instead.
    """
    if isinstance(vae, CausalVideoVAE):
        return vae
    host.load_for_inference(vae, step_bytes)
    model = video_vae(vae)
    device, dtype = torch.device(getattr(vae, "device", model.weight_device)), getattr(vae, "vae_dtype", model.weight_dtype)
    if all(p.device == device and p.dtype == dtype for p in model.parameters()):
        return model
    host.free_memory(sum(p.numel() for p in model.parameters()) * dtype.itemsize + step_bytes, device)
    weights = {k: v.detach().to(device, dtype) for k, v in vae.first_stage_model.state_dict().items()}
    return _rebuilt(vae.first_stage_model, weights).requires_grad_(False)


def prepare_decode(vae, samples: dict, frames_per_step: int, tiling: dict):
    """The model (loaded by the host, which makes room for an untiled decode), the latent, and the engine's
    options: tiles, memory budget, progress."""
    latent = samples["samples"]
    model = video_vae(vae)
    require_video_latent(latent, model)
    height, width = latent.shape[-2] * model.spatial_ratio, latent.shape[-1] * model.spatial_ratio
    model = ready_video_vae(vae, estimate(model, height, width, frames_per_step, None).total)
    return model, latent, _options(model, tiling, "decode")


def prepare_encode(vae, height: int, width: int, tiling: dict):
    model = video_vae(vae)
    model = ready_video_vae(vae, estimate(model, height, width, 1, None, "encode").total)
    return model, _options(model, tiling, "encode")


def _options(model: CausalVideoVAE, tiling: dict, label: str) -> dict:
    values = {**{name: spec[1]["default"] for name, spec in TILE_INPUTS.items()}, **tiling}
    progress = host.Progress(label)
    return {**tile_options(**values, free_bytes=host.free_bytes(model.weight_device)),
            "progress": progress, "on_retry": progress.retry}
