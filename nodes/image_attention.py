"""FrameStreamImageAttention: an exact, schedulable strength for Wan I2V's image cross-attention."""

from __future__ import annotations

from ..vae_core.errors import FrameStreamError
from ..vae_core.sampling.image_attention import ImageStrength, image_strength_patches
from . import host
from .frame_conditioning import CATEGORY
from .registry import node


def _percent(tooltip: str, default: float):
    return ("FLOAT", {"default": default, "min": 0.0, "max": 1.0, "step": 0.01, "tooltip": tooltip})


@node("FrameStream Image Attention Strength (Wan I2V)")
class FrameStreamImageAttention:
    DESCRIPTION = (
        "Scales the image branch of a Wan image-to-video or first-last-frame model's cross-attention by exactly "
        "the strength, during the chosen part of sampling and in the chosen blocks (1 elsewhere). Below 1 the "
        "video follows the input image more loosely and the prompt more; above 1, more tightly. The loaded model "
        "is not changed."
    )
    CATEGORY = CATEGORY
    FUNCTION = "patch"
    RETURN_TYPES = ("MODEL",)
    OUTPUT_TOOLTIPS = ("The model with the image strength applied while it samples.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL", {"tooltip": "A Wan 2.1 image-to-video or first-last-frame model (Wan 2.2 "
                                               "I2V has no CLIP image branch to scale)."}),
                "strength": ("FLOAT", {"default": 1.0, "min": -2.0, "max": 4.0, "step": 0.05,
                                       "tooltip": "λ: the image branch's weight. 1 is the model as trained; "
                                                  "0.5-0.8 loosens, 1.2-1.5 tightens, 0 ignores the image; "
                                                  "negative values push away from it."}),
                "start_percent": _percent("Where in the noise schedule the strength starts, as in the host's "
                                          "other percent inputs (0 = the start, pure noise).", 0.0),
                "end_percent": _percent("Where it ends (1 = the end). The noisy start sets layout and motion, "
                                        "the end detail.", 1.0),
            },
            "optional": {
                "first_block": ("INT", {"default": 0, "min": 0, "max": 99,
                                        "tooltip": "First transformer block scaled (Wan 14B has 40: 0-39)."}),
                "last_block": ("INT", {"default": -1, "min": -1, "max": 99,
                                       "tooltip": "Last block scaled, inclusive; -1 = the last block."}),
            },
        }

    def patch(self, model, strength, start_percent, end_percent, first_block=0, last_block=-1):
        if start_percent > end_percent:
            raise FrameStreamError(f"start_percent {start_percent} is after end_percent {end_percent}; "
                                   "give start_percent <= end_percent")
        control = ImageStrength(strength)
        patches = image_strength_patches(model.get_model_object("diffusion_model"), control, first_block,
                                         None if last_block < 0 else last_block)
        patched = model.clone()
        for name, forward in patches.items():
            patched.add_object_patch(f"diffusion_model.{name}", forward)

        def note_step(sampling, sigma: float) -> None:
            """Percents become sigmas with the sampling settings of this call (a later shift node counts)."""
            control.start_sigma = float("inf") if start_percent <= 0.0 else sampling.percent_to_sigma(start_percent)
            control.end_sigma = sampling.percent_to_sigma(end_percent)
            control.sigma = sigma

        host.before_each_model_call(patched, "framestream_image_strength", note_step)
        return (patched,)
