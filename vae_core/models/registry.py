"""The registered VAE families, and loading a checkpoint through whichever one recognises it.

Adding a family is one folder under ``models/`` exposing a :class:`Family`, and
one line in :data:`FAMILIES`.
"""

from __future__ import annotations

import os
from typing import Mapping

import torch

from ..errors import FrameStreamError
from ..io.files import read_metadata, read_safetensors
from ..streaming.model import CausalVideoVAE
from . import cogvideox, hunyuan, image, ltx, svd, taesd, wan
from .family import Family, Lookalike, StateDict

FAMILIES: tuple[Family, ...] = (
    wan.FAMILY,
    hunyuan.FAMILY,
    cogvideox.FAMILY,
    ltx.FAMILY,
    image.FAMILY,
    svd.FAMILY,
    taesd.FAMILY,
)

# models that are recognisable but not supported, so a file of theirs is named, not misread
LOOKALIKES: tuple[Lookalike, ...] = (
    Lookalike("HunyuanVideo 1.5 VAE (diffusers layout)",
              lambda sd: "decoder.conv_in.conv.weight" in sd and "decoder.mid_block.resnets.0.norm1.gamma" in sd),
    Lookalike("HunyuanVideo 1.5 VAE (host layout)",  # RMS gains in the SD layout, 3D convs
              lambda sd: "decoder.mid.block_1.norm1.gamma" in sd
              and getattr(sd.get("decoder.conv_in.weight"), "ndim", 0) == 5),
    Lookalike("Mochi VAE (genmo layout)", lambda sd: "blocks.2.blocks.3.stack.5.weight" in sd
              or "layers.4.layers.1.attn_block.attn.qkv.weight" in sd),
    Lookalike("Mochi VAE (diffusers layout)", lambda sd: _has_prefix(sd, "decoder.block_in.")),
)
_PREFIXES = ("first_stage_model.", "vae.", "model.")


def _has_prefix(sd: StateDict, prefix: str) -> bool:
    return any(key.startswith(prefix) for key in sd)


def supported() -> str:
    """The registered families, for messages and tooltips."""
    names = [family.name for family in FAMILIES]
    return ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]


def strip_prefix(sd: StateDict) -> dict[str, torch.Tensor]:
    """Keys without the prefix a whole-model checkpoint puts on its VAE part."""
    for prefix in _PREFIXES:
        if sd and all(k.startswith(prefix) for k in sd):
            return {k[len(prefix) :]: v for k, v in sd.items()}
    return dict(sd)


def family_of(sd: StateDict, source: str = "checkpoint") -> Family:
    """The one family that recognises these (prefix-stripped) tensors, or one clear error naming what they are."""
    found = [family for family in FAMILIES if family.recognises(sd)]
    if len(found) == 1:
        return found[0]
    if found:  # a recogniser is not precise enough: say so rather than guess
        raise FrameStreamError(f"{source} matches several VAE families ({', '.join(f.name for f in found)}); "
                               "please report this file")
    resembles = next((lookalike.name for lookalike in LOOKALIKES if lookalike.recognises(sd)), None)
    if resembles is not None:
        raise FrameStreamError(f"{source} is not a VAE FrameStream supports: it looks like the {resembles}; FrameStream "
                               f"reads a {supported()}")
    raise FrameStreamError(f"{source} is not a VAE FrameStream recognises (first keys: {', '.join(list(sd)[:3])}); "
                           f"FrameStream reads a {supported()}")


def build_vae(sd: StateDict, source: str = "checkpoint", metadata: Mapping[str, str] | None = None) -> CausalVideoVAE:
    """The VAE these tensors describe (any registered family and layout), without copying. ``metadata`` is the
    file's, for settings a family's weights do not show."""
    sd = strip_prefix(sd)
    return family_of(sd, source).build(sd, source, metadata)


def load_vae(path: str, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> CausalVideoVAE:
    """Loads a VAE file onto ``device`` in ``dtype`` (a single copy of the weights)."""
    tensors = read_safetensors(path, device, dtype)
    return build_vae(tensors, os.path.basename(path), read_metadata(path)).requires_grad_(False)
