"""Reading VAE checkpoints: safetensors only, any supported key layout, widths from shapes.

A checkpoint is identified by its keys, never by its file name, so a reduced
test model loads exactly as a real one does.
"""

from __future__ import annotations

import os
import re
from typing import Mapping

import torch

from .errors import FrameStreamError
from .assembly import assemble, count_indices
from .cogvideox_checkpoints import build_cogvideox, is_cogvideox
from .files import read_metadata, read_safetensors
from .hunyuan_checkpoints import build_hunyuan
from .hunyuan_checkpoints import is_diffusers_layout as is_diffusers_hunyuan
from .hunyuan_checkpoints import is_host_layout as is_host_hunyuan
from .ltx_checkpoints import build_ltx
from .ltx_checkpoints import is_diffusers_layout as is_diffusers_ltx
from .ltx_checkpoints import is_original_layout as is_original_ltx
from .model import CausalVideoVAE
from .wan import WanConfig, WanVAE

# key that betrays each family we recognise, supported or not (first match wins)
_FAMILIES = [
    ("decoder.middle.0.residual.0.gamma", "wan"),
    ("decoder.mid_block.resnets.0.norm1.gamma", "wan-diffusers"),
    ("decoder.conv_in.conv.weight", "HunyuanVideo VAE"),
    ("decoder.up_blocks.0.res_blocks.0.conv1.conv.weight", "LTX-Video VAE"),
    ("decoder.up_blocks.0.resnets.0.conv1.conv.weight", "CogVideoX / HunyuanVideo VAE (diffusers layout)"),  # unused
    ("decoder.mid.block_1.norm1.weight", "image VAE (SD 1.x / SDXL / SD3 / Flux layout)"),
    ("decoder.mid_block.resnets.0.norm1.weight", "image VAE (diffusers AutoencoderKL layout)"),
    ("decoder.layers.0.weight", "tiny autoencoder (TAESD)"),
]
SUPPORTED = "Wan 2.1, Wan 2.2, HunyuanVideo, CogVideoX or LTX-Video VAE"
_PREFIXES = ("first_stage_model.", "vae.", "model.")


def _strip_prefix(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    for prefix in _PREFIXES:
        if sd and all(k.startswith(prefix) for k in sd):
            return {k[len(prefix) :]: v for k, v in sd.items()}
    return dict(sd)


def identify(sd: Mapping[str, torch.Tensor]) -> str:
    for key, family in _FAMILIES:
        if key in sd:
            return family
    return "unknown"


def require_video_vae(sd: Mapping[str, torch.Tensor], source: str) -> str:
    family = identify(sd)
    if family.startswith("wan"):
        return family
    if is_original_ltx(sd) or is_diffusers_ltx(sd):
        return "ltx"
    if is_cogvideox(sd):  # before HunyuanVideo: their diffusers layouts share key names
        return "cogvideox"
    if is_host_hunyuan(sd) or is_diffusers_hunyuan(sd):
        return "hunyuan"
    found = family if family != "unknown" else f"an unrecognised model (first keys: {', '.join(list(sd)[:3])})"
    raise FrameStreamError(f"{source} holds {found}; FrameStream needs a {SUPPORTED}")


# --- diffusers AutoencoderKLWan layout -> original layout -------------------------------------------------

_RESNET_PARTS = {"norm1": "residual.0", "conv1": "residual.2", "norm2": "residual.3", "conv2": "residual.6",
                 "conv_shortcut": "shortcut"}
_MIDDLE = {"resnets.0": "middle.0", "attentions.0": "middle.1", "resnets.1": "middle.2"}


def _resnet_suffix(rest: str) -> str:
    part, _, tail = rest.partition(".")
    return f"{_RESNET_PARTS[part]}.{tail}" if part in _RESNET_PARTS else rest



def diffusers_to_original(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Renames diffusers' ``AutoencoderKLWan`` keys to the original Wan layout (2.1 and 2.2)."""
    residual = any(k.startswith("decoder.up_blocks.0.upsampler.") for k in sd)
    blocks = count_indices(sd, r"decoder\.up_blocks\.0\.resnets\.(\d+)\.") - 1  # decoder stages have one extra
    out = {}
    for key, value in sd.items():
        out[_rename(key, residual, blocks)] = value
    return out


def _rename(key: str, residual: bool, blocks: int) -> str:
    simple = {"quant_conv.": "conv1.", "post_quant_conv.": "conv2."}
    for old, new in simple.items():
        if key.startswith(old):
            return new + key[len(old) :]
    side, _, rest = key.partition(".")
    for old, new in {"conv_in.": "conv1.", "norm_out.": "head.0.", "conv_out.": "head.2."}.items():
        if rest.startswith(old):
            return f"{side}.{new}{rest[len(old):]}"
    if rest.startswith("mid_block."):
        group, index, tail = rest[len("mid_block.") :].split(".", 2)
        return f"{side}.{_MIDDLE[f'{group}.{index}']}.{_resnet_suffix(tail)}"
    m = re.match(r"(down_blocks|up_blocks)\.(\d+)\.(.*)", rest)
    if not m:
        return key
    stage, tail = int(m.group(2)), m.group(3)
    if side == "encoder" and not residual:  # 2.1 encoder is already flat
        return f"encoder.downsamples.{stage}.{_resnet_suffix(tail)}"
    r = re.match(r"resnets\.(\d+)\.(.*)", tail)
    if r:
        index, inner = int(r.group(1)), _resnet_suffix(r.group(2))
    else:  # the stage's resampler, which follows its residual blocks
        inner = re.sub(r"^(upsamplers\.0|upsampler|downsampler)\.", "", tail)
        index = blocks + (1 if side == "decoder" else 0)
    if side == "encoder":
        return f"encoder.downsamples.{stage}.downsamples.{index}.{inner}"
    if residual:
        return f"decoder.upsamples.{stage}.upsamples.{index}.{inner}"
    return f"decoder.upsamples.{stage * (blocks + 2) + index}.{inner}"


# --- widths and depths from the tensors ---------------------------------------------------------------------


def infer_wan_config(sd: Mapping[str, torch.Tensor]) -> WanConfig:
    """Reads a Wan VAE's configuration from its original-layout state dict."""
    try:
        z_dim = sd["conv2.weight"].shape[0]
        dim = sd["encoder.conv1.weight"].shape[0]
        decoder_dim = sd["decoder.head.2.weight"].shape[1]
    except KeyError as err:
        raise FrameStreamError(f"the Wan VAE checkpoint is incomplete: missing {err}") from None
    residual = "decoder.upsamples.0.upsamples.0.residual.2.weight" in sd
    stages = _encoder_stages(sd, residual)
    blocks = sum(1 for kind in stages[0] if kind[0] == "res")
    mult = tuple([width for kind, width in stage if kind == "res"][-1] // dim for stage in stages)
    temporal = tuple(any(kind == ("down", True) for kind in stage) for stage in stages[:-1])
    return WanConfig("2.2" if residual else "2.1", z_dim, dim, decoder_dim, mult, blocks, temporal)


def _encoder_stages(sd: Mapping[str, torch.Tensor], residual: bool) -> list[list[tuple]]:
    """Per encoder stage, its layers as ("res", out_width) or ("down", is_temporal)."""

    def layer(prefix: str):
        if f"{prefix}.residual.2.weight" in sd:
            return ("res", sd[f"{prefix}.residual.2.weight"].shape[0])
        if f"{prefix}.resample.1.weight" in sd:
            return ("down", f"{prefix}.time_conv.weight" in sd)
        return None

    if residual:
        return [
            [layer(f"encoder.downsamples.{i}.downsamples.{j}") for j in range(count_indices(sd, rf"encoder\.downsamples\.{i}\.downsamples\.(\d+)\."))]
            for i in range(count_indices(sd, r"encoder\.downsamples\.(\d+)\."))
        ]
    stages, current = [], []
    for i in range(count_indices(sd, r"encoder\.downsamples\.(\d+)\.")):
        current.append(layer(f"encoder.downsamples.{i}"))
        if current[-1][0] == "down":
            stages.append(current)
            current = []
    return stages + [current]


def to_original_layout(sd: Mapping[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    sd = _strip_prefix(sd)
    family = require_video_vae(sd, source)
    return diffusers_to_original(sd) if family == "wan-diffusers" else dict(sd)


def build_wan(sd: Mapping[str, torch.Tensor], source: str = "checkpoint") -> WanVAE:
    """A :class:`WanVAE` holding exactly the given tensors (no copy), whatever their layout."""
    sd = to_original_layout(sd, source)
    cfg = infer_wan_config(sd)
    return assemble(lambda: WanVAE(cfg), sd, source)


def build_vae(sd: Mapping[str, torch.Tensor], source: str = "checkpoint",
              metadata: Mapping[str, str] | None = None) -> CausalVideoVAE:
    """The video VAE these tensors describe (any supported family and layout), without copying. ``metadata``
    is the file's; only LTX-Video reads it (for settings its weights do not show)."""
    stripped = _strip_prefix(sd)
    family = require_video_vae(stripped, source)
    if family == "ltx":
        return build_ltx(stripped, source, metadata)
    return {"hunyuan": build_hunyuan, "cogvideox": build_cogvideox}.get(family, build_wan)(stripped, source)


def load_vae(path: str, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> CausalVideoVAE:
    """Loads a video VAE file onto ``device`` in ``dtype`` (a single copy of the weights)."""
    tensors = read_safetensors(path, device, dtype)
    return build_vae(tensors, os.path.basename(path), read_metadata(path)).requires_grad_(False)
