"""FrameStreamImageAttention: an exact, schedulable strength for Wan I2V's image cross-attention."""

from __future__ import annotations

from ..vae_core.errors import FrameStreamError
from ..vae_core.image_attention import ImageStrength, image_strength_patches
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
    CATEGORY = "FrameStream/long video"
    FUNCTION = "patch"
    RETURN_TYPES = ("MODEL",)
    OUTPUT_TOOLTIPS = ("The model with the image strength applied while it samples.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL", {"tooltip": "A Wan 2.1/2.2 image-to-video or first-last-frame model."}),
                "strength": ("FLOAT", {"default": 1.0, "min": -2.0, "max": 4.0, "step": 0.05,
                                       "tooltip": "λ: the image branch's weight. 1 is the model as trained; "
                                                  "0.5-0.8 loosens, 1.2-1.5 tightens, 0 ignores the image."}),
                "start_percent": _percent("Where in sampling the strength starts (0 = first step).", 0.0),
                "end_percent": _percent("Where it ends (1 = last step). Early steps set layout and motion, "
                                        "late steps detail.", 1.0),
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
        sampling = model.get_model_object("model_sampling")
        start = float("inf") if start_percent <= 0.0 else sampling.percent_to_sigma(start_percent)
        control = ImageStrength(strength, start, sampling.percent_to_sigma(end_percent))
        patches = image_strength_patches(model.get_model_object("diffusion_model"), control, first_block,
                                         None if last_block < 0 else last_block)
        patched = model.clone()
        for name, forward in patches.items():
            patched.add_object_patch(f"diffusion_model.{name}", forward)
        previous = patched.model_options.get("model_function_wrapper")

        def note_sigma(apply_model, args):
            control.sigma = float(args["timestep"].max())
            if previous is not None:
                return previous(apply_model, args)
            return apply_model(args["input"], args["timestep"], **args["c"])

        patched.set_model_unet_function_wrapper(note_sigma)
        return (patched,)
