"""FrameStreamDecode: the host's VAEDecode for video latents, streamed frame group by frame group."""

from __future__ import annotations

from ..vae_core import engine
from ..vae_core.inputs import require_video_latent
from ..vae_core.memory import step_bytes
from . import host
from .registry import node
from .vae_input import ready_video_vae, video_vae


@node("FrameStream Decode (streaming video VAE)")
class FrameStreamDecode:
    DESCRIPTION = (
        "Decodes a video latent through a cached causal VAE a few latent frames at a time, so GPU memory does not "
        "grow with video length and no frame is copied more than once. Same result as VAE Decode (to fp32 rounding)."
    )
    CATEGORY = "FrameStream"
    FUNCTION = "decode"
    RETURN_TYPES = ("IMAGE",)
    OUTPUT_TOOLTIPS = ("The decoded frames, one image per frame (all videos of the batch one after another).",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "vae": ("VAE", {"tooltip": "A Wan 2.1 or Wan 2.2 VAE from Load VAE."}),
                "samples": ("LATENT", {"tooltip": "The video latent to decode, e.g. from a sampler or Load Latent."}),
            },
            "optional": {
                "frames_per_step": ("INT", {
                    "default": engine.DEFAULT_FRAMES_PER_STEP, "min": 1, "max": 64,
                    "tooltip": "Latent frames decoded per step (each gives 4 video frames). Higher can be faster and "
                               "uses more memory; the result is the same for every value.",
                }),
            },
        }

    def decode(self, vae, samples, frames_per_step=engine.DEFAULT_FRAMES_PER_STEP):
        latent = samples["samples"]
        model = video_vae(vae)
        require_video_latent(latent, model)
        height, width = latent.shape[-2] * model.spatial_ratio, latent.shape[-1] * model.spatial_ratio
        model = ready_video_vae(vae, step_bytes(model, height, width, frames_per_step, model.weight_dtype))
        frames = engine.decode(model, latent, frames_per_step=frames_per_step, progress=host.progress_reporter())
        return (frames,)
