"""The Stable Diffusion key layout (LDM / SGM), renamed to diffusers' names.

The host keeps several VAEs in this layout: the image VAEs, Stable Video
Diffusion's (whose spatial parts carry these names) and HunyuanVideo's (with 3D
convs): ``down.i.block.j``, ``up`` blocks numbered from the finest,
``mid.block_1`` / ``mid.attn_1`` with the attention's linear layers stored as 1x1
convs, ``nin_shortcut``. Each of those families reads it through this one renaming.
"""

from __future__ import annotations

import re
from typing import Mapping

import torch

from .assembly import count_indices

_ATTENTION = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}
_OUTER = [("nin_shortcut.", "conv_shortcut."), ("norm_out.", "conv_norm_out.")]


def sd_layout_to_diffusers(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    levels = count_indices(sd, r"decoder\.up\.(\d+)\.")
    out = {}
    for key, value in sd.items():
        for old, new in _OUTER:
            key = key.replace(old, new)
        key = re.sub(r"\.down\.(\d+)\.block\.", r".down_blocks.\1.resnets.", key)
        key = re.sub(r"\.down\.(\d+)\.downsample\.", r".down_blocks.\1.downsamplers.0.", key)
        key = re.sub(r"\.up\.(\d+)\.block\.", lambda m: f".up_blocks.{levels - 1 - int(m.group(1))}.resnets.", key)
        key = re.sub(r"\.up\.(\d+)\.upsample\.", lambda m: f".up_blocks.{levels - 1 - int(m.group(1))}.upsamplers.0.",
                     key)
        key = re.sub(r"\.mid\.block_(\d)\.", lambda m: f".mid_block.resnets.{int(m.group(1)) - 1}.", key)
        attention = re.match(r"(.*)\.mid\.attn_1\.(norm|q|k|v|proj_out)\.(.*)", key)
        if attention:
            prefix, part, tail = attention.groups()
            key = f"{prefix}.mid_block.attentions.0.{_ATTENTION[part]}.{tail}"
            if part != "norm" and value.ndim == 5:
                value = value.flatten(1)
        out[key] = value
    return out
