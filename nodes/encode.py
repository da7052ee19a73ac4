"""FrameStreamEncode: the host's VAEEncode for videos, streamed one frame group at a time."""

from __future__ import annotations

from ..vae_core import engine
from ..vae_core.memory import step_bytes
from . import host
from .registry import node
from .vae_input import ready_video_vae, video_vae


@node("FrameStream Encode (streaming video VAE)")
class FrameStreamEncode:
    DESCRIPTION = (
        "Encodes frames to a video latent through a cached causal VAE, one frame and then four at a time, so memory "
        "does not grow with video length. Same result as VAE Encode (to fp32 rounding); the latent stays in raw VAE space."
    )
    CATEGORY = "FrameStream"
    FUNCTION = "encode"
    RETURN_TYPES = ("LATENT",)
    OUTPUT_TOOLTIPS = ("The video latent [1, C, T, H/8, W/8] (H/16 for Wan 2.2), ready for a sampler or Save Latent.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "vae": ("VAE", {"tooltip": "A Wan 2.1 or Wan 2.2 VAE from Load VAE."}),
                "pixels": ("IMAGE", {"tooltip": "The video's frames in order. Frames beyond the last whole group of "
                                                "4 (after the first) are dropped, as VAE Encode does."}),
            },
        }

    def encode(self, vae, pixels):
        model = video_vae(vae)
        model = ready_video_vae(vae, step_bytes(model, pixels.shape[1], pixels.shape[2], 1, model.weight_dtype))
        latent = engine.encode(model, pixels, progress=host.progress_reporter())
        return ({"samples": latent},)
