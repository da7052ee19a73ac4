"""HunyuanVideo 1.5 VAE checkpoints: diffusers' layout and the original release's (also the host's), config
from shapes.

Tencent's release names the blocks as the Stable Diffusion VAE does
(``decoder.up.0.block.1``, ``decoder.mid.block_1``, ``decoder.mid.attn_1.q``), and
the host's ``comfy.ldm.hunyuan_video.vae_refiner`` keeps those names, so one
renaming serves both. Unlike the SD layout, the ``up`` blocks are numbered in
decoding order (coarsest first, as diffusers' ``up_blocks``), the output norm
keeps its name and the attention's projections stay 1x1x1 convs, so the shared
:mod:`..sd_layout` renaming does not apply.

The release is told apart by structure, not width: reduced test models load as
the real one does, and a file whose resamplers, mid block or latent width do not
fit the 16x16 spatial, 4x temporal design is refused by name.
"""

from __future__ import annotations

import re
from typing import Mapping

import torch

from ..assembly import assemble, count_indices
from ...errors import FrameStreamError
from .model import HunyuanVideo15Config, HunyuanVideo15VAE

# (original / host name, diffusers name) of each renamed part; {i}, {j} stand for block and layer numbers
_PARTS = [
    ("down.{i}.block.{j}", "down_blocks.{i}.resnets.{j}"),
    ("down.{i}.downsample", "down_blocks.{i}.downsamplers.0"),
    ("up.{i}.block.{j}", "up_blocks.{i}.resnets.{j}"),
    ("up.{i}.upsample", "up_blocks.{i}.upsamplers.0"),
    ("mid.block_1", "mid_block.resnets.0"),
    ("mid.block_2", "mid_block.resnets.1"),
    ("mid.attn_1.norm", "mid_block.attentions.0.norm"),
    ("mid.attn_1.q", "mid_block.attentions.0.to_q"),
    ("mid.attn_1.k", "mid_block.attentions.0.to_k"),
    ("mid.attn_1.v", "mid_block.attentions.0.to_v"),
    ("mid.attn_1.proj_out", "mid_block.attentions.0.proj_out"),
    ("nin_shortcut.conv", "conv_shortcut"),  # a 1x1x1 causal conv in the release, a plain Conv3d in diffusers
]


def _pattern(template: str) -> re.Pattern:
    body = re.escape(template).replace(r"\{i\}", r"(?P<i>\d+)").replace(r"\{j\}", r"(?P<j>\d+)")
    return re.compile(rf"(?<=\.){body}(?=\.)")


_TO_DIFFUSERS = [(_pattern(original), ours) for original, ours in _PARTS]
_TO_ORIGINAL = [(_pattern(ours), original) for original, ours in _PARTS]


def _rename(sd: Mapping[str, torch.Tensor], rules) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in sd.items():
        for pattern, template in rules:
            key = pattern.sub(lambda m, t=template: t.format(**m.groupdict()), key)
        out[key] = value
    return out


def original_to_diffusers(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Tencent's (and the host's) key names -> diffusers'; the tensors are the same objects."""
    return _rename(sd, _TO_DIFFUSERS)


def diffusers_to_original(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """diffusers' key names -> Tencent's (and the host's)."""
    return _rename(sd, _TO_ORIGINAL)


def _causal_3d_conv_in(sd: Mapping[str, torch.Tensor]) -> bool:
    weight = sd.get("decoder.conv_in.conv.weight")
    return weight is not None and weight.ndim == 5


def is_diffusers_layout(sd: Mapping[str, torch.Tensor]) -> bool:
    """Nested causal convs with RMS gains and a 1x1x1-conv attention. HunyuanVideo 1.0 has GroupNorms
    (``norm1.weight``); Wan's convs are not nested and its attention is one ``to_qkv``; LTX-Video's norms have no
    gains."""
    return _causal_3d_conv_in(sd) and "decoder.mid_block.resnets.0.norm1.gamma" in sd \
        and "decoder.mid_block.attentions.0.to_q.weight" in sd


def is_original_layout(sd: Mapping[str, torch.Tensor]) -> bool:
    """The SD names with nested causal convs and RMS gains: HunyuanVideo 1.0's host layout has GroupNorms, the image
    VAEs' convs are neither 3D nor nested, Kandinsky's K-VAE has no mid-block attention."""
    return _causal_3d_conv_in(sd) and "decoder.mid.block_1.norm1.gamma" in sd and "decoder.mid.attn_1.q.weight" in sd


def recognises(sd: Mapping[str, torch.Tensor]) -> bool:
    return is_diffusers_layout(sd) or is_original_layout(sd)


# ComfyUI builds its mid blocks with the SD resnet's default time-embedding projection (0.4.0, 2025-12);
# forward never passes an embedding, and no release file holds the layer
_HOST_ONLY = re.compile(r"(encoder|decoder)\.mid\.block_[12]\.temb_proj\.(weight|bias)")


def host_only(key: str) -> bool:
    """A layer the host's module holds that is not part of the model (see ``Family.host_only``)."""
    return _HOST_ONLY.fullmatch(key) is not None


def _conv_out(sd: Mapping[str, torch.Tensor], module: str) -> int:
    return sd[f"{module}.conv.weight"].shape[0]


def _conv_in(sd: Mapping[str, torch.Tensor], module: str) -> int:
    return sd[f"{module}.conv.weight"].shape[1]


def _resampling(sd: Mapping[str, torch.Tensor], side: str, blocks: int) -> list[int]:
    """The factor each block's resampler moves into or out of channels (4: space, 8: space and time; 0: none),
    read from its conv and the width that follows it."""
    kind = "downsamplers" if side == "encoder" else "upsamplers"
    factors = []
    for i in range(blocks):
        conv = f"{side}.{'down' if side == 'encoder' else 'up'}_blocks.{i}.{kind}.0.conv"
        if f"{conv}.conv.weight" not in sd:
            factors.append(0)
            continue
        following = f"{side}.{'down' if side == 'encoder' else 'up'}_blocks.{i + 1}.resnets.0.conv1"
        if i + 1 == blocks:
            following = f"{side}.mid_block.resnets.0.conv1" if side == "encoder" else f"{side}.conv_out"
        after = _conv_in(sd, following)
        factors.append(after // _conv_out(sd, conv) if side == "encoder" else _conv_out(sd, conv) // after)
    return factors


def infer_config(sd: Mapping[str, torch.Tensor], source: str) -> HunyuanVideo15Config:
    """The structure these (diffusers-named) tensors describe, or one error naming what matches no release."""
    latent = _conv_in(sd, "decoder.conv_in")
    blocks = count_indices(sd, r"decoder\.up_blocks\.(\d+)\.")
    if not blocks or not count_indices(sd, r"encoder\.down_blocks\.(\d+)\."):
        raise FrameStreamError(f"{source} looks like a HunyuanVideo 1.5 VAE but has no "
                               f"{'decoder up' if not blocks else 'encoder down'} blocks; FrameStream needs the whole "
                               "VAE (encoder and decoder)")
    widths = tuple(_conv_out(sd, f"decoder.up_blocks.{i}.resnets.0.conv1") for i in range(blocks))[::-1]
    encoder_blocks = count_indices(sd, r"encoder\.down_blocks\.(\d+)\.")
    encoder_widths = tuple(_conv_out(sd, f"encoder.down_blocks.{i}.resnets.0.conv1") for i in range(encoder_blocks))
    if encoder_widths != widths:
        raise FrameStreamError(f"{source} looks like a HunyuanVideo 1.5 VAE, but its encoder's widths {encoder_widths} "
                               f"do not mirror its decoder's {widths[::-1]} as in every release")
    up, down = _resampling(sd, "decoder", blocks), _resampling(sd, "encoder", blocks)
    # diffusers' design: space in the first levels, time in the first up / last down levels of those
    spatial = sum(1 for f in up if f)
    temporal = sum(1 for f in up if f == 8)
    expected_up = [8] * temporal + [4] * (spatial - temporal) + [0] * (blocks - spatial)
    expected_down = [4] * (spatial - temporal) + [8] * temporal + [0] * (blocks - spatial)
    if (spatial, temporal) != (4, 2) or up != expected_up or down != expected_down:
        raise FrameStreamError(
            f"{source} looks like a HunyuanVideo 1.5 VAE but its resamplers (decoder {_describe(up)}, encoder "
            f"{_describe(down)}) are not the 16x16 spatial, 4x temporal design of the release")
    if widths[-1] % (2 * latent) or widths[-1] < 2 * latent:
        raise FrameStreamError(f"{source} looks like a HunyuanVideo 1.5 VAE but its {latent} latent channels do not "
                               f"divide its mid-block width {widths[-1]} twice over")
    layers = count_indices(sd, r"encoder\.down_blocks\.0\.resnets\.(\d+)\.")
    next_up = [_conv_in(sd, f"decoder.up_blocks.{i + 1}.resnets.0.conv1") for i in range(spatial)]
    next_down = [_conv_in(sd, f"encoder.down_blocks.{i + 1}.resnets.0.conv1") for i in range(spatial)]
    return HunyuanVideo15Config(latent_channels=latent, widths=widths, layers_per_block=layers,
                                spatial_levels=spatial, temporal_levels=temporal,
                                downsample_match_channel=next_down == list(widths[1 : spatial + 1]),
                                upsample_match_channel=next_up == list(widths[::-1][1 : spatial + 1]))


def _describe(factors: list[int]) -> str:
    return "/".join({0: "-", 4: "space", 8: "space+time"}.get(f, f"x{f}") for f in factors)


def build(sd: Mapping[str, torch.Tensor], source: str = "checkpoint", metadata=None) -> HunyuanVideo15VAE:
    """A :class:`HunyuanVideo15VAE` holding exactly the given tensors (no copy), in either layout."""
    sd = original_to_diffusers(sd) if is_original_layout(sd) else dict(sd)
    try:
        cfg = infer_config(sd, source)
    except (KeyError, IndexError, ZeroDivisionError) as err:
        raise FrameStreamError(f"{source} looks like a HunyuanVideo 1.5 VAE but is incomplete: missing {err}") from None
    return assemble(lambda: HunyuanVideo15VAE(cfg), sd, source)
