"""Diffusion decoder checkpoints: the host's layout (Lightricks' file, its config in the metadata) and diffusers'.

The host's file holds ``decoder.*`` (fused ``attn.qkv``, ``t_embedder.mlp``),
the latent space's ``per_channel_statistics`` and an LTX-2 conv encoder under
``encoder.*`` (not read: FrameStream encodes LTX-2 latents with the LTX-2 VAE).
diffusers' ``LTX2VideoDiffusionDecoderModel`` splits the projections
(``to_q``, ``to_k``, ``to_v``, ``to_out.0``, ``norm_q``) and keeps the
statistics as ``latents_mean`` / ``latents_std``; those are put back.

Widths, depths, the head width, the patch and the upsamplers' channel factors
show in the shapes. The attention kernels, which axes each upsampler scales,
the steps and what the stage predicts do not: they come from the file's config
(the host's ``config`` metadata), or are the release's where the shapes are the
release's structure, as the host assumes too.
"""

from __future__ import annotations

import json
import math
from typing import Mapping

import torch

from ...errors import FrameStreamError
from ..assembly import assemble, count_indices
from .config import DiffusionDecoderConfig
from .model import DiffusionDecoderVAE

NAME = DiffusionDecoderVAE.family
_STATISTICS = {"per_channel_statistics.mean-of-means": "latents_mean",
               "per_channel_statistics.std-of-means": "latents_std"}
_DIFFUSERS_NAMES = ((".attn.to_out.0.", ".attn.proj."), (".attn.norm_q.", ".attn.q_norm."),
                    (".attn.norm_k.", ".attn.k_norm."),
                    ("t_embedder.timestep_embedder.linear_1.", "t_embedder.mlp.0."),
                    ("t_embedder.timestep_embedder.linear_2.", "t_embedder.mlp.2."))


def is_diffusion_decoder(sd: Mapping[str, torch.Tensor]) -> bool:
    """The diffusion stage's input projection of the noisy pixels (the host detects the file by it)."""
    return "decoder.conv_in_x_t.weight" in sd


def host_layout(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The decoder's tensors under the host's names, the statistics under the model's (diffusers' q, k, v
    projections joined: a copy)."""
    out = {}
    for key, value in sd.items():
        if key in _STATISTICS:
            out[_STATISTICS[key]] = value
        elif key.startswith("decoder.") or key in ("latents_mean", "latents_std"):
            if ".attn.to_k." in key or ".attn.to_v." in key:
                continue
            if ".attn.to_q." in key:
                prefix, kind = key.split(".attn.to_q.")
                key = f"{prefix}.attn.qkv.{kind}"
                value = torch.cat([sd[f"{prefix}.attn.to_{name}.{kind}"] for name in "qkv"])
            for old, new in _DIFFUSERS_NAMES:
                key = key.replace(old, new)
            out[key] = value
    return out


def file_config(metadata: Mapping[str, str] | None) -> DiffusionDecoderConfig | None:
    """The config the file states (the host's ``config`` metadata, or diffusers' config beside the weights
    put there), or None."""
    text = (metadata or {}).get("config")
    if not text:
        return None
    try:
        config = json.loads(text)
    except json.JSONDecodeError as err:
        raise FrameStreamError(f"its config metadata is not JSON ({err})") from None
    if "vae" in config:
        return DiffusionDecoderConfig.from_host(config["vae"])
    return DiffusionDecoderConfig.from_diffusers(config)


def shape_config(sd: Mapping[str, torch.Tensor], stated: DiffusionDecoderConfig | None) -> DiffusionDecoderConfig:
    """The config the shapes show, the rest from ``stated`` (the file's) or the release's."""
    stages = 4
    widths = tuple(sd[f"decoder.det_stages.{s}.0.norm1.weight"].shape[0] for s in range(stages)) \
        + (sd["decoder.diff_blocks.0.norm1.weight"].shape[0],)
    reductions = tuple(widths[s] // widths[s + 1] for s in range(stages))
    growth = tuple(sd[f"decoder.upsamples.{s}.proj.weight"].shape[0] // widths[s + 1] for s in range(stages))
    release = DiffusionDecoderConfig()
    base = stated or release
    if stated is None and growth != tuple(math.prod(s) for s in release.upsample_strides):
        raise FrameStreamError(
            f"it has no config and its upsamplers grow the grid {growth} times, not the release's "
            f"{tuple(math.prod(s) for s in release.upsample_strides)}: which axes they scale is not in the weights. "
            "Keep the config the file was saved with (the host's 'config' metadata)")
    depths = tuple(count_indices(sd, rf"decoder\.det_stages\.{s}\.(\d+)\.") for s in range(stages)) \
        + (count_indices(sd, r"decoder\.diff_blocks\.(\d+)\."),)
    pixels = sd["decoder.conv_in_x_t.weight"].shape[1]
    return DiffusionDecoderConfig(
        latent_channels=sd["decoder.conv_in.weight"].shape[1], patch_size=round(math.sqrt(pixels // 3)),
        head_dim=sd["decoder.diff_blocks.0.attn.q_norm.weight"].shape[0], stage_channels=widths,
        stage_depths=depths, stage_kernels=base.stage_kernels, upsample_strides=base.upsample_strides,
        upsample_reductions=reductions, stage5_kernel=base.stage5_kernel,
        t_emb_dim=sd["decoder.shared_adaln.proj.weight"].shape[1], timestep_scale=base.timestep_scale,
        steps=base.steps, prediction=base.prediction)


def build_diffusion_decoder(sd: Mapping[str, torch.Tensor], source: str = "checkpoint",
                            metadata: Mapping[str, str] | None = None) -> DiffusionDecoderVAE:
    """A :class:`DiffusionDecoderVAE` holding the given tensors (diffusers' q, k, v joined: a copy)."""
    try:
        sd = host_layout(sd)
        cfg = shape_config(sd, file_config(metadata))
        cfg.check_runnable()
    except KeyError as err:
        raise FrameStreamError(f"{source} looks like an {NAME} but is incomplete: missing {err}") from None
    except FrameStreamError as err:
        raise FrameStreamError(f"{source} looks like an {NAME} but {err}") from None
    sd.setdefault("latents_mean", torch.zeros(cfg.latent_channels))
    sd.setdefault("latents_std", torch.ones(cfg.latent_channels))
    return assemble(lambda: DiffusionDecoderVAE(cfg), sd, source)
