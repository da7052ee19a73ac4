"""FrameStreamImageAttention: an exact, schedulable strength for Wan I2V's image cross-attention."""

from __future__ import annotations

from ..vae_core.errors import FrameStreamError
from ..vae_core.sampling.image_attention import ImageStrength, image_strength_patches
from . import host
from .frame_conditioning import CATEGORY
from .host import io
from .registry import register


def _percent(name: str, default: float, tooltip: str):
    return io.Float.Input(name, default=default, min=0.0, max=1.0, step=0.01, tooltip=tooltip)


@register
class FrameStreamImageAttention(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FrameStreamImageAttention",
            display_name="FrameStream Image Attention Strength (Wan I2V)",
            category=CATEGORY,
            description=(
                "Scales the image branch of a Wan image-to-video or first-last-frame model's cross-attention by "
                "exactly the strength, during the chosen part of sampling and in the chosen blocks (1 elsewhere). "
                "Below 1 the video follows the input image more loosely and the prompt more; above 1, more tightly. "
                "The loaded model is not changed."),
            inputs=[
                io.Model.Input("model", tooltip="A Wan 2.1 image-to-video or first-last-frame model (Wan 2.2 I2V has "
                                                "no CLIP image branch to scale)."),
                io.Float.Input("strength", default=1.0, min=-2.0, max=4.0, step=0.05, tooltip=(
                    "λ: the image branch's weight. 1 is the model as trained; 0.5-0.8 loosens, 1.2-1.5 tightens, 0 "
                    "ignores the image; negative values push away from it.")),
                _percent("start_percent", 0.0, "Where in the noise schedule the strength starts, as in the host's "
                                               "other percent inputs (0 = the start, pure noise)."),
                _percent("end_percent", 1.0, "Where it ends (1 = the end). The noisy start sets layout and motion, "
                                             "the end detail."),
                io.Int.Input("first_block", default=0, min=0, max=99, optional=True,
                             tooltip="First transformer block scaled (Wan 14B has 40: 0-39)."),
                io.Int.Input("last_block", default=-1, min=-1, max=99, optional=True,
                             tooltip="Last block scaled, inclusive; -1 = the last block."),
            ],
            outputs=[io.Model.Output(tooltip="The model with the image strength applied while it samples.")],
        )

    @classmethod
    def execute(cls, model, strength, start_percent, end_percent, first_block=0, last_block=-1):
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
        return io.NodeOutput(patched)
