"""LTX-Video VAE checkpoints: the original (Lightricks, also ComfyUI's) and diffusers layouts, config from shapes.

The original layout numbers encoder and decoder blocks in one flat list
(``decoder.up_blocks.3.res_blocks.0...``) whose meaning changed between
releases; diffusers nests them (``decoder.up_blocks.1.resnets.0...``). The
release is told apart by structure, not width, so reduced test models load as
real ones do.
"""

from __future__ import annotations

import json
import re
from typing import Mapping

import torch

from ..assembly import assemble, count_indices
from ...errors import FrameStreamError
from .model import LTXConfig, LTXVideoVAE

# flat original block index -> diffusers module path
_DECODER_090 = ["mid_block", "up_blocks.0", "up_blocks.1.upsamplers.0", "up_blocks.1", "up_blocks.2.conv_in",
                "up_blocks.2.upsamplers.0", "up_blocks.2", "up_blocks.3.conv_in", "up_blocks.3.upsamplers.0",
                "up_blocks.3"]
_DECODER_091 = ["mid_block"] + [f"up_blocks.{i}{part}" for i in range(4) for part in (".upsamplers.0", "")]
_ENCODER_090 = ["down_blocks.0", "down_blocks.0.downsamplers.0", "down_blocks.0.conv_out", "down_blocks.1",
                "down_blocks.1.downsamplers.0", "down_blocks.1.conv_out", "down_blocks.2",
                "down_blocks.2.downsamplers.0", "down_blocks.3", "mid_block"]
_ENCODER_095 = [f"down_blocks.{i}{part}" for i in range(4) for part in ("", ".downsamplers.0")] + ["mid_block"]
_PARTS = [("res_blocks.", "resnets."), ("conv_shortcut.", "conv_shortcut.conv."), ("norm3.norm.", "norm3."),
          ("last_time_embedder.", "time_embedder."), ("last_scale_shift_table", "scale_shift_table")]
_STATISTICS = {"per_channel_statistics.mean-of-means": "latents_mean",
               "per_channel_statistics.std-of-means": "latents_std"}
_DOWNSAMPLE_KINDS = {4: "spatial", 2: "temporal", 8: "spatiotemporal"}


def is_original_layout(sd: Mapping[str, torch.Tensor]) -> bool:
    return any(re.match(r"(decoder\.up_blocks|encoder\.down_blocks)\.\d+\.res_blocks\.", k) for k in sd)


def is_diffusers_layout(sd: Mapping[str, torch.Tensor]) -> bool:
    """diffusers' LTX resnets have parameter-free norms: CogVideoX's, HunyuanVideo's and HunyuanVideo 1.5's
    resnets (otherwise named alike) all store norm parameters."""
    return "decoder.mid_block.resnets.0.conv1.conv.weight" in sd and \
        not any(k.startswith("decoder.mid_block.resnets.0.norm1.") for k in sd)


def recognises(sd: Mapping[str, torch.Tensor]) -> bool:
    return is_original_layout(sd) or is_diffusers_layout(sd)


def original_to_diffusers(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    decoder = _DECODER_090 if "decoder.up_blocks.1.res_blocks.0.conv1.conv.weight" in sd else _DECODER_091
    encoder = _ENCODER_095 if "encoder.down_blocks.2.res_blocks.0.conv1.conv.weight" in sd else _ENCODER_090
    out = {}
    for key, value in sd.items():
        if key in _STATISTICS:
            out[_STATISTICS[key]] = value
            continue
        if key.startswith("per_channel_statistics."):  # channel, mean-of-stds, ...: not used to decode or encode
            continue
        m = re.match(r"(encoder|decoder)\.(down_blocks|up_blocks)\.(\d+)\.(.*)", key)
        if m:
            table = encoder if m.group(1) == "encoder" else decoder
            key = f"{m.group(1)}.{table[int(m.group(3))]}.{m.group(4)}"
        for old, new in _PARTS:
            key = key.replace(old, new)
        out[key] = value
    return out



def infer_ltx_config(sd: Mapping[str, torch.Tensor]) -> tuple[LTXConfig, tuple[str, ...]]:
    """The configuration (and the encoder's downsampler kinds) of a diffusers-layout state dict."""
    latent = sd["decoder.conv_in.conv.weight"].shape[1]
    patch = round((sd["encoder.conv_in.conv.weight"].shape[1] // 3) ** 0.5)

    def resnet_width(prefix: str) -> int:
        return sd[f"{prefix}.resnets.0.conv1.conv.weight"].shape[0]

    downs = count_indices(sd, r"encoder\.down_blocks\.(\d+)\.")
    mid_width = resnet_width("encoder.mid_block")
    kinds, widths, scaling = [], [], []
    for i in range(downs):
        prefix = f"encoder.down_blocks.{i}"
        widths.append(resnet_width(prefix))
        scaling.append(f"{prefix}.downsamplers.0.conv.weight" in sd or f"{prefix}.downsamplers.0.conv.conv.weight" in sd)
        if f"{prefix}.downsamplers.0.conv.conv.weight" in sd:
            out = resnet_width(f"encoder.down_blocks.{i + 1}") if i + 1 < downs else mid_width
            kinds.append(_DOWNSAMPLE_KINDS[out // sd[f"{prefix}.downsamplers.0.conv.conv.weight"].shape[0]])
        else:
            kinds.append("conv")
    if kinds[0] != "conv":
        widths.append(mid_width)
    layers = [count_indices(sd, rf"encoder\.down_blocks\.{i}\.resnets\.(\d+)\.") for i in range(downs)]
    layers.append(count_indices(sd, r"encoder\.mid_block\.resnets\.(\d+)\."))

    ups = count_indices(sd, r"decoder\.up_blocks\.(\d+)\.")
    up_widths, up_layers, up_scaling, factors = [], [], [], []
    for i in range(ups):
        prefix = f"decoder.up_blocks.{i}"
        conv = sd.get(f"{prefix}.upsamplers.0.conv.conv.weight")
        factor = 1 if conv is None else conv.shape[1] * 8 // conv.shape[0]
        up_widths.append(resnet_width(prefix) * factor)
        up_layers.append(count_indices(sd, rf"{prefix}\.resnets\.(\d+)\."))
        up_scaling.append(conv is not None)
        factors.append(factor)
    mid_layers = count_indices(sd, r"decoder\.mid_block\.resnets\.(\d+)\.")
    noise = [f"decoder.{block}.resnets.0.per_channel_scale1" in sd
             for block in ["mid_block"] + [f"up_blocks.{i}" for i in range(ups)]]
    cfg = LTXConfig(
        latent_channels=latent, patch_size=patch, encoder_widths=tuple(widths), encoder_layers=tuple(layers),
        encoder_scaling=tuple(scaling), decoder_widths=tuple(up_widths[::-1]),
        decoder_layers=tuple(([mid_layers] + up_layers)[::-1]), decoder_scaling=tuple(up_scaling[::-1]),
        upsample_residual=tuple(f != 1 for f in factors[::-1]), upsample_factor=tuple(factors[::-1]),
        timestep_conditioning="decoder.time_embedder.timestep_embedder.linear_1.weight" in sd,
        decoder_noise=tuple(noise[::-1]) if any(noise) else (),
    )
    return cfg, tuple(kinds)


def spatial_padding(metadata: Mapping[str, str] | None, source: str = "checkpoint") -> str:
    """How the checkpoint's convs pad height and width, as Lightricks' code reads it: from the ``vae`` part
    of the config JSON that single-file checkpoints carry in their metadata, zeros when it is silent."""
    if not metadata or "config" not in metadata:
        return "zeros"
    try:
        vae = json.loads(metadata["config"]).get("vae") or {}
        return str(vae.get("spatial_padding_mode", "zeros"))
    except (ValueError, AttributeError):
        raise FrameStreamError(f"{source} carries a config in its metadata that is not a JSON object; expected "
                               "the LTX-Video checkpoint's own config") from None


def build_ltx(sd: Mapping[str, torch.Tensor], source: str = "checkpoint",
              metadata: Mapping[str, str] | None = None) -> LTXVideoVAE:
    """An :class:`LTXVideoVAE` holding exactly the given tensors (no copy), in either layout; ``metadata`` is
    the file's (its config says how the convs pad)."""
    sd = original_to_diffusers(sd) if is_original_layout(sd) else dict(sd)
    try:
        cfg, kinds = infer_ltx_config(sd)
    except KeyError as err:
        raise FrameStreamError(f"{source} looks like an LTX-Video VAE but is incomplete: missing {err}") from None
    if "latents_mean" not in sd:  # the statistics are not part of every export
        sd = {**sd, "latents_mean": torch.zeros(cfg.latent_channels), "latents_std": torch.ones(cfg.latent_channels)}
    padding = spatial_padding(metadata, source)
    return assemble(lambda: LTXVideoVAE(cfg, kinds), sd, source).pad_spatially(padding, padding)
