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
from . import (cogvideox, hunyuan, hunyuan15, image, kandinsky, ltx, ltx2, ltx24, minimax, mochi, seedvr2, svd, taehv,
               taesd, wan)
from .family import Family, Lookalike, StateDict

FAMILIES: tuple[Family, ...] = (
    wan.FAMILY,
    hunyuan.FAMILY,
    cogvideox.FAMILY,
    ltx.FAMILY,
    hunyuan15.FAMILY,
    ltx2.FAMILY,
    mochi.FAMILY,
    image.FAMILY,
    svd.FAMILY,
    taesd.FAMILY,
    taehv.FAMILY,
    kandinsky.FAMILY,
    minimax.FAMILY,
    ltx24.FAMILY,
    seedvr2.FAMILY,
)

# models that are recognisable but not supported, so a file of theirs is named, not misread
LOOKALIKES: tuple[Lookalike, ...] = (
    # other VAEs the host detects by these keys (its comfy/sd.py), not supported (yet)
    Lookalike("Mage-VAE (a one-step diffusion codec)", lambda sd: "student.dconv_encoder.proj_out.weight" in sd),
    Lookalike("Cosmos tokenizer", lambda sd: "decoder.unpatcher3d.wavelets" in sd),
    Lookalike("MiniMax H3 audio VAE", lambda sd: "pre_block.attn.zero_k_bias" in sd),
    Lookalike("Stable Audio 3 VAE", lambda sd: "decoder.layers.3.transformers.0.pre_norm.alpha" in sd),
    Lookalike("MMAudio VAE", lambda sd: "vocoder.activation_post.downsample.lowpass.filter" in sd),
)
_PREFIXES = ("first_stage_model.", "vae.", "model.")


def supported() -> str:
    """The registered families, for messages and tooltips."""
    names = [family.name for family in FAMILIES]
    return ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]


def vae_keys(keys: list[str]) -> list[str]:
    """The keys of a file's VAE: all of them, or in a whole-model checkpoint (a diffusion model with its VAE, as
    LTX-2 and Stable Video Diffusion ship) those under its VAE prefix."""
    for prefix in _PREFIXES[:2]:
        inside = [key for key in keys if key.startswith(prefix)]
        if inside and len(inside) < len(keys):
            return inside
    return keys


def strip_prefix(sd: StateDict) -> dict[str, torch.Tensor]:
    """Keys without the prefix a whole-model checkpoint puts on its VAE part."""
    for prefix in _PREFIXES:
        if sd and all(k.startswith(prefix) for k in sd):
            return {k[len(prefix) :]: v for k, v in sd.items()}
    return dict(sd)


def family_of(sd: StateDict, source: str = "checkpoint") -> Family:
    """The one family that recognises these (prefix-stripped) tensors, or one clear error naming what they are."""
    found = [family for family in FAMILIES if family.recognises(sd)]
    succeeded = {family.succeeds for family in found}
    found = [family for family in found if family.name not in succeeded]
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


def build_vae(sd: StateDict, source: str = "checkpoint", metadata: Mapping[str, str] | None = None,
              host_module: bool = False) -> CausalVideoVAE:
    """The VAE these tensors describe (any registered family and layout), without copying. ``metadata`` is the
    file's, for settings a family's weights do not show. ``host_module``: the tensors are a host module's state
    dict, which may hold layers the host builds but never runs (the family names them); files are read strictly."""
    sd = strip_prefix(sd)
    family = family_of(sd, source)
    if host_module and family.host_only is not None:
        sd = {key: value for key, value in sd.items() if not family.host_only(key)}
    return family.build(sd, source, metadata)


def load_vae(path: str, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> CausalVideoVAE:
    """Loads a VAE file onto ``device`` in ``dtype`` (a single copy of the weights)."""
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise FrameStreamError(f"device {str(device)!r} was asked for, but this torch ({torch.__version__}) sees no CUDA "
                               "GPU; load with device='cpu' (or install a CUDA build of torch)")
    tensors = read_safetensors(path, device, dtype, select=vae_keys)
    return build_vae(tensors, os.path.basename(path), read_metadata(path)).requires_grad_(False)
