"""Turning whatever arrives on a VAE socket into a FrameStream model on the host's device."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..vae_core.models.registry import build_vae
from ..vae_core.errors import FrameStreamError
from ..vae_core.streaming import memory, step_size
from ..vae_core.streaming.inputs import check_latent, require_node_latent
from ..vae_core.streaming.model import CausalVideoVAE
from ..vae_core.streaming.settings import Settings
from . import host
from .tiling_inputs import node_tiling

VAE_TOOLTIP = ("A VAE from Load VAE (Wan 2.1/2.2, HunyuanVideo, LTX-Video, and the image VAEs of SD 1.x/2.x, SDXL, "
               "SD3, Flux and TAESD), from Image Only Checkpoint Loader (Stable Video Diffusion), or from FrameStream "
               "Load VAE (also CogVideoX, and a tiny TAEHV decoder for a draft in seconds).")


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
    return build_vae(weights, source="the VAE given to this node", host_module=True).use_host_conventions(module)


def ready_video_vae(vae, step_bytes: int, built: CausalVideoVAE | None = None) -> CausalVideoVAE:
    """The VAE on the host's VAE device and precision, after asking the host for ``step_bytes`` of room.

    The host loads its model first (this may evict the diffusion model); ``built`` (the model made of the host's
    module before) is kept when loading left its parameter objects in place, else it is rebuilt. When the host
    keeps weights elsewhere (``--novram``, partial or dynamic loading), FrameStream decodes with its own copy on
    the device instead.
    """
    if isinstance(vae, CausalVideoVAE):
        return vae
    host.load_for_inference(vae, step_bytes)
    model = built if built is not None and _still_the_hosts(built, vae.first_stage_model) else video_vae(vae)
    device, dtype = torch.device(getattr(vae, "device", model.weight_device)), getattr(vae, "vae_dtype", model.weight_dtype)
    if all(p.device == device and p.dtype == dtype for p in model.parameters()):
        return model
    host.free_memory(sum(p.numel() for p in model.parameters()) * dtype.itemsize + step_bytes, device)
    weights = {k: v.detach().to(device, dtype if v.is_floating_point() else None)  # int8 weights stay int8
               for k, v in vae.first_stage_model.state_dict().items()}
    return _rebuilt(vae.first_stage_model, weights).requires_grad_(False)


def _still_the_hosts(model: CausalVideoVAE, module) -> bool:
    """Whether ``model`` still holds the host module's own parameter objects (loading may replace them)."""
    hosts = {id(value) for value in module.state_dict(keep_vars=True).values()}
    return all(id(param) in hosts for param in model.parameters())


def video_latent(samples: dict):
    """The LATENT's video tensor, and whether it came nested beside other parts (an audio+video model's
    latent: LTX-2 AV, MiniMax H3; the host's ``NestedTensor``, whose first part is the video, as VAE Decode
    reads it)."""
    latent = samples["samples"]
    if getattr(latent, "is_nested", False):
        return latent.unbind()[0], True
    return latent, False


def checked_latent(model: CausalVideoVAE, samples: dict):
    """The LATENT's video part, checked for ``model``: one message saying what is wrong, naming the nested
    latent's video part when the LATENT has several parts."""
    latent, nested = video_latent(samples)
    try:
        require_node_latent(latent, model)
        return latent, check_latent(model, latent).shape
    except FrameStreamError as err:
        if not nested:
            raise
        raise FrameStreamError(f"this audio+video LATENT's video part does not fit: {err}") from None


@dataclass(frozen=True)
class PreparedDecode:
    model: CausalVideoVAE  # on the host's VAE device, loaded after the host made room for the plan
    latent: torch.Tensor  # the LATENT's video part, as the node got it
    settings: Settings
    shape: tuple[int, ...]  # the latent as the engine sees it: [B, C, T, h, w]
    plan: memory.WorkPlan  # the one the engine runs (made for the settings against what is free once loaded)

    @property
    def frames(self) -> int:
        """Pixel frames the decode will write, every video of the batch together."""
        return self.model.decoded_frames(self.shape[2]) * self.shape[0]


def prepare_decode(vae, samples: dict, frames_per_step: int | None, tiling: dict, sink=None) -> PreparedDecode:
    """The model (loaded by the host after it made room for what the decode's plan will hold, a video file's
    encoder included on the CPU), the latent's video part, and the engine's settings."""
    model = video_vae(vae)
    latent, shape = checked_latent(model, samples)  # a bad latent or budget is refused before the host loads anything
    settings = _settings(tiling, "decode", frames_per_step=frames_per_step)
    first = memory.plan_decode(model, shape, settings, sink=sink).check_budget(settings)
    built = model
    model = ready_video_vae(vae, memory.room_to_ask(lambda s: memory.plan_decode(model, shape, s, sink=sink), settings),
                            built)
    final = _with_free_budget(settings, model)
    # tiles chosen against what is free now that the model is in, unless nothing the plan depends on changed
    work = first if final == settings and model is built else memory.plan_decode(model, shape, final, sink=sink)
    return PreparedDecode(model, latent, final, tuple(shape), work)


def prepare_encode(vae, height: int, width: int, tiling: dict):
    """As :func:`prepare_decode`, for encoding frames of ``height`` x ``width`` pixels."""
    model = video_vae(vae)
    settings = _settings(tiling, "encode")
    r = model.spatial_ratio
    per_step = settings.latents_per_step or step_size.sized_from_frame(model, "encode", 64, height, width)
    one_step = model.pixel_frames(1 + per_step)  # the frames' count is not known yet: plan the first two steps

    def plan(candidate):
        return memory.plan_encode(model, one_step, max(height // r, 1) * r, max(width // r, 1) * r, candidate)

    plan(settings).check_budget(settings)
    model = ready_video_vae(vae, memory.room_to_ask(plan, settings), model)
    return model, _with_free_budget(settings, model)


def _settings(tiling: dict, label: str, **steps) -> Settings:
    progress = host.Progress(label)
    return Settings(**node_tiling(**tiling), progress=progress, on_retry=progress.retry, **steps)


def _with_free_budget(settings: Settings, model: CausalVideoVAE) -> Settings:
    """Without a budget of the user's, tiles are planned against what the host reports free once the model is in."""
    return settings if settings.budget is not None else settings.replace(budget=host.free_bytes(model.weight_device))
