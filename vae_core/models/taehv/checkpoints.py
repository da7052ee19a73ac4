"""TAEHV-family checkpoints (madebyollin's ``taehv``, ``taew2_1``, ``taew2_2``, ``taehv1_5``, ``taecvx``,
``taeltx_2`` ... and their ``_super`` decoders), read off keys and shapes alone.

The files number the reference's ``nn.Sequential`` layers: ``encoder.N.*`` and
``decoder.N.*``, either half alone or both. Latent channels, patch size, widths
and the frames pooled or grown at each level are read from the tensors; the
whole key set must then be exactly the one that structure has.

A file name tells what the tensors cannot: which model's latent space the
file was trained in (taew2_1, taehv and taecvx have the same shapes;
:mod:`.latent_spaces`), and that TAECVX keeps every frame of an even-length
CogVideoX latent. A file renamed beyond recognition still loads, and decodes
latents as given (the sampler's space).
"""

from __future__ import annotations

import math
import re
from typing import Mapping

import torch

from ..assembly import assemble
from ...errors import FrameStreamError
from . import latent_spaces
from .model import TinyVideoAutoencoder, TinyVideoConfig, tiny_decoder, tiny_encoder

StateDict = Mapping[str, torch.Tensor]
_KEY = re.compile(r"(encoder|decoder)\.(\d+)\.")
# where each level's TGrow sits in the two decoders, and each level's TPool in the encoder
_GROW_AT = {False: (7, 13, 19), True: (7, 14, 21)}
_POOL_AT = (2, 7, 12)
_WIDTH_AT = {False: ("decoder.1.weight", "decoder.8.weight", "decoder.14.weight", "decoder.20.weight"),
             True: ("decoder.0.weight", "decoder.7.conv.weight", "decoder.14.conv.weight", "decoder.21.conv.weight")}


def _stride(weight: torch.Tensor | None, grows: bool) -> int | None:
    """A TGrow's (out = stride x in) or TPool's (in = stride x out) frame factor, None if no whole factor."""
    if weight is None or weight.ndim != 4:
        return None
    big, small = (weight.shape[0], weight.shape[1]) if grows else (weight.shape[1], weight.shape[0])
    return big // small if big % small == 0 and big // small in (1, 2) else None


def _patch(channels: int) -> int | None:
    p = math.isqrt(channels // 3)
    return p if 3 * p * p == channels else None


def infer_config(sd: StateDict) -> TinyVideoConfig | None:
    """The structure the tensors describe, or None if they are not a TAEHV-family file."""
    if not sd or not all(_KEY.match(key) for key in sd):
        return None
    has_decoder, has_encoder = "decoder.3.conv.0.weight" in sd or "decoder.1.conv.0.weight" in sd, \
        "encoder.0.weight" in sd
    latent = patch = None
    decoder_strides: tuple[int, ...] = ()
    widths = TinyVideoConfig.decoder_widths
    is_super = False
    if has_decoder:
        block = sd.get("decoder.1.conv.0.weight")
        is_super = block is not None and block.ndim == 4 and block.shape[1] == 1  # a depthwise 7x7 conv
        strides = tuple(_stride(sd.get(f"decoder.{i}.conv.weight"), grows=True) for i in _GROW_AT[is_super])
        if None in strides or any(key not in sd for key in _WIDTH_AT[is_super]):
            return None
        decoder_strides = strides
        first, last = _WIDTH_AT[is_super][0], "decoder.22.weight"  # the output conv, in both decoders
        if last not in sd:
            return None
        latent, patch = sd[first].shape[1], _patch(sd[last].shape[0])
        widths = tuple(sd[key].shape[1 if key.endswith("conv.weight") else 0] for key in _WIDTH_AT[is_super])
    encoder_strides: tuple[int, ...] = ()
    if has_encoder:
        strides = tuple(_stride(sd.get(f"encoder.{i}.conv.weight"), grows=False) for i in _POOL_AT)
        if None in strides or "encoder.17.weight" not in sd:
            return None
        encoder_strides = strides
        encoder_latent, encoder_patch = sd["encoder.17.weight"].shape[0], _patch(sd["encoder.0.weight"].shape[1])
        if latent is not None and (latent, patch) != (encoder_latent, encoder_patch):
            return None
        latent, patch = encoder_latent, encoder_patch
    if latent is None or patch is None:
        return None
    cfg = TinyVideoConfig(latent, patch, encoder_strides, decoder_strides, widths, is_super)
    return cfg if tensor_shapes(cfg) == {key: tuple(value.shape) for key, value in sd.items()} else None


def tensor_shapes(cfg: TinyVideoConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor a file of this structure holds, with its shape."""
    with torch.device("meta"):
        parts = {"encoder": tiny_encoder(cfg) if cfg.encoder_strides else None,
                 "decoder": tiny_decoder(cfg) if cfg.decoder_strides else None}
    return {f"{name}.{key}": tuple(value.shape) for name, part in parts.items() if part is not None
            for key, value in part.state_dict().items()}


def recognises(sd: StateDict) -> bool:
    return infer_config(sd) is not None


def build_tae(sd: StateDict, source: str = "checkpoint", metadata=None) -> TinyVideoAutoencoder:
    """A :class:`TinyVideoAutoencoder` holding exactly these tensors (no copy)."""
    cfg = infer_config(sd)
    if cfg is None:
        raise FrameStreamError(f"{source} is not a TAEHV-family checkpoint FrameStream reads")
    space = latent_spaces.of_file(source)
    return assemble(lambda: TinyVideoAutoencoder(cfg, "taecvx" not in source.lower(), space), sd, source)
