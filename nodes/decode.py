"""FrameStreamDecode: the host's VAEDecode for video latents, streamed frame group by frame group."""

from __future__ import annotations

from ..vae_core import engine
from .registry import node
from .tiling_inputs import TILE_INPUTS
from .vae_input import VAE_TOOLTIP, prepare_decode

DECODE_INPUTS = {
    "vae": ("VAE", {"tooltip": VAE_TOOLTIP}),
    "samples": ("LATENT", {"tooltip": "The video latent to decode, e.g. from a sampler or Load Latent."}),
}
FRAMES_PER_STEP = ("INT", {
    "default": engine.DEFAULT_FRAMES_PER_STEP, "min": 1, "max": 64,
    "tooltip": "Latent frames decoded per step (each gives 4 video frames). Higher can be faster and uses more "
               "memory; the result is the same for every value.",
})


@node("FrameStream Decode (streaming video VAE)")
class FrameStreamDecode:
    DESCRIPTION = (
        "Decodes a video latent through a cached causal VAE a few latent frames at a time, tiling the frame when "
        "memory is short, so memory does not grow with video length. Untiled, the same result as VAE Decode (to "
        "fp32 rounding)."
    )
    CATEGORY = "FrameStream"
    FUNCTION = "decode"
    RETURN_TYPES = ("IMAGE",)
    OUTPUT_TOOLTIPS = ("The decoded frames, one image per frame (all videos of the batch one after another).",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": DECODE_INPUTS,
            "optional": {"frames_per_step": FRAMES_PER_STEP, **TILE_INPUTS},
        }

    def decode(self, vae, samples, frames_per_step=engine.DEFAULT_FRAMES_PER_STEP, **tiling):
        model, latent, options = prepare_decode(vae, samples, frames_per_step, tiling)
        frames = engine.decode(model, latent, frames_per_step=frames_per_step, **options)
        return (frames,)
