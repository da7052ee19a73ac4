"""TAESD checkpoints: diffusers' ``AutoencoderTiny``, the host's combined layout and madebyollin's standalone
halves; the block counts, width and latent channels are read off the keys and shapes.

* diffusers: ``encoder.layers.N`` / ``decoder.layers.N``;
* the host: ``taesd_encoder.N`` / ``taesd_decoder.N`` plus, from its Load VAE,
  ``vae_scale`` / ``vae_shift`` (see :mod:`.model`);
* madebyollin's files (``taesd_decoder.safetensors`` ...): one half, ``N`` alone.

The decoders of the last two count a parameterless clamp as layer 0, which
diffusers applies outside its layer list, so their indices are one higher.
"""

from __future__ import annotations

import re
from typing import Mapping

import torch

from ..assembly import assemble, count_indices
from ...errors import FrameStreamError
from .model import TinyAutoencoder, TinyConfig

StateDict = Mapping[str, torch.Tensor]

_HOST = re.compile(r"taesd_(encoder|decoder)\.(\d+)\.(.+)")
_STANDALONE = re.compile(r"(\d+)\.(.+)")
_SCALES = ("vae_scale", "vae_shift")


def _renumbered(part: str, index: str, rest: str) -> str:
    return f"{part}.layers.{int(index) - (part == 'decoder')}.{rest}"


def to_diffusers_layout(sd: StateDict) -> dict[str, torch.Tensor] | None:
    """The tensors under diffusers' names (the host's scale and shift kept), or None for another model's keys."""
    keys = list(sd)
    if keys and all(key.startswith(("encoder.layers.", "decoder.layers.")) for key in keys):
        return dict(sd)
    host = {key: _HOST.fullmatch(key) for key in keys if key not in _SCALES}
    if host and all(host.values()):
        out = {_renumbered(m.group(1), m.group(2), m.group(3)): sd[key] for key, m in host.items()}
        return out | {key: sd[key] for key in _SCALES if key in sd}
    standalone = {key: _STANDALONE.fullmatch(key) for key in keys}
    if standalone and all(standalone.values()):
        first = sd.get("0.weight")
        part = "encoder" if first is not None and first.ndim == 4 and first.shape[1] == 3 else "decoder"
        return {_renumbered(part, m.group(1), m.group(2)): sd[key] for key, m in standalone.items()}
    return None


def _kinds(sd: StateDict, part: str) -> list[str | None]:
    """Per layer: a residual block, a plain conv, or None for a layer without weights (ReLU, upsampling)."""
    layers = count_indices(sd, rf"{part}\.layers\.(\d+)\.")
    return ["block" if f"{part}.layers.{i}.conv.0.weight" in sd else "conv" if f"{part}.layers.{i}.weight" in sd
            else None for i in range(layers)]


def encoder_blocks(kinds: list[str | None]) -> tuple[int, ...] | None:
    """conv, blocks, then (stride-2 conv, blocks) per further level, then the output conv."""
    if len(kinds) < 2 or kinds[0] != "conv" or kinds[-1] != "conv" or None in kinds:
        return None
    runs = [0]
    for kind in kinds[1:-1]:
        if kind == "conv":
            runs.append(0)
        else:
            runs[-1] += 1
    return tuple(runs)


def decoder_blocks(kinds: list[str | None]) -> tuple[int, ...] | None:
    """conv, ReLU, then per level blocks followed by (upsampling, conv), the last level by the output conv."""
    if kinds[:2] != ["conv", None]:
        return None
    runs, i = [0], 2
    while i < len(kinds):
        if kinds[i] == "block":
            runs[-1] += 1
        elif kinds[i] is None and kinds[i + 1 : i + 2] == ["conv"] and i + 2 < len(kinds):
            runs.append(0)
            i += 1
        elif kinds[i] == "conv" and i == len(kinds) - 1:
            return tuple(runs)
        else:
            return None
        i += 1
    return None


def infer_config(sd: StateDict) -> TinyConfig | None:
    """The structure of a diffusers-layout TAESD (either half may be missing), or None if it is not one."""
    encoder_kinds, decoder_kinds = _kinds(sd, "encoder"), _kinds(sd, "decoder")
    encoder = encoder_blocks(encoder_kinds) if encoder_kinds else ()
    decoder = decoder_blocks(decoder_kinds) if decoder_kinds else ()
    if encoder is None or decoder is None or not (encoder or decoder):
        return None
    if encoder and decoder and len(encoder) != len(decoder):
        return None
    if decoder:
        width, latent_channels = sd["decoder.layers.0.weight"].shape[:2]
    else:
        width = sd["encoder.layers.0.weight"].shape[0]
        latent_channels = sd[f"encoder.layers.{len(encoder_kinds) - 1}.weight"].shape[0]
    return TinyConfig(latent_channels, width, encoder, decoder)


def recognises(sd: StateDict) -> bool:
    layout = to_diffusers_layout(sd)
    return layout is not None and infer_config(layout) is not None


def build_taesd(sd: StateDict, source: str = "checkpoint", metadata=None) -> TinyAutoencoder:
    """A :class:`TinyAutoencoder` holding exactly the given tensors (no copy), in any of the layouts."""
    layout = to_diffusers_layout(sd)
    cfg = infer_config(layout) if layout is not None else None
    if cfg is None:
        raise FrameStreamError(f"{source} is not a TAESD checkpoint in a layout FrameStream reads")
    defaults = {"vae_scale": torch.tensor(1.0), "vae_shift": torch.tensor(0.0)}  # the host's when the file has none
    return assemble(lambda: TinyAutoencoder(cfg), defaults | layout, source)
