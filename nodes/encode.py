"""FrameStreamEncode: the host's VAEEncode for videos, streamed one frame group at a time."""

from __future__ import annotations

from ..vae_core.streaming import engine
from .host import io
from .registry import register
from .tiling_inputs import tile_inputs
from .vae_input import VAE_TOOLTIP, prepare_encode

LATENT_OUTPUT_TOOLTIP = ("The latent, ready for a sampler or Save Latent: [1, C, T, H/8, W/8] for a video VAE (H/16 for "
                         "Wan 2.2), or [N, C, H/8, W/8], one latent per frame, for an image VAE or SVD.")


@register
class FrameStreamEncode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FrameStreamEncode",
            display_name="FrameStream Encode (streaming video VAE)",
            category="FrameStream",
            description=(
                "Encodes frames to a video latent through a cached causal VAE, one frame and then four at a time, "
                "tiling the frame when memory is short. Untiled, the same result as VAE Encode (to fp32 rounding); "
                "the latent stays in raw VAE space."),
            inputs=[
                io.Vae.Input("vae", tooltip=VAE_TOOLTIP),
                io.Image.Input("pixels", tooltip="The video's frames in order. Frames beyond the last whole group of "
                                                 "4 (after the first) are dropped, as VAE Encode does."),
                *tile_inputs(),
            ],
            outputs=[io.Latent.Output(tooltip=LATENT_OUTPUT_TOOLTIP)],
        )

    @classmethod
    def execute(cls, vae, pixels, **tiling):
        model, settings = prepare_encode(vae, pixels.shape[1], pixels.shape[2], tiling)
        return io.NodeOutput({"samples": engine.encode(model, pixels, settings=settings)})
