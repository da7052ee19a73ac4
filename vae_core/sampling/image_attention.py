"""An exact strength for the image branch of Wan's image-to-video cross-attention.

Wan I2V and FLF2V attend to text and image tokens separately and add the two:
``Attn(q, K_txt, V_txt) + Attn(q, K_img, V_img)``. Attention is linear in V and
every softmax row sums to 1, so multiplying the image V projection's output (its
weight and bias) by λ multiplies the image branch by exactly λ. Scaling K would
change the softmax temperature instead, and scaling the CLIP-vision features
does nothing: Wan's image embedder starts with a LayerNorm that cancels it.

The strength may be limited to part of sampling, given as a range of noise
levels (sigmas), and to a range of blocks. Outside them the branch is untouched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import FrameStreamError

# the image V projection in the original / ComfyUI layout and in diffusers' WanTransformer3DModel
_IMAGE_VALUES = re.compile(r"(?:^|\.)blocks\.(\d+)\.(?:cross_attn\.v_img|attn2\.add_v_proj)$")


@dataclass
class ImageStrength:
    """λ between ``start_sigma`` (early, noisy) and ``end_sigma`` (late); 1 elsewhere.

    ``sigma`` is the noise level of the model call under way, set by whoever
    drives the sampler; None counts as inside the range.
    """

    strength: float = 1.0
    start_sigma: float = float("inf")
    end_sigma: float = 0.0
    sigma: float | None = None

    def current(self) -> float:
        inside = self.sigma is None or self.end_sigma <= self.sigma <= self.start_sigma
        return self.strength if inside else 1.0


class ScaledImageValues:
    """An image V projection's own forward, with the output multiplied by the strength of the current call.

    It is set as the projection's ``forward`` (an instance attribute), so the
    module, its parameters and their names stay as they were: the host's LoRA
    and low-VRAM loading still find ``...v_img.weight``. It calls the class's
    forward, never an instance patch left by an earlier run, so strengths do not
    stack. At strength 1 the output is returned untouched (bit-for-bit).
    """

    def __init__(self, values: nn.Linear, control: ImageStrength) -> None:
        self.forward = type(values).forward.__get__(values)
        self.control = control

    def __call__(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        strength = self.control.current()
        out = self.forward(x, *args, **kwargs)
        return out if strength == 1.0 else out * strength


def image_value_projections(model: nn.Module) -> dict[str, tuple[int, nn.Linear]]:
    """Every block's image V projection: qualified name -> (block index, module).

    Raises for a model without an image branch (a text-to-video Wan, or not a Wan).
    """
    found = {}
    for name, module in model.named_modules():
        if getattr(module, "fused_projections", False) and getattr(module, "add_v_proj", None) is not None:
            raise FrameStreamError(f"{name} has fused projections, which bypass add_v_proj; call "
                                   "unfuse_qkv_projections() on the model before setting an image strength")
        match = _IMAGE_VALUES.search(name)
        if match and isinstance(module, nn.Linear):
            found[name] = (int(match.group(1)), module)
    if not found:
        raise FrameStreamError(
            "this model has no image cross-attention (no cross_attn.v_img or attn2.add_v_proj); image strength "
            "needs a Wan 2.1 image-to-video or first-last-frame model (Wan 2.2 I2V and text-to-video models have "
            "no CLIP image branch)"
        )
    return found


def image_strength_patches(model: nn.Module, control: ImageStrength, first_block: int = 0,
                           last_block: int | None = None) -> dict[str, ScaledImageValues]:
    """Replacement forwards for the image V projections of blocks ``first_block``..``last_block`` (inclusive),
    keyed by the attribute they replace (``blocks.N.cross_attn.v_img.forward``).

    The model is not changed: the host applies the result as object patches on
    a clone, and :func:`apply_patches` sets them on a model a caller owns.
    """
    projections = image_value_projections(model)
    blocks = sorted({block for block, _ in projections.values()})
    last = blocks[-1] if last_block is None else last_block
    if not 0 <= first_block <= last or last > blocks[-1]:
        raise FrameStreamError(f"block range {first_block}..{last} is outside this model's {len(blocks)} blocks "
                               f"{blocks[0]}..{blocks[-1]}; give first_block <= last_block within it")
    return {f"{name}.forward": ScaledImageValues(module, control) for name, (block, module) in projections.items()
            if first_block <= block <= last}


def apply_patches(model: nn.Module, patches: dict) -> nn.Module:
    """Sets each patch as the attribute of that qualified name (on a model the caller owns)."""
    for name, patch in patches.items():
        parent, _, attribute = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, attribute, patch)
    return model
