"""MiniMax H3 video VAE checkpoints: the release's layout (which the host reads) and diffusers'.

The release's keys (``encoder.down.5.block.0.conv1.weight``,
``decoder.transformer_blocks.0.attn.to_qkv.weight``) are the model's own.
Diffusers' ``AutoencoderKLMiniMaxH3`` renames the encoder's blocks
(``down_blocks.i.resnets.j``), splits the fused projection into ``to_q``,
``to_k``, ``to_v`` (the release interleaves them head by head) and stores the
gated feed-forward's halves the other way round; those are put back (a copy).
The host's int8 decoder file (:mod:`quantized`) is read too.
Widths and depths are read from shapes; the head width (64), the group count (32)
and the strides cannot be, and are the release's.
"""

from __future__ import annotations

import re
from typing import Mapping

import torch

from ...errors import FrameStreamError
from ..assembly import assemble, count_indices
from . import quantized
from .model import MiniMaxConfig, MiniMaxH3VAE

HEAD_DIM = 64
# the host's module keeps these beside the weights; the model holds none of them
_NOT_WEIGHTS = ("decoder.mask_token", "latents_mean", "latents_std")


def is_minimax(sd: Mapping[str, torch.Tensor]) -> bool:
    """The ViT decoder's per-block residual scales and its patch embedding, in either layout."""
    return "decoder.transformer_blocks.0.scale1" in sd and \
        ("decoder.x_embedder.weight" in sd or "decoder.proj_in.weight" in sd)


def release_layout(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tensors under the release's names (diffusers' converted; the release's kept as they are)."""
    if "decoder.proj_in.weight" not in sd:
        return {k: v for k, v in sd.items() if k not in _NOT_WEIGHTS}
    out = {}
    for key, value in sd.items():
        key = re.sub(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.", r"encoder.down.\1.block.\2.", key)
        key = re.sub(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.", r"encoder.down.\1.downsample.", key)
        key = key.replace(".conv_shortcut.", ".nin_shortcut.").replace("decoder.proj_in.", "decoder.x_embedder.")
        key = key.replace(".attn.to_out.0.", ".attn.to_out.").replace(".ff.net.2.", ".ff.w2.")
        if ".ff.net.0.proj." in key:  # diffusers: value then gate; the release: gate then value
            key, value = key.replace(".ff.net.0.proj.", ".ff.w1."), torch.cat(value.chunk(2)[::-1])
        if re.search(r"\.attn\.to_[kv]\.", key):
            continue
        if ".attn.to_q." in key:
            prefix, kind = key.split(".attn.to_q.")
            parts = [sd[f"{prefix}.attn.to_{name}.{kind}"] for name in "qkv"]
            key, value = f"{prefix}.attn.to_qkv.{kind}", _interleaved(parts)
        out[key] = value
    return out


def _interleaved(parts: list[torch.Tensor]) -> torch.Tensor:
    """Query, key and value projections -> one whose output holds each head's query, key and value in turn."""
    heads = parts[0].shape[0] // HEAD_DIM
    return torch.stack([p.unflatten(0, (heads, HEAD_DIM)) for p in parts], dim=1).flatten(0, 2)


def infer_config(sd: Mapping[str, torch.Tensor]) -> MiniMaxConfig:
    """The configuration of a state dict in the release's layout, from its shapes."""
    levels = count_indices(sd, r"encoder\.down\.(\d+)\.")
    widths = tuple(sd[f"encoder.down.{i}.block.0.conv1.weight"].shape[0] for i in range(levels))
    release = MiniMaxConfig()
    if levels != len(release.widths):
        raise FrameStreamError(f"its encoder has {levels} levels; the release has {len(release.widths)}")
    dim = sd["decoder.x_embedder.weight"].shape[0]
    if dim % HEAD_DIM:
        raise FrameStreamError(f"its decoder is {dim} wide, not a whole number of {HEAD_DIM}-wide heads")
    return MiniMaxConfig(widths=widths, layers=count_indices(sd, r"encoder\.down\.0\.block\.(\d+)\."),
                         latent_channels=sd["post_quant_conv.weight"].shape[0],
                         decoder_layers=count_indices(sd, r"decoder\.transformer_blocks\.(\d+)\."),
                         heads=dim // HEAD_DIM, head_dim=HEAD_DIM, registers=sd["decoder.register_tokens"].shape[1])


def build_minimax(sd: Mapping[str, torch.Tensor], source: str = "checkpoint", metadata=None) -> MiniMaxH3VAE:
    """A :class:`MiniMaxH3VAE` holding the given tensors (diffusers' attention and feed-forward ones copied; an
    int8 file's quantised layers as :class:`quantized.Int8Linear`)."""
    try:
        sd = release_layout(sd)
        layers = quantized.quantised_layers(sd, source)
        sd = quantized.without_markers(sd, layers)
        cfg = infer_config(sd)
    except KeyError as err:
        raise FrameStreamError(f"{source} looks like a MiniMax H3 video VAE but is incomplete: missing {err}") from None
    except FrameStreamError as err:
        raise FrameStreamError(f"{source} looks like a MiniMax H3 video VAE but {err}") from None
    return assemble(lambda: quantized.install(MiniMaxH3VAE(cfg), layers), sd, source)
